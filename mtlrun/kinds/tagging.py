"""One label per token (POS, chunking, NER): a linear layer over the encoder's token states,
softmax cross-entropy per labelled token, or a linear-chain CRF over them (the QLS paper §5.2)
with Viterbi decoding. A subword model labels each word's first subword only; the other
positions carry IGNORE and are neither trained on nor scored."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtlrun.kinds.base import HeadContext, TaskKind, padded_source, register
from mtlrun.models.crf import CRF
from mtlrun.models.multitask import Batch, Output
from mtlrun.tasks.encode import IGNORE, EncodedSplit
from mtlrun.tasks.spec import Kind, Task
from mtlrun.training.batches import to_device


class TaggingHead(nn.Module):
    """Per-token logits (`linear`), optionally followed by a CRF (`crf`)."""

    def __init__(self, in_features: int, num_tags: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_tags)
        self.crf: CRF | None = None  # added by Tagging.finish_head with model.crf

    def forward(self, states: torch.Tensor, pooled: torch.Tensor, batch: Batch) -> Output:
        logits = self.linear(states)
        keep = batch.labels != IGNORE
        labels = batch.labels[keep]
        if self.crf is None:
            losses = F.cross_entropy(logits[keep], labels, reduction="none")
            return Output(losses, labels, lambda: F.log_softmax(logits[keep], -1),
                          lambda: logits.argmax(-1))  # fmt: skip
        # the CRF runs over the labelled positions only (a subword model labels first subwords)
        crf, counts = self.crf, keep.sum(1)
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


@register
class Tagging(TaskKind):
    kind = Kind.TAGGING

    def head(self, encoder: nn.Module, task: Task, cfg, context: HeadContext) -> nn.Module:
        return TaggingHead(encoder.output_size, task.num_labels)

    def finish_head(self, head: nn.Module, task: Task, cfg) -> None:
        if cfg.crf:
            head.crf = CRF(task.num_labels)

    def collate(self, split: EncodedSplit, index: np.ndarray, device: torch.device) -> Batch:
        ids, lengths, segments, (mask, positions) = padded_source(split, index, device)
        labels = np.where(mask, split.labels[positions], IGNORE)
        return Batch(ids, lengths, to_device(labels, device), segments)

    def rows(self, batch: Batch) -> np.ndarray:
        return (batch.labels != IGNORE).sum(1).cpu().numpy()

    def row_outcomes(self, gold: list[np.ndarray], probs: list[np.ndarray]) -> tuple[list, list]:
        return gold, [p.argmax(-1) for p in probs]

    def outcomes(self, out: Output, batch: Batch) -> tuple[list, list]:
        """Labelled positions only (a subword model labels first subwords)."""
        labels, guesses = batch.labels.cpu().numpy(), out.predictions().cpu().numpy()
        keep = labels != IGNORE
        return ([row[k] for row, k in zip(labels, keep, strict=True)],
                [row[k] for row, k in zip(guesses, keep, strict=True)])  # fmt: skip
