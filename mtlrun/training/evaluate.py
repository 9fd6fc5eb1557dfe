"""Evaluation of one task on one split: mean loss and the task's primary metric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mtlrun.models import MultiTaskModel
from mtlrun.tasks.encode import EncodedTask
from mtlrun.tasks.spec import Kind
from mtlrun.training.batches import collate, length_sorted_batches
from mtlrun.training.metrics import compute_metric


@dataclass
class Evaluation:
    score: float  # the task's primary metric, higher is better
    loss: float  # mean loss per example (per token for tagging)


@torch.no_grad()
def evaluate(
    model: MultiTaskModel, k: int, task: EncodedTask, split: str, batch_size: int,
    device: torch.device,
) -> Evaluation:  # fmt: skip
    data = task.splits[split]
    tagging = task.task.kind == Kind.TAGGING
    was_training = model.training
    model.eval()
    gold, pred, loss_sum, count = [], [], 0.0, 0
    batches = length_sorted_batches(data.lengths, batch_size)
    for index in batches:
        batch = collate(data, index, tagging, device)
        out = model(k, batch)
        guesses = out.logits.argmax(-1).cpu().numpy()
        labels = batch.labels.cpu().numpy()
        if tagging:
            n = int((labels != -100).sum())
            for row, length in enumerate(batch.lengths.tolist()):
                gold.append(labels[row, :length])
                pred.append(guesses[row, :length])
        else:
            n = len(index)
            gold.extend(labels)
            pred.extend(guesses)
        loss_sum += out.loss.item() * n
        count += n
    model.train(was_training)
    # predictions back in dataset order, so metrics see examples as the files list them
    order = np.argsort(np.concatenate(batches))
    gold, pred = [gold[i] for i in order], [pred[i] for i in order]
    score = compute_metric(task.task.metric, gold, pred, task.task.label_names)
    return Evaluation(score=score, loss=loss_sum / max(count, 1))
