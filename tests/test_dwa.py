"""DWA against the oracles of SCHEDULERS.md §3.4 (Appendix B item 8)."""

import numpy as np
import pytest

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, TaskInfo
from mtlrun.schedulers.base import scheduler_rng
from mtlrun.schedulers.dwa import default_epoch_steps, dwa_weights


def infos(batches):
    return [TaskInfo(f"t{k}", 10 * n, n, "accuracy") for k, n in enumerate(batches)]


def make(batches=(4, 2), **hparams):
    cls = SCHEDULERS["dwa"]
    return cls(cls.Config(**hparams), infos(batches), 1000, scheduler_rng(0, "dwa"))


def feed_epochs(s, epoch_means, window, start=0):
    """ALL mode: every task every step, constant loss within an epoch."""
    t = start
    for means in epoch_means:
        for _ in range(window):
            s.observe_train(t, dict(enumerate(means)))
            t += 1
    return t


def test_oracle_two_tasks():
    np.testing.assert_allclose(
        dwa_weights([0.8, 0.5], [1.0, 1.0], 2.0), [1.074860, 0.925140], atol=1e-6
    )


def test_oracle_three_tasks():
    w = dwa_weights([0.9, 0.45, 0.3], [1.0, 0.5, 0.6], 2.0)
    np.testing.assert_allclose(w, [1.064309, 1.064309, 0.871382], atol=1e-6)
    assert w.sum() == pytest.approx(3.0)


def test_ones_for_epochs_0_and_1_then_oracle():
    s = make(batches=(3, 3, 1), window_steps=5)
    assert s.loss_weights(0).tolist() == [1, 1, 1]
    t = feed_epochs(s, [[1.0, 0.5, 0.6]], 5)  # epoch 0 done
    assert s.loss_weights(t).tolist() == [1, 1, 1]  # epoch 1 still ones
    t = feed_epochs(s, [[0.9, 0.45, 0.3]], 5, t)  # epoch 1 done: epoch 2 uses both
    np.testing.assert_allclose(s.loss_weights(t), [1.064309, 1.064309, 0.871382], atol=1e-6)


def test_weights_change_only_at_epoch_boundaries():
    s = make(window_steps=4)
    t = feed_epochs(s, [[1.0, 1.0], [0.8, 0.5]], 4)
    w = s.loss_weights(t)
    for t2 in range(t, t + 3):  # inside epoch 2 the weights stay put, whatever the losses
        s.observe_train(t2, {0: 100.0, 1: 0.001})
        assert s.loss_weights(t2 + 1).tolist() == w.tolist()
    np.testing.assert_allclose(w, [1.074860, 0.925140], atol=1e-6)


def test_epoch_mean_is_the_mean_over_the_window():
    s = make(window_steps=2)
    s.observe_train(0, {0: 1.5, 1: 1.0})
    s.observe_train(1, {0: 0.5, 1: 1.0})  # epoch 0 means [1.0, 1.0]
    s.observe_train(2, {0: 0.6, 1: 0.2})
    s.observe_train(3, {0: 1.0, 1: 0.8})  # epoch 1 means [0.8, 0.5]
    np.testing.assert_allclose(s.loss_weights(4), [1.074860, 0.925140], atol=1e-6)


def test_single_mode_carries_a_missing_mean_forward():
    s = make(window_steps=2)
    s.observe_train(0, {0: 1.0})
    s.observe_train(1, {1: 1.0})  # epoch 0: [1.0, 1.0]
    s.observe_train(2, {0: 0.8})
    s.observe_train(3, {0: 0.8})  # epoch 1: task 1 untrained -> carried: [0.8, 1.0]
    np.testing.assert_allclose(s.loss_weights(4), dwa_weights([0.8, 1.0], [1.0, 1.0], 2.0))
    assert s.loss_weights(4)[1] > 1


def test_never_trained_task_has_ratio_one():
    s = make(window_steps=1)
    s.observe_train(0, {0: 1.0})
    s.observe_train(1, {0: 0.5})
    np.testing.assert_allclose(s.loss_weights(2), dwa_weights([0.5, 1.0], [1.0, 1.0], 2.0))


def test_tiny_previous_loss_gives_ratio_one_and_no_overflow():
    w = dwa_weights([5.0, 1e300], [0.0, 1e-300], 2.0)
    np.testing.assert_allclose(w, [1.0, 1.0])
    w = dwa_weights([1e6, 1.0], [1.0, 1.0], 2.0)  # max-subtraction: no overflow
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(2.0)


def test_nonfinite_loss_is_ignored():
    s = make(window_steps=2)
    feed_epochs(s, [[1.0, 1.0]], 2)
    s.observe_train(2, {0: float("nan"), 1: 0.5})
    s.observe_train(3, {0: 0.8, 1: float("inf")})
    np.testing.assert_allclose(s.loss_weights(4), dwa_weights([0.8, 0.5], [1.0, 1.0], 2.0))


def test_default_window_by_step_mode():
    tasks = infos([30, 6])
    assert default_epoch_steps(tasks, 2) == 30  # ALL: one pass over the largest task
    assert default_epoch_steps(tasks, 1) == 36  # SINGLE: one pass over the union
    s = make(batches=(3, 1))
    feed_epochs(s, [[1.0, 1.0]], 3)  # ALL mode: window = max = 3
    assert s.window == 3
    s = make(batches=(3, 1))
    s.observe_train(0, {0: 1.0})
    assert s.window == 4


def test_val_signal_uses_dev_losses_per_round():
    s = make(signal="val")
    assert not s.observes_train_loss
    s.observe_eval(10, {0: 0.5, 1: 0.5}, {0: 1.0, 1: 1.0})
    assert s.loss_weights(10).tolist() == [1, 1]
    s.observe_eval(20, {0: 0.5, 1: 0.5}, {0: 0.8, 1: 0.5})
    np.testing.assert_allclose(s.loss_weights(20), [1.074860, 0.925140], atol=1e-6)


def test_train_signal_ignores_dev_losses():
    s = make(window_steps=2)
    s.observe_eval(10, {0: 0.5, 1: 0.5}, {0: 1.0, 1: 1.0})
    s.observe_eval(20, {0: 0.5, 1: 0.5}, {0: 0.8, 1: 0.5})
    assert s.loss_weights(20).tolist() == [1, 1]


@pytest.mark.parametrize(
    "hparams, message",
    [({"T": 0}, "T must be > 0"), ({"signal": "dev"}, "signal must be"),
     ({"window_steps": 0}, "window_steps must be >= 1")],
)  # fmt: skip
def test_bad_config(hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS["dwa"].Config(**hparams)


def test_property_weights_finite_sum_to_K_and_state_round_trip():
    rng = np.random.default_rng(1)
    s = make(batches=(3, 2, 2), window_steps=3)
    stream = rng.lognormal(0, 2, size=(60, 3))
    for t in range(25):
        s.observe_train(t, {k: float(x) for k, x in enumerate(stream[t]) if rng.random() < 0.7})
        w = s.loss_weights(t + 1)
        assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(3.0) and np.all(w > 0)
    clone = make(batches=(3, 2, 2), window_steps=3)
    clone.load_state_dict(s.state_dict())
    for t in range(25, 60):
        losses = {k: float(x) for k, x in enumerate(stream[t])}
        s.observe_train(t, losses)
        clone.observe_train(t, losses)
        assert clone.loss_weights(t + 1).tolist() == s.loss_weights(t + 1).tolist()
    assert s.log_state() == clone.log_state()
