"""Jean et al. schedules against SCHEDULERS.md §5.1–5.2 (Appendix B item 13)."""

import json

import numpy as np
import pytest

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, Category, StepMode, TaskInfo
from mtlrun.schedulers.base import scheduler_rng
from mtlrun.schedulers.jean import explicit_distribution, implicit_weights

B = [24, 35]  # the paper's BLEU baselines; the formulas are scale-free


def make(name, baselines=B, seed=0, tasks=None, **hparams):
    cls = SCHEDULERS[name]
    if tasks is None:
        tasks = [TaskInfo(f"t{k}", 100, 10, "accuracy") for k in range(len(baselines or B))]
    if baselines is not None:
        hparams["baselines"] = {f"t{k}": b for k, b in enumerate(baselines)}
    return cls(cls.Config(**hparams), tasks, 1000, scheduler_rng(seed, name))


def observe(s, scores):
    s.observe_eval(1, dict(enumerate(scores)), {k: 1.0 for k in range(len(scores))})


EXPLICIT = [
    ([20, 30], 1, [1.132075, 1.102362], [0.506649, 0.493351]),
    ([20, 30], 16, [9.607265, 7.413504], [0.564444, 0.435556]),
    ([0, 0], 1, [20, 20], [0.5, 0.5]),
    ([25, 30], 1, [0.952381, 1.102362], [0.463504, 0.536496]),
]


@pytest.mark.parametrize("s, alpha, u, p", EXPLICIT)
def test_explicit_oracle(s, alpha, u, p):
    _, got_u, got_p = explicit_distribution(s, B, alpha, 0.05)
    np.testing.assert_allclose(got_u, u, atol=1e-6)
    np.testing.assert_allclose(got_p, p, atol=1e-6)
    sched = make("jean_explicit", alpha=alpha)
    observe(sched, s)
    np.testing.assert_allclose(sched.task_distribution(5), p, atol=1e-6)
    assert sched.log_state()["p"] == pytest.approx(p, abs=1e-6)


def test_explicit_linear_oracle():
    _, u, p = explicit_distribution([20, 30], B, 1, 0.05, "linear")
    np.testing.assert_allclose(u, [0.216667, 0.192857], atol=1e-6)
    np.testing.assert_allclose(p, [0.529070, 0.470930], atol=1e-6)
    s = make("jean_explicit", form="linear")
    observe(s, [20, 30])
    np.testing.assert_allclose(s.task_distribution(0), [0.529070, 0.470930], atol=1e-6)


def test_explicit_starts_uniform_and_caps_at_baseline():
    s = make("jean_explicit", baselines=[0.5, 0.5, 0.5])
    assert s.task_distribution(0).tolist() == pytest.approx([1 / 3] * 3)
    observe(s, [0.9, 0.5, 0.1])  # tasks 0 and 1 are both at (or above) the baseline
    S = s.log_state()["S"]
    assert S == pytest.approx([1.0, 1.0, 0.2])
    p = s.task_distribution(0)
    assert p[0] == p[1] < p[2]


def test_explicit_draws_follow_the_distribution():
    s = make("jean_explicit", alpha=16)
    observe(s, [20, 30])
    draws = np.array([s.next_task(t) for t in range(50_000)])
    assert abs((draws == 0).mean() - 0.564444) < 0.01


IMPLICIT = [
    ([22, 33], B, 0.05, [0.916667, 0.942857], [1.05, 0.95]),
    ([10, 12], B, 0.05, [0.416667, 0.342857], [0.999999, 1.000001]),
    ([24, 35], B, 0.05, [1, 1], [1, 1]),
    ([22, 33, 20], [24, 35, 30], 0.05, [0.916667, 0.942857, 0.666667],
     [0.966102, 0.966102, 1.067797]),
    ([22, 33], B, 0.5, [0.916667, 0.942857], [1.25284, 0.74716]),
]  # fmt: skip


@pytest.mark.parametrize("s, b, gamma, S, w", IMPLICIT)
def test_implicit_oracle(s, b, gamma, S, w):
    got_S, got_w = implicit_weights(s, b, 16, 0.1, gamma)
    np.testing.assert_allclose(got_S, S, atol=1e-6)
    np.testing.assert_allclose(got_w, w, atol=1e-6)
    sched = make("jean_implicit", baselines=b, gamma=gamma)
    observe(sched, s)
    np.testing.assert_allclose(sched.lr_scales(3), w, atol=1e-6)
    assert sched.log_state()["w"] == pytest.approx(w, abs=1e-6)


def test_implicit_raw_k3_weights_before_renormalising():
    # raw [0.95, 0.95, 1.05] (§5.2 oracle) sums to 2.95; the renormalised vector sums to 3
    _, w = implicit_weights([22, 33, 20], [24, 35, 30], 16, 0.1, 0.05)
    np.testing.assert_allclose(w * 2.95 / 3, [0.95, 0.95, 1.05], atol=1e-6)


def test_implicit_starts_at_one_and_task_at_mean_keeps_one():
    s = make("jean_implicit", baselines=[0.3, 0.3, 0.3])
    assert s.lr_scales(0).tolist() == [1, 1, 1]  # before any evaluation: S = 0
    observe(s, [0.1, 0.1, 0.1])  # equal S: rounding in the mean must not create a deviation
    assert s.lr_scales(0).tolist() == [1, 1, 1]
    observe(s, [0.1, 0.2, 0.3])  # task 1 is exactly at the mean: sign(0) = 0
    w = s.lr_scales(0)
    assert w[0] > w[1] > w[2]
    assert w.sum() == pytest.approx(3)


def test_implicit_samples_uniformly_and_is_an_lr_scaler():
    s = make("jean_implicit")
    assert s.category == Category.LR_SCALER and s.step_modes == (StepMode.SINGLE,)
    observe(s, [22, 33])
    assert s.task_distribution(0).tolist() == [0.5, 0.5]
    assert s.loss_weights(0).tolist() == [1, 1]


@pytest.mark.parametrize("name", ["jean_explicit", "jean_implicit"])
def test_missing_baselines_say_how_to_make_them(name):
    with pytest.raises(ConfigError, match=r"scheduler\.baselines=.*mtlrun-report"):
        make(name, baselines=None)


@pytest.mark.parametrize("name", ["jean_explicit", "jean_implicit"])
def test_baselines_from_task_info_and_from_a_file(name, tmp_path):
    tasks = [TaskInfo(f"t{k}", 100, 10, "accuracy", baseline_score=b) for k, b in enumerate(B)]
    a = make(name, baselines=None, tasks=tasks)
    path = tmp_path / "baselines.json"
    path.write_text(json.dumps({"t0": 24, "t1": 35}))
    cls = SCHEDULERS[name]
    c = cls(cls.Config(baselines=str(path)), tasks[:], 1000, scheduler_rng(0, name))
    for s in (a, c):
        np.testing.assert_array_equal(s.b, B)


@pytest.mark.parametrize("name", ["jean_explicit", "jean_implicit"])
def test_non_positive_baselines_are_rejected(name):
    with pytest.raises(ConfigError, match="> 0"):
        make(name, baselines=[24, 0])
    tasks = [
        TaskInfo(f"t{k}", 100, 10, "accuracy", baseline_score=b) for k, b in enumerate([1, -1])
    ]
    with pytest.raises(ConfigError, match="> 0"):
        make(name, baselines=None, tasks=tasks)


@pytest.mark.parametrize("name", ["jean_explicit", "jean_implicit"])
def test_non_finite_scores_are_ignored(name):
    s = make(name)
    observe(s, [22, 33])
    before = (s.task_distribution(0), s.lr_scales(0))
    s.observe_eval(2, {0: float("nan"), 1: None}, {})
    np.testing.assert_array_equal(s.task_distribution(0), before[0])
    np.testing.assert_array_equal(s.lr_scales(0), before[1])


@pytest.mark.parametrize(
    "name, hparams, message",
    [("jean_explicit", {"epsilon": 0}, "epsilon"), ("jean_explicit", {"form": "x"}, "form"),
     ("jean_explicit", {"alpha": 0}, "alpha"), ("jean_implicit", {"beta": 0}, "beta"),
     ("jean_implicit", {"gamma": 1.0}, "gamma"), ("jean_implicit", {"baselines": 3}, "baselines")],
)  # fmt: skip
def test_bad_config(name, hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS[name].Config(**hparams)


def test_distribution_sums_to_one_and_same_seed_same_draws():
    rng = np.random.default_rng(0)
    a, b, c = (make("jean_explicit", baselines=[0.8] * 4, seed=sd) for sd in (1, 1, 2))
    seqs = {id(x): [] for x in (a, b, c)}
    for t in range(300):
        if t % 50 == 0:
            scores = rng.uniform(0, 1, 4)
            for x in (a, b, c):
                observe(x, scores)
                assert x.task_distribution(t).sum() == pytest.approx(1)
        for x in (a, b, c):
            seqs[id(x)].append(x.next_task(t))
    assert seqs[id(a)] == seqs[id(b)] != seqs[id(c)]


@pytest.mark.parametrize("name", ["jean_explicit", "jean_implicit"])
def test_state_round_trip_continues_identically(name):
    a = make(name, seed=3)
    observe(a, [22, 30])
    [a.next_task(t) for t in range(17)]
    state = a.state_dict()
    tail = [a.next_task(t) for t in range(100)]
    b = make(name, seed=99)
    b.load_state_dict(state)
    assert tail == [b.next_task(t) for t in range(100)]
    np.testing.assert_array_equal(a.task_distribution(0), b.task_distribution(0))
    np.testing.assert_array_equal(a.lr_scales(0), b.lr_scales(0))
