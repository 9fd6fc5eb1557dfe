"""Leave-one-task-out transfer (the QLS paper's Table 3): one task of the suite is kept out of
training; afterwards a new, randomly initialised head learns it over the frozen shared encoder,
scored by k-fold cross-validation over all its labelled examples (train, dev and test pooled).

The encoder is frozen and in eval mode, so each example's pooled vector is computed once; a
fold then trains only the new head on the vectors of the other folds (Adam, fixed epochs) and
scores the held fold with the task's own metric. The vocabulary is the training tasks': words
only the held-out task uses are unknown words, as for any text the model never saw."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlrun.errors import ConfigError
from mtlrun.kinds import kind_of
from mtlrun.kinds.base import HeadContext
from mtlrun.models.multitask import Batch
from mtlrun.tasks.encode import SPLITS, EncodedSplit, EncodedTask
from mtlrun.tasks.spec import Kind, Task
from mtlrun.training.batches import length_sorted_batches
from mtlrun.training.metrics import compute_metric

# a head over one pooled vector per example: what "a new task layer on the shared feature
# space" means; taggers and decoders read every token's state, which is not frozen here
TRANSFERABLE = (Kind.CLASSIFICATION, Kind.PAIR_CLASSIFICATION)


def hold_out(tasks: list[Task], name: str | None) -> tuple[list[Task], Task | None]:
    """The tasks to train on, and the task kept out for transfer (None: no transfer)."""
    if name is None:
        return tasks, None
    by_name = {t.name: t for t in tasks}
    if name not in by_name:
        raise ConfigError(f"transfer.task={name} is not a task of this suite; choose one of: "
                          f"{', '.join(by_name)}")  # fmt: skip
    held = by_name[name]
    if held.kind not in TRANSFERABLE:
        raise ConfigError(f"transfer.task={name}: a {held.kind.value} task; transfer trains a "
                          "new head over the pooled vector, which only classification and pair "
                          "classification tasks have")  # fmt: skip
    if len(tasks) == 1:
        raise ConfigError(f"transfer.task={name} is the suite's only task: nothing to train on")
    return [t for t in tasks if t.name != name], held


def encode_held_out(held: Task, trained: list[EncodedTask]) -> EncodedTask:
    """The held-out task in the training tasks' vocabulary."""
    encoder = trained[0].encoder
    return EncodedTask(held, {s: encoder.encode(held.split(s), held.kind) for s in SPLITS},
                       encoder)  # fmt: skip


@torch.no_grad()
def pooled_vectors(
    encoder: nn.Module, task: EncodedTask, split: EncodedSplit, batch_size: int,
    device: torch.device,
) -> torch.Tensor:  # fmt: skip
    """[N, D]: the frozen encoder's pooled vector of every example, in dataset order."""
    kind = kind_of(task.task)
    parts, order = [], []
    for index in length_sorted_batches(split.lengths, batch_size):
        batch = kind.collate(split, index, device)
        _, pooled = encoder(batch.ids, batch.lengths, batch.segments)
        parts.append(pooled.float().cpu())
        order.append(index)
    vectors = torch.cat(parts)
    return vectors[torch.from_numpy(np.argsort(np.concatenate(order)))]


def fold_indices(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Stratified folds: each fold's label mix is the whole task's (scikit-learn's rule)."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(labels)), labels)]


def train_head(
    head: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Any, batch_size: int, seed: int
) -> None:
    """Adam on the new head alone, `cfg.epochs` passes over (x, y) in shuffled minibatches."""
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(cfg.epochs):
        for index in torch.randperm(len(y), generator=generator).split(batch_size):
            out = head(None, x[index], Batch(None, None, y[index]))
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
    head.eval()


def transfer(c: Any, encoder: nn.Module, held: EncodedTask, device: torch.device) -> dict:
    """k-fold cross-validated score of a new head for `held` over the frozen `encoder`."""
    start = time.perf_counter()
    was_training = encoder.training
    encoder.eval()
    splits = [held.splits[s] for s in SPLITS]
    x = torch.cat([pooled_vectors(encoder, held, s, c.trainer.batch_size, device)
                   for s in splits])  # fmt: skip
    y = torch.from_numpy(np.concatenate([np.asarray(s.labels) for s in splits])).long()
    encoder.train(was_training)

    def new_head() -> nn.Module:
        return kind_of(held.task).head(encoder, held.task, c.model, HeadContext())

    scores = cross_validate(held.task, x, y, new_head, c.transfer, c.trainer.batch_size, c.seed)
    return {
        "task": held.task.name,
        "metric": held.task.metric.value,
        "higher_is_better": held.task.metric.higher_is_better,
        "score": statistics.fmean(scores),
        "sd": statistics.stdev(scores),
        "fold_scores": scores,
        "folds": c.transfer.folds,
        "examples": len(y),
        "epochs": c.transfer.epochs,
        "seconds": round(time.perf_counter() - start, 2),
    }


def cross_validate(
    task: Task, x: torch.Tensor, y: torch.Tensor, new_head, cfg: Any, batch_size: int, seed: int
) -> list[float]:
    """Per fold: a new head (`new_head()`, seeded per fold) trained on the other folds' (x, y),
    scored on this fold with the task's metric."""
    smallest = int(np.bincount(y.numpy()).min())
    if cfg.folds > smallest:
        raise ConfigError(f"transfer.folds={cfg.folds}: {task.name}'s rarest label has only "
                          f"{smallest} examples; use fewer folds")  # fmt: skip
    scores = []
    for f, held_fold in enumerate(fold_indices(y.numpy(), cfg.folds, seed)):
        rest = torch.from_numpy(np.setdiff1d(np.arange(len(y)), held_fold))
        held_fold = torch.from_numpy(held_fold)
        torch.manual_seed(seed * 1000 + f)  # the new head's initial values, per fold
        head = new_head()
        train_head(head, x[rest], y[rest], cfg, batch_size, seed * 1000 + f)
        with torch.no_grad():
            out = head(None, x[held_fold], Batch(None, None, y[held_fold]))
            probs = out.example_log_probs[:, 1].exp().numpy() if task.num_labels == 2 else None
            gold, pred = y[held_fold].tolist(), out.predictions().tolist()
        scores.append(compute_metric(task.metric, gold, pred, task.label_names, probs))
    return scores
