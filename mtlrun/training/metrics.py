"""Metrics, each computed by the standard library for it: seqeval (span F1), scikit-learn
(binary F1, ROC-AUC), sacrebleu (BLEU), numpy (accuracies)."""

from __future__ import annotations

import numpy as np

from mtlrun.tasks.spec import Metric

# seqeval, scikit-learn and sacrebleu are imported where used: together they take about two
# seconds to import (scipy, pandas), which every `mtlrun` start would otherwise pay.


def compute_metric(
    metric: Metric, gold: list, pred: list, label_names: list[str], positive_probs=None
) -> float:
    """Score predictions against gold labels; both are lists of ints or of int lists (tagging).
    ROC-AUC ranks `positive_probs`, the probability of label 1 per example."""
    if metric == Metric.ACCURACY:
        return float(np.mean(np.asarray(gold) == np.asarray(pred)))
    if metric == Metric.SPAN_F1:  # conlleval-compatible entity F1 over BIO tags
        from seqeval.metrics import f1_score as span_f1

        names = np.asarray(label_names)
        return float(span_f1([list(names[g]) for g in gold], [list(names[p]) for p in pred]))
    if metric == Metric.TOKEN_ACCURACY:
        flat_gold, flat_pred = np.concatenate(gold), np.concatenate(pred)
        return float(np.mean(flat_gold == flat_pred))
    if metric == Metric.BINARY_F1:
        from sklearn.metrics import f1_score

        return float(f1_score(gold, pred, pos_label=1, average="binary", zero_division=0.0))
    if metric == Metric.BLEU:  # gold and pred: detokenised reference and output texts
        from mtlrun.training.bleu import corpus_bleu

        return corpus_bleu(pred, gold) / 100  # a fraction, like every metric; tables show points
    if metric == Metric.ROC_AUC:
        if positive_probs is None:
            raise ValueError("ROC-AUC needs the probability of label 1 per example")
        if len(set(np.asarray(gold).tolist())) < 2:
            return float("nan")  # undefined with one class present; sklearn would raise
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(gold, positive_probs))
    raise ValueError(f"unknown metric {metric}")
