"""Hard parameter sharing: one shared encoder, one head per task.

Heads know nothing of schedulers. A tagging head is a linear layer, optionally followed by a
CRF (the QLS paper §5.2); a pair head reads the encoder's pair vector."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from mtlrun.models.crf import CRF
from mtlrun.tasks.encode import IGNORE
from mtlrun.tasks.spec import Kind


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T], 0 = padding
    lengths: torch.Tensor  # [B]
    labels: torch.Tensor  # [B] (classification) or [B, T] with IGNORE at padding (tagging)
    segments: torch.Tensor | None = None  # [B, T] 0/1: which text of a pair (pair tasks)


@dataclass
class Output:
    """What a task head returns. Losses are per example, or per labelled token for tagging
    (a CRF's sentence NLL is shared out evenly over its tokens), so their mean is L_k."""

    example_losses: torch.Tensor  # [N]
    example_labels: torch.Tensor  # [N] the gold labels of those examples / tokens
    _log_probs: Callable[[], torch.Tensor]  # [N, C]; lazy: a CRF's marginals cost a pass
    _predict: Callable[[], torch.Tensor]  # [B] or [B, T]

    @property
    def loss(self) -> torch.Tensor:
        """The task's minibatch loss L_k: the mean over examples (tokens for tagging)."""
        return self.example_losses.mean()

    @cached_property
    def example_log_probs(self) -> torch.Tensor:
        """log p(label) per example / labelled token: softmax, or a CRF's posterior marginals."""
        return self._log_probs()

    def predictions(self) -> torch.Tensor:
        """Argmax labels, [B] or [B, T] (Viterbi paths under a CRF)."""
        return self._predict()


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: nn.Module, kinds: list[Kind], num_labels: list[int],
                 crf: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.encoder = encoder
        self.kinds = kinds
        self.heads = nn.ModuleList(
            nn.Linear(encoder.pair_output_size if kind == Kind.PAIR_CLASSIFICATION
                      else encoder.output_size, n)
            for kind, n in zip(kinds, num_labels, strict=True)
        )  # fmt: skip
        # a CRF per tagging task, kept apart from `heads` so each head stays one linear layer
        self.crfs = nn.ModuleDict(
            {str(k): CRF(n) for k, (kind, n) in enumerate(zip(kinds, num_labels, strict=True))
             if crf and kind == Kind.TAGGING}
        )  # fmt: skip

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        """Everything that belongs to task `task` alone: its head (and CRF)."""
        crf = self.crfs[str(task)] if str(task) in self.crfs else None
        return [*self.heads[task].parameters(), *(crf.parameters() if crf else [])]

    def forward(self, task: int, batch: Batch) -> Output:
        states, pooled = self.encoder(batch.ids, batch.lengths, batch.segments)
        if self.kinds[task] != Kind.TAGGING:
            logits = self.heads[task](pooled)
            losses = F.cross_entropy(logits, batch.labels, reduction="none")
            return Output(losses, batch.labels, lambda: F.log_softmax(logits, -1),
                          lambda: logits.argmax(-1))  # fmt: skip
        logits = self.heads[task](states)
        keep = batch.labels != IGNORE
        labels = batch.labels[keep]
        if str(task) not in self.crfs:
            losses = F.cross_entropy(logits[keep], labels, reduction="none")
            return Output(losses, labels, lambda: F.log_softmax(logits[keep], -1),
                          lambda: logits.argmax(-1))  # fmt: skip
        # the CRF runs over the labelled positions only (a subword model labels first subwords)
        crf, counts = self.crfs[str(task)], keep.sum(1)
        width, n_tags = int(counts.max()), logits.shape[-1]
        index = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
        emissions = logits.gather(1, index[..., None].expand(-1, -1, n_tags))
        tags = batch.labels.gather(1, index)
        mask = torch.arange(width, device=keep.device)[None, :] < counts[:, None]
        per_sentence = crf.nll(emissions, tags, mask)
        losses = (per_sentence / counts.clamp(min=1)).repeat_interleave(counts)

        def viterbi() -> torch.Tensor:  # back to the batch's positions
            paths = torch.zeros_like(batch.labels)
            return paths.scatter(1, index, crf.decode(emissions, mask))

        return Output(losses, labels,
                      lambda: crf.marginals(emissions, mask)[mask].clamp_min(1e-30).log(),
                      viterbi)  # fmt: skip
