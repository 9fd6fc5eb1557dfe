"""Evaluation of one task on one split: mean loss, the primary metric and any extra metrics.
What the predictions are and how they are scored is the task kind's (mtlrun/kinds)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mtlrun.kinds import kind_of
from mtlrun.models import MultiTaskModel
from mtlrun.tasks.encode import EncodedTask
from mtlrun.tasks.spec import Metric
from mtlrun.training.batches import length_sorted_batches


@dataclass
class Evaluation:
    score: float  # the task's primary metric (see Metric.higher_is_better)
    loss: float  # mean loss per row: example, labelled token (tagging), output token (seq2seq)
    metrics: dict[str, float] = field(default_factory=dict)  # every metric, primary included


@torch.no_grad()
def evaluate(
    model: MultiTaskModel, k: int, task: EncodedTask, split: str, batch_size: int,
    device: torch.device,
) -> Evaluation:  # fmt: skip
    data, spec, kind = task.splits[split], task.task, kind_of(task.task)
    metrics = [spec.metric, *spec.extra_metrics]
    need_probs = Metric.ROC_AUC in metrics
    was_training = model.training
    model.eval()
    gold, pred, probs, loss_sum, count = [], [], [], 0.0, 0
    batches = length_sorted_batches(data.lengths, batch_size)
    for index in batches:
        batch = kind.collate(data, index, device)
        out = model(k, batch)
        g, p = kind.outcomes(out, batch)
        gold.extend(g)
        pred.extend(p)
        if need_probs:  # label 1's probability per example (binary classification)
            probs.extend(out.example_log_probs[:, 1].exp().cpu().numpy())
        loss_sum += out.example_losses.sum().item()
        count += len(out.example_losses)
    model.train(was_training)
    # predictions back in dataset order, so metrics see examples as the files list them
    order = np.argsort(np.concatenate(batches))
    gold, pred = [gold[i] for i in order], [pred[i] for i in order]
    probs = np.asarray(probs)[order] if need_probs else None
    scores = {m.value: kind.score(m, gold, pred, task, probs, split) for m in metrics}
    return Evaluation(score=scores[spec.metric.value], loss=loss_sum / max(count, 1),
                      metrics=scores)  # fmt: skip
