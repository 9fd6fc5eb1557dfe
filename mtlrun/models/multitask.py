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
    loss: torch.Tensor  # mean over examples (classification) or non-pad tokens (tagging)
    logits: torch.Tensor


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
            loss = F.cross_entropy(
                logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE
            )
        else:
            logits = self.heads[task](pooled)
            loss = F.cross_entropy(logits, batch.labels)
        return Output(loss, logits)
