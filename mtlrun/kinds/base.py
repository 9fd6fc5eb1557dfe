"""What every task kind provides (`TaskKind`), and the registry that maps a `Kind` to it.

A kind owns everything that depends on the shape of a task's labels: the head that turns the
shared encoder's output into losses and predictions, how examples are padded into a batch, how
many output rows (examples, labelled tokens, output tokens) an example has, and how a split is
scored. The model, the trainer, evaluation and the dev-set signals ask the kind and never
branch on it. Add a kind by adding a module that defines a subclass with `@register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mtlrun.models.multitask import Batch, Output
from mtlrun.tasks.encode import EncodedSplit, EncodedTask
from mtlrun.tasks.spec import Kind, Metric, Task
from mtlrun.training.batches import to_device
from mtlrun.training.metrics import compute_metric

KINDS: dict[Kind, TaskKind] = {}


def register(cls: type[TaskKind]) -> type[TaskKind]:
    KINDS[cls.kind] = cls()
    return cls


def kind_of(task: Task) -> TaskKind:
    return KINDS[task.kind]


@dataclass
class HeadContext:
    """What a head may need besides its task: the run's vocabulary size (output layers over
    it), and modules that heads of several tasks share (a shared decoder), by name."""

    vocab_size: int | None = None
    modules: dict[str, nn.Module] = field(default_factory=dict)


class TaskKind:
    kind: ClassVar[Kind]
    mc_signals: ClassVar[bool] = True  # rows keep whole distributions (MC-dropout signals)

    def head(self, encoder: nn.Module, task: Task, cfg, context: HeadContext) -> nn.Module:
        """Task `task`'s head, a module `head(states, pooled, batch) -> Output`, for the model
        config `cfg`."""
        raise NotImplementedError

    def finish_head(self, head: nn.Module, task: Task, cfg) -> None:
        """Called once every task's head exists: parts built here draw their random initial
        values after all heads' (a CRF, as before the kinds owned heads), so a seed gives the
        same initial model as it always did."""

    def classes(self, task: EncodedTask) -> int:
        """How many classes each output row chooses among (its chance loss is ln of it)."""
        return task.task.num_labels

    def collate(self, split: EncodedSplit, index: np.ndarray, device: torch.device) -> Batch:
        """The examples `index` of `split`, padded into a Batch on `device`."""
        raise NotImplementedError

    def rows(self, batch: Batch) -> np.ndarray:
        """How many output rows (losses) each example of `batch` has, in batch order."""
        return np.ones(len(batch.lengths), dtype=np.int64)

    def outcomes(self, out: Output, batch: Batch) -> tuple[list, list]:
        """Per example of `batch`: its gold labels and the model's predictions, in the form
        `score` reads."""
        raise NotImplementedError

    def signal_rows(self, out: Output) -> tuple[torch.Tensor, torch.Tensor]:
        """Dev-set signal rows of a batch's output: distributions [rows, C] and gold columns."""
        return out.example_log_probs.float().exp(), out.example_labels

    def signal_metric(self, task: Task) -> Metric:
        """What a signal's score over chosen dev examples is: the task's primary metric."""
        return task.metric

    def row_outcomes(self, gold: list[np.ndarray], probs: list[np.ndarray]) -> tuple[list, list]:
        """Per example, from its rows' gold labels and output distributions (dev-set signals):
        gold labels and argmax predictions in the form `score` reads."""
        return [int(g[0]) for g in gold], [int(p[0].argmax()) for p in probs]

    def score(self, metric: Metric, gold: list, pred: list, task: EncodedTask,
              positive_probs=None, split: str | None = None) -> float:  # fmt: skip
        """`metric` of predictions against gold labels, both in dataset order (all of `split`
        when it is named, else chosen examples)."""
        return compute_metric(metric, gold, pred, task.task.label_names, positive_probs)


def padded_source(split: EncodedSplit, index: np.ndarray, device: torch.device):
    """The input side of a batch: ids [B, T] (0 = padding) and segments on `device`, lengths
    [B] on the host, and (mask, positions) [B, T] for kinds whose labels align with the ids.
    A vectorised gather, no Python loop."""
    starts = split.offsets[index]
    lengths = split.offsets[index + 1] - starts
    columns = np.arange(int(lengths.max()))
    mask = columns[None, :] < lengths[:, None]
    positions = np.where(mask, starts[:, None] + columns[None, :], 0)
    ids = np.where(mask, split.ids[positions], 0).astype(np.int64)
    segments = None
    if split.segments is not None:
        segments = to_device(np.where(mask, split.segments[positions], 0), device)
    return to_device(ids, device), torch.from_numpy(lengths), segments, (mask, positions)
