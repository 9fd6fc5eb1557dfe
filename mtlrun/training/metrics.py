"""Primary metrics, each computed the standard way (seqeval for span F1)."""

from __future__ import annotations

import numpy as np
from seqeval.metrics import f1_score

from mtlrun.tasks.spec import Metric


def compute_metric(metric: Metric, gold: list, pred: list, label_names: list[str]) -> float:
    """Score predictions against gold labels; both are lists of ints or of int lists (tagging)."""
    if metric == Metric.ACCURACY:
        return float(np.mean(np.asarray(gold) == np.asarray(pred)))
    if metric == Metric.SPAN_F1:  # conlleval-compatible entity F1 over BIO tags
        names = np.asarray(label_names)
        return float(f1_score([list(names[g]) for g in gold], [list(names[p]) for p in pred]))
    if metric == Metric.TOKEN_ACCURACY:
        flat_gold, flat_pred = np.concatenate(gold), np.concatenate(pred)
        return float(np.mean(flat_gold == flat_pred))
    raise ValueError(f"unknown metric {metric}")
