"""Greedy loss sampler against SCHEDULERS.md §3.1 (Appendix B item 5)."""

import numpy as np
import pytest

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, TaskInfo
from mtlrun.schedulers.base import scheduler_rng


def make(k=3, seed=0, **hparams):
    cls = SCHEDULERS["greedy_loss"]
    tasks = [TaskInfo(f"t{i}", 100, 10, "accuracy") for i in range(k)]
    return cls(cls.Config(**hparams), tasks, 1000, scheduler_rng(seed, "greedy_loss"))


def step(s, t, losses):
    """One trainer step: draw, then report the trained task's loss (losses: task -> value)."""
    k = s.next_task(t)
    if s.observes_train_loss:
        s.observe_train(t, {k: losses[k]})
    return k


def test_oracle_visiting_order_and_ties():
    s = make()
    # +inf initialisation: tasks 0, 1, 2 first whatever the losses
    assert [step(s, t, {0: 0.3, 1: 0.7, 2: 0.7}) for t in range(3)] == [0, 1, 2]
    assert s.ell.tolist() == pytest.approx([0.3, 0.7, 0.7], abs=1e-6)
    assert s.next_task(3) == 1  # tie with task 2 goes to the lower index
    s.observe_train(3, {1: 0.2})
    assert s.ell.tolist() == pytest.approx([0.3, 0.2, 0.7], abs=1e-6)
    assert s.next_task(4) == 2


def test_first_observations_ignore_unseen_losses():
    s = make()
    assert [step(s, t, {0: 9.0, 1: 0.1, 2: 0.1}) for t in range(3)] == [0, 1, 2]
    assert s.next_task(3) == 0


def test_ema_old_update():
    s = make(k=2, rho=0.5)
    s.observe_train(0, {0: 1.0})  # first observation: set, not averaged with +inf
    assert s.ell[0] == 1.0
    s.observe_train(1, {0: 0.2})
    assert s.ell[0] == pytest.approx(0.5 * 1.0 + 0.5 * 0.2, abs=1e-12)


def test_non_finite_losses_are_ignored():
    s = make(k=2)
    s.observe_train(0, {0: 0.4})
    s.observe_train(1, {0: float("nan"), 1: float("inf")})
    assert s.ell[0] == 0.4 and np.isinf(s.ell[1])


def test_distribution_is_one_hot_on_the_next_choice():
    s = make()
    for t in range(3):
        step(s, t, {0: 0.1, 1: 0.9, 2: 0.5})
    assert s.task_distribution(3).tolist() == [0.0, 1.0, 0.0]


def test_val_signal_round_robin_until_first_eval_then_greedy_on_dev_losses():
    s = make(signal="val")
    assert not s.observes_train_loss  # no per-step device sync needed
    assert [s.next_task(t) for t in range(5)] == [0, 1, 2, 0, 1]
    s.observe_eval(5, {0: 0.5, 1: 0.5, 2: 0.5}, {0: 0.4, 1: 0.9, 2: 0.9})
    assert [s.next_task(t) for t in range(5, 8)] == [1, 1, 1]
    s.observe_eval(8, {0: 0.5, 1: 0.5, 2: 0.5}, {0: 0.4, 1: 0.3, 2: 0.9})
    assert s.next_task(8) == 2


def test_train_signal_ignores_dev_losses():
    s = make(k=2)
    s.observe_eval(10, {0: 0.5, 1: 0.5}, {0: 0.1, 1: 5.0})
    assert np.isinf(s.ell).all() and s.next_task(0) == 0


@pytest.mark.parametrize("hparams, message", [({"rho": 1.0}, "rho"), ({"signal": "dev"}, "signal")])
def test_bad_config(hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS["greedy_loss"].Config(**hparams)


def fake_loss(k, t):
    return 1.0 / (1 + t) + 0.1 * k  # a fixed, deterministic loss stream


def test_state_round_trip_and_determinism():
    s = make(rho=0.3)
    first = [step(s, t, {k: fake_loss(k, t) for k in range(3)}) for t in range(30)]
    state = s.state_dict()
    log = s.log_state()
    assert all(isinstance(x, float) for x in log["ell"])
    cont = [step(s, t, {k: fake_loss(k, t) for k in range(3)}) for t in range(30, 60)]
    fresh = make(rho=0.3, seed=5)
    fresh.load_state_dict(state)
    assert [step(fresh, t, {k: fake_loss(k, t) for k in range(3)}) for t in range(30, 60)] == cont
    again = make(rho=0.3)
    assert [step(again, t, {k: fake_loss(k, t) for k in range(3)}) for t in range(30)] == first


def test_log_state_is_json_safe_before_any_loss():
    assert make(k=2).log_state() == {"ell": [None, None]}


def test_refresh_overwrites_every_loss_on_schedule():
    s = make(refresh_every=5)
    assert [s.wants_loss_probe(t) for t in range(11)] == [t in (5, 10) for t in range(11)]
    s.observe_train(0, {0: 0.3})
    s.observe_loss_probe(5, {0: 0.9, 1: 0.2, 2: 0.4})
    assert s.ell.tolist() == [0.9, 0.2, 0.4] and s.next_task(5) == 0
    assert not make().wants_loss_probe(5)  # off by default
