"""Self-paced MTL against the oracles of SCHEDULERS.md §3.7 (Appendix B item 11)."""

import numpy as np
import pytest
import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, TaskInfo
from mtlrun.schedulers.base import scheduler_rng
from mtlrun.schedulers.self_paced import self_paced_weights

L_HAT = np.array([0.2, 0.9, 1.5])


def make(batches=(4, 2, 2), **hparams):
    cls = SCHEDULERS["self_paced"]
    tasks = [TaskInfo(f"t{k}", 10 * n, n, "accuracy") for k, n in enumerate(batches)]
    return cls(cls.Config(**hparams), tasks, 1000, scheduler_rng(0, "self_paced"))


@pytest.mark.parametrize(
    "lam, mode, expected",
    [(1.0, "hard", [1, 1, 0]), (1.0, "linear", [0.8, 0.1, 0.0]), (1.1, "hard", [1, 1, 0]),
     (1.6, "hard", [1, 1, 1]), (0.1, "hard", [1, 0, 0])],
)  # fmt: skip
def test_oracle(lam, mode, expected):
    np.testing.assert_allclose(self_paced_weights(L_HAT, lam, mode), expected, atol=1e-6)


def test_linear_safeguard_when_every_weight_is_zero():
    np.testing.assert_allclose(self_paced_weights(L_HAT, 0.1, "linear"), [1, 0, 0])
    np.testing.assert_allclose(self_paced_weights([0.5, 0.2, 0.2], 0.1, "hard"), [0, 1, 0])


def test_running_loss_is_ema_old():
    s = make(pace_steps=100)
    s.observe_train(0, {0: 1.0})
    assert s.L[0] == 1.0  # first observation taken as is
    s.observe_train(1, {0: 0.0})
    assert s.L[0] == pytest.approx(0.9)  # 0.9·1.0 + 0.1·0.0
    assert np.isnan(s.L[1])


def test_warm_up_median_then_pace_growth():
    s = make(pace_steps=3)
    for t in range(3):  # epoch 0: the warm-up, v = 1 whatever the losses
        assert s.loss_weights(t).tolist() == [1, 1, 1]
        s.observe_train(t, dict(enumerate(L_HAT)))  # constant losses: L̂ = L_HAT
    assert s.lam == pytest.approx(0.9)  # λ_0 = median
    np.testing.assert_allclose(s.loss_weights(3), [1, 0, 0])  # 0.9 < 0.9 is false
    for t in range(3, 6):
        s.observe_train(t, dict(enumerate(L_HAT)))
    assert s.lam == pytest.approx(0.99)  # μ = 1.1 after one more epoch
    np.testing.assert_allclose(s.loss_weights(6), [1, 1, 0])
    for t in range(6, 6 + 3 * 5):
        s.observe_train(t, dict(enumerate(L_HAT)))
    assert s.lam == pytest.approx(0.9 * 1.1**6)  # 1.594...
    for t in range(21, 24):
        s.observe_train(t, dict(enumerate(L_HAT)))
    assert s.lam > 1.5
    np.testing.assert_allclose(s.loss_weights(24), [1, 1, 1])


def test_lambda_0_override_and_linear_mode():
    s = make(pace_steps=2, lambda_0=1.0, mode="linear")
    for t in range(2):
        s.observe_train(t, dict(enumerate(L_HAT)))
    assert s.lam == 1.0
    np.testing.assert_allclose(s.loss_weights(2), [0.8, 0.1, 0.0], atol=1e-12)


def test_combine_uses_detached_weights():
    s = make(pace_steps=1, lambda_0=1.0)
    s.observe_train(0, dict(enumerate(L_HAT)))
    x = torch.tensor([0.2, 0.9, 1.5], requires_grad=True)
    total = s.combine(1, {k: x[k] for k in range(3)})
    assert total.item() == pytest.approx(1.1)
    total.backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0]


def test_untrained_task_keeps_weight_one():
    s = make(pace_steps=2)
    s.observe_train(0, {0: 0.2})
    s.observe_train(1, {1: 0.9})  # SINGLE mode: task 2 never trained in the warm-up
    assert s.lam == pytest.approx(0.55)
    np.testing.assert_allclose(s.loss_weights(2), [1, 0, 1])


def test_default_window_by_step_mode():
    s = make(batches=(4, 2, 2))
    s.observe_train(0, dict(enumerate(L_HAT)))
    assert s.window == 4  # ALL mode
    s = make(batches=(4, 2, 2))
    s.observe_train(0, {0: 0.5})
    assert s.window == 8  # SINGLE mode


def test_nonfinite_loss_is_ignored():
    s = make(pace_steps=10)
    s.observe_train(0, {0: 0.5, 1: float("nan")})
    s.observe_train(1, {0: float("inf")})
    assert s.L[0] == 0.5 and np.isnan(s.L[1])


@pytest.mark.parametrize(
    "hparams, message",
    [({"mode": "soft"}, "mode must be"), ({"rho": 1.0}, "rho must be in"),
     ({"mu": 0.9}, "mu must be >= 1"), ({"lambda_0": 0.0}, "lambda_0 must be > 0"),
     ({"pace_steps": 0}, "pace_steps must be >= 1")],
)  # fmt: skip
def test_bad_config(hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS["self_paced"].Config(**hparams)


@pytest.mark.parametrize("mode", ["hard", "linear"])
def test_property_weights_finite_and_state_round_trip(mode):
    rng = np.random.default_rng(4)
    stream = rng.lognormal(0, 1, size=(60, 3))
    s = make(pace_steps=5, mode=mode)
    for t in range(27):
        s.observe_train(t, {k: float(x) for k, x in enumerate(stream[t]) if rng.random() < 0.6})
        v = s.loss_weights(t + 1)
        assert np.all(np.isfinite(v)) and np.all((v >= 0) & (v <= 1)) and v.max() > 0
    clone = make(pace_steps=5, mode=mode)
    clone.load_state_dict(s.state_dict())
    for t in range(27, 60):
        losses = {k: float(x) for k, x in enumerate(stream[t])}
        s.observe_train(t, losses)
        clone.observe_train(t, losses)
        assert clone.loss_weights(t + 1).tolist() == s.loss_weights(t + 1).tolist()
    assert clone.log_state() == s.log_state()
