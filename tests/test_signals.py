"""Dev-set signals measured by the trainer (training/signals.py) on a real tiny model: they agree
with evaluation, MC dropout really samples, tagging rows are tokens, and measuring never
changes the training run."""

import numpy as np
import pytest
import torch
from test_trainer import trainer_for

from mtlrun.schedulers import SignalRequest
from mtlrun.training.evaluate import evaluate


@pytest.fixture
def trainer(tmp_path):
    tr = trainer_for(tmp_path, "model.dropout=0.3")
    for t in range(5):
        tr._train_step(t)
    return tr


def test_scores_and_losses_match_evaluation(trainer):
    K = len(trainer.tasks)
    request = SignalRequest(scores={k: None for k in range(K)})
    signals = trainer.meter.measure(trainer.model, request, seed=0)
    for k in range(K):
        ev = evaluate(trainer.model, k, trainer.tasks[k], "dev", 16, trainer.device)
        assert signals.scores[k] == pytest.approx(ev.score)
        assert signals.losses[k] == pytest.approx(ev.loss, rel=1e-5)
    assert signals.seconds > 0
    assert trainer.model.training  # left in training mode


def test_outputs_are_softmax_rows_of_the_chosen_examples(trainer):
    split = trainer.tasks[0].splits["dev"]
    rows = np.array([7, 3, 11])
    signals = trainer.meter.measure(trainer.model, SignalRequest(outputs={0: rows}), seed=0)
    out = signals.outputs[0]
    np.testing.assert_array_equal(out.example, [3, 7, 11])  # index order
    np.testing.assert_array_equal(out.labels, split.labels[[3, 7, 11]])
    np.testing.assert_allclose(out.probs.sum(1), 1, atol=1e-6)
    assert out.mc_probs is None and 1 not in signals.outputs and signals.scores == {}


def test_tagging_rows_are_tokens(trainer):
    k = trainer.names.index("entities")
    split = trainer.tasks[k].splits["dev"]
    signals = trainer.meter.measure(trainer.model, SignalRequest(outputs={k: [0, 1]}), seed=0)
    out = signals.outputs[k]
    lengths = split.lengths[:2]
    np.testing.assert_array_equal(out.example, np.repeat([0, 1], lengths))
    np.testing.assert_array_equal(out.labels, split.labels[: lengths.sum()])


def test_mc_dropout_samples_differ_and_average_near_eval(trainer):
    request = SignalRequest(outputs={0: None}, mc_samples=8)
    a = trainer.meter.measure(trainer.model, request, seed=1).outputs[0].mc_probs
    b = trainer.meter.measure(trainer.model, request, seed=1).outputs[0].mc_probs
    c = trainer.meter.measure(trainer.model, request, seed=2).outputs[0].mc_probs
    assert a.shape == (len(trainer.tasks[0].splits["dev"]), 2, 8)
    np.testing.assert_array_equal(a, b)  # seeded
    assert not np.allclose(a, c)
    assert a.std(axis=2).mean() > 1e-4  # dropout is on: the M passes disagree
    evald = trainer.meter.measure(trainer.model, SignalRequest(outputs={0: None}), seed=0)
    assert np.abs(a.mean(2) - evald.outputs[0].probs).mean() < 0.1


def test_mc_dropout_without_dropout_is_deterministic(tmp_path):
    tr = trainer_for(tmp_path, "model.dropout=0")
    mc = tr.meter.measure(tr.model, SignalRequest(outputs={0: None}, mc_samples=4), seed=0)
    probs = mc.outputs[0].mc_probs
    np.testing.assert_allclose(probs, np.repeat(probs[..., :1], 4, axis=2), atol=1e-6)


def test_measuring_does_not_change_the_training_run(trainer):
    state = torch.get_rng_state()
    trainer.meter.measure(trainer.model, SignalRequest(outputs={0: None}, mc_samples=4), seed=0)
    assert torch.equal(state, torch.get_rng_state())
