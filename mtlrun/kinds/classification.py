"""One label per text (sentiment, topic) or per pair of texts (NLI, paraphrase): a linear layer
over the encoder's pooled vector (the pair vector for pairs), softmax cross-entropy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtlrun.kinds.base import HeadContext, TaskKind, padded_source, register
from mtlrun.models.multitask import Batch, Output
from mtlrun.tasks.encode import EncodedSplit
from mtlrun.tasks.spec import Kind, Task
from mtlrun.training.batches import to_device


class ClassificationHead(nn.Module):
    """A linear layer over the pooled vector."""

    def __init__(self, in_features: int, num_labels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_labels)

    def forward(self, states: torch.Tensor, pooled: torch.Tensor, batch: Batch) -> Output:
        logits = self.linear(pooled)
        losses = F.cross_entropy(logits, batch.labels, reduction="none")
        return Output(losses, batch.labels, lambda: F.log_softmax(logits, -1),
                      lambda: logits.argmax(-1))  # fmt: skip


@register
class Classification(TaskKind):
    kind = Kind.CLASSIFICATION

    def head(self, encoder: nn.Module, task: Task, cfg, context: HeadContext) -> nn.Module:
        return ClassificationHead(encoder.output_size, task.num_labels)

    def collate(self, split: EncodedSplit, index: np.ndarray, device: torch.device) -> Batch:
        ids, lengths, segments, _ = padded_source(split, index, device)
        return Batch(ids, lengths, to_device(split.labels[index], device), segments)

    def outcomes(self, out: Output, batch: Batch) -> tuple[list, list]:
        return list(batch.labels.cpu().numpy()), list(out.predictions().cpu().numpy())


@register
class PairClassification(Classification):
    kind = Kind.PAIR_CLASSIFICATION

    def head(self, encoder: nn.Module, task: Task, cfg, context: HeadContext) -> nn.Module:
        return ClassificationHead(encoder.pair_output_size, task.num_labels)
