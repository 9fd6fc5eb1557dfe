"""Hard parameter sharing: one shared encoder, one head per task.

Heads know nothing of schedulers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtlrun.tasks.encode import IGNORE
from mtlrun.tasks.spec import Kind


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T], 0 = padding
    lengths: torch.Tensor  # [B]
    labels: torch.Tensor  # [B] (classification) or [B, T] with IGNORE at padding (tagging)


@dataclass
class Output:
    example_losses: torch.Tensor  # [N] cross-entropy per example, or per non-pad token (tagging)
    example_labels: torch.Tensor  # [N] the gold labels of those examples / tokens
    example_logits: torch.Tensor  # [N, C] their logits (padding removed)
    logits: torch.Tensor  # [B, C] or [B, T, C]

    @property
    def loss(self) -> torch.Tensor:
        """The task's minibatch loss L_k: the mean over examples (tokens for tagging)."""
        return self.example_losses.mean()


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: nn.Module, kinds: list[Kind], num_labels: list[int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.kinds = kinds
        self.heads = nn.ModuleList(nn.Linear(encoder.output_size, n) for n in num_labels)

    def forward(self, task: int, batch: Batch) -> Output:
        states, pooled = self.encoder(batch.ids, batch.lengths)
        if self.kinds[task] == Kind.TAGGING:
            logits = self.heads[task](states)
            keep = batch.labels != IGNORE
            scored, labels = logits[keep], batch.labels[keep]
        else:
            logits = self.heads[task](pooled)
            scored, labels = logits, batch.labels
        losses = F.cross_entropy(scored, labels, reduction="none")
        return Output(losses, labels, scored, logits)
