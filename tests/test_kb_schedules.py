"""Kiperwasser & Ballesteros schedules against SCHEDULERS.md §2.10 (Appendix B item 4)."""

import math

import numpy as np
import pytest

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, Category, StepMode, TaskInfo
from mtlrun.schedulers.base import scheduler_rng

IDS = ["kb_constant", "kb_exponential", "kb_sigmoid"]


def infos(k, primary=None):
    return [TaskInfo(f"t{i}", 100, 10, "accuracy", is_primary=i == primary) for i in range(k)]


def make(name, k=2, total_steps=1000, seed=0, tasks=None, **hparams):
    cls = SCHEDULERS[name]
    tasks = tasks if tasks is not None else infos(k)
    return cls(cls.Config(**hparams), tasks, total_steps, scheduler_rng(seed, name))


TABLE = [  # t, exponential p_main, sigmoid p_main
    (0, 0.000000, 0.500000),
    (1, 0.393469, 0.622459),
    (2, 0.632121, 0.731059),
    (5, 0.917915, 0.924142),
    (10, 0.993262, 0.993307),
]


@pytest.mark.parametrize("t, p_exp, p_sig", TABLE)
def test_two_task_oracle_table(t, p_exp, p_sig):
    exp = make("kb_exponential", main_task="t0", alpha=0.5)
    sig = make("kb_sigmoid", main_task="t0", alpha=0.5)
    np.testing.assert_allclose(exp.task_distribution(t), [p_exp, 1 - p_exp], atol=1e-6)
    np.testing.assert_allclose(sig.task_distribution(t), [p_sig, 1 - p_sig], atol=1e-6)
    assert exp.main_probability(t) == pytest.approx(p_exp, abs=1e-6)
    assert sig.main_probability(t) == pytest.approx(p_sig, abs=1e-6)


def test_three_task_exponential_oracle():
    s = make("kb_exponential", k=3, alpha=0.5)
    np.testing.assert_allclose(s.task_distribution(2), [0.632121, 0.183940, 0.183940], atol=1e-6)


@pytest.mark.parametrize("name", ["kb_exponential", "kb_sigmoid"])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_closed_form_matches_the_general_formula(name, k):
    s = make(name, k=k, main_task=f"t{k - 1}", alpha=0.3)
    for t in range(0, 40, 3):
        p = s.task_distribution(t)
        assert p[k - 1] == pytest.approx(s.main_probability(t), abs=1e-12)
        np.testing.assert_allclose(p[:-1], (1 - p[k - 1]) / (k - 1), atol=1e-12)


def test_exponential_never_samples_main_task_at_step_zero():
    s = make("kb_exponential", alpha=0.5)
    assert all(s.next_task(0) == 1 for _ in range(200))


def test_constant():
    s = make("kb_constant", k=3, main_task="t1")
    np.testing.assert_allclose(s.task_distribution(123), [0.25, 0.5, 0.25])
    s = make("kb_constant", k=3, p_main=0.8, mode="weight")
    assert s.loss_weights(7).tolist() == [0.8, 1.0, 1.0]


def test_default_alpha_is_five_over_total_steps():
    s = make("kb_exponential", total_steps=200)
    assert s.alpha == 5 / 200
    assert s.main_probability(200) == pytest.approx(1 - math.exp(-5))


def test_huge_alpha_t_is_clipped_without_warnings():
    s = make("kb_sigmoid", alpha=1e6)
    with np.errstate(all="raise"):
        p = s.task_distribution(10**9)
    np.testing.assert_allclose(p, [1.0, 0.0], atol=1e-300)


@pytest.mark.parametrize("name", ["kb_exponential", "kb_sigmoid"])
def test_weight_mode_weights_the_main_task_only(name):
    s = make(name, k=3, main_task="t2", alpha=0.5, mode="weight")
    for t, p_exp, p_sig in TABLE:
        expected = p_exp if name == "kb_exponential" else p_sig
        np.testing.assert_allclose(s.loss_weights(t), [1, 1, expected], atol=1e-6)
        assert s.task_distribution(t).tolist() == [1 / 3] * 3


def test_sampler_mode_keeps_unit_weights():
    assert make("kb_sigmoid", k=3).loss_weights(5).tolist() == [1.0, 1.0, 1.0]


def test_main_task_default_primary_else_first():
    assert make("kb_sigmoid", k=3).main == 0
    assert make("kb_sigmoid", tasks=infos(3, primary=2)).main == 2


def test_unknown_main_task_lists_the_tasks():
    with pytest.raises(ConfigError, match="choose one of: t0, t1"):
        make("kb_exponential", main_task="nope")


@pytest.mark.parametrize(
    "name, hparams, message",
    [("kb_exponential", {"alpha": 0}, "alpha must be > 0"),
     ("kb_sigmoid", {"alpha": -1.0}, "alpha must be > 0"),
     ("kb_constant", {"p_main": 1.5}, "p_main must be in"),
     ("kb_constant", {"mode": "both"}, "mode must be")],
)  # fmt: skip
def test_bad_config(name, hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS[name].Config(**hparams)


@pytest.mark.parametrize("name", IDS)
def test_class_attributes(name):
    cls = SCHEDULERS[name]
    assert cls.category == Category.SAMPLER
    assert cls.step_modes == (StepMode.SINGLE, StepMode.ALL)


@pytest.mark.parametrize("name", IDS)
def test_single_task_run_is_well_defined(name):
    s = make(name, k=1)
    assert s.task_distribution(0).tolist() == [1.0] and s.next_task(0) == 0


@pytest.mark.parametrize("mode", ["sampler", "weight"])
@pytest.mark.parametrize("name", IDS)
def test_properties(name, mode):
    s = make(name, k=3, total_steps=100, mode=mode)
    for t in range(0, 101, 5):
        p = s.task_distribution(t)
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0)
        w = s.loss_weights(t)
        assert np.all(np.isfinite(w)) and np.all((0 <= w) & (w <= 1))
    first = [s.next_task(t) for t in range(50)]
    state = s.state_dict()
    cont = [s.next_task(t) for t in range(50, 100)]
    fresh = make(name, k=3, total_steps=100, seed=3, mode=mode)
    fresh.load_state_dict(state)
    assert [fresh.next_task(t) for t in range(50, 100)] == cont
    again = make(name, k=3, total_steps=100, mode=mode)
    assert [again.next_task(t) for t in range(50)] == first


@pytest.mark.parametrize("name, column", [("kb_exponential", 1), ("kb_sigmoid", 2)])
def test_epoch_time_unit_holds_within_an_epoch(name, column):
    # two tasks of 10 batches each: an epoch (one pass over the union) is 20 steps
    s = make(name, alpha=0.5, time_unit="epoch")
    for t, *expected in TABLE:
        for step in (20 * t, 20 * t + 19):  # first and last step of epoch t
            p_main = s.task_distribution(step)[0]
            assert p_main == pytest.approx(expected[column - 1], abs=1e-6)


def test_epoch_default_rate_reaches_the_same_end_point():
    by_step = make("kb_exponential", total_steps=2000)
    by_epoch = make("kb_exponential", total_steps=2000, time_unit="epoch")  # 100 epochs
    assert by_epoch.alpha == pytest.approx(5 / 100)
    assert by_epoch.task_distribution(1999)[0] == pytest.approx(
        by_step.task_distribution(1980)[0], abs=1e-9
    )
