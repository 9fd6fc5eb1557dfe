"""Evaluation of one task on one split: mean loss, the primary metric and any extra metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mtlrun.models import MultiTaskModel
from mtlrun.tasks.encode import IGNORE, EncodedTask
from mtlrun.tasks.spec import Kind, Metric
from mtlrun.training.batches import collate, length_sorted_batches
from mtlrun.training.metrics import compute_metric


@dataclass
class Evaluation:
    score: float  # the task's primary metric, higher is better
    loss: float  # mean loss per example (per token for tagging)
    metrics: dict[str, float] = field(default_factory=dict)  # every metric, primary included


@torch.no_grad()
def evaluate(
    model: MultiTaskModel, k: int, task: EncodedTask, split: str, batch_size: int,
    device: torch.device,
) -> Evaluation:  # fmt: skip
    data, spec = task.splits[split], task.task
    tagging = spec.kind == Kind.TAGGING
    metrics = [spec.metric, *spec.extra_metrics]
    need_probs = Metric.ROC_AUC in metrics
    was_training = model.training
    model.eval()
    gold, pred, probs, loss_sum, count = [], [], [], 0.0, 0
    batches = length_sorted_batches(data.lengths, batch_size)
    for index in batches:
        batch = collate(data, index, tagging, device)
        out = model(k, batch)
        guesses = out.predictions().cpu().numpy()
        labels = batch.labels.cpu().numpy()
        if tagging:  # labelled positions only (a subword model labels first subwords)
            for row_labels, row_guesses in zip(labels, guesses, strict=True):
                keep = row_labels != IGNORE
                gold.append(row_labels[keep])
                pred.append(row_guesses[keep])
        else:
            gold.extend(labels)
            pred.extend(guesses)
            if need_probs:
                probs.extend(out.example_log_probs[:, 1].exp().cpu().numpy())
        loss_sum += out.example_losses.sum().item()
        count += len(out.example_losses)
    model.train(was_training)
    # predictions back in dataset order, so metrics see examples as the files list them
    order = np.argsort(np.concatenate(batches))
    gold, pred = [gold[i] for i in order], [pred[i] for i in order]
    probs = np.asarray(probs)[order] if need_probs else None
    scores = {m.value: compute_metric(m, gold, pred, spec.label_names, probs) for m in metrics}
    return Evaluation(score=scores[spec.metric.value], loss=loss_sum / max(count, 1),
                      metrics=scores)  # fmt: skip
