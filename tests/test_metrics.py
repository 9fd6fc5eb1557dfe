import numpy as np
import pytest

from mtlrun.tasks.spec import Metric
from mtlrun.training.metrics import compute_metric

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_accuracy():
    assert compute_metric(Metric.ACCURACY, [0, 1, 1, 0], [0, 1, 0, 0], ["n", "p"]) == 0.75


def test_span_f1_counts_whole_spans():
    gold = [np.array([1, 2, 0, 3]), np.array([0, 3, 4])]  # spans: PER(0-1) LOC(3) | LOC(1-2)
    pred = [np.array([1, 0, 0, 3]), np.array([0, 3, 4])]  # PER span cut short: wrong span
    # 3 gold spans, 3 predicted spans, 2 correct: precision = recall = F1 = 2/3
    assert compute_metric(Metric.SPAN_F1, gold, pred, TAGS) == pytest.approx(2 / 3)


def test_token_accuracy():
    gold = [np.array([1, 2]), np.array([0])]
    pred = [np.array([1, 0]), np.array([0])]
    assert compute_metric(Metric.TOKEN_ACCURACY, gold, pred, TAGS) == pytest.approx(2 / 3)
