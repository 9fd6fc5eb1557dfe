"""reinforce_policy and fixed_schedule against SCHEDULERS.md §6.2 (Appendix B item 16)."""

import io
import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY, mtlrun

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, Signals, TaskInfo
from mtlrun.schedulers.base import scheduler_rng
from mtlrun.schedulers.reinforce import (  # importing it registers both schedulers
    SCHEDULE_FILE,
    SCHEDULE_FORMAT,
    exploration_marginal,
    frequency_sum,
    policy_ascent,
    softmax,
    surrogate_gradient,
)


def infos(K=3, primary=None):
    return [TaskInfo(f"t{k}", 100, 10, "accuracy", is_primary=k == primary) for k in range(K)]


def make(name="reinforce_policy", K=3, T=100, seed=0, tasks=None, **hparams):
    cls = SCHEDULERS[name]
    return cls(cls.Config(**hparams), tasks or infos(K), T, scheduler_rng(seed, name))


def offer(s, t, reward):
    """The trainer's side of wants_signals / observe_signals."""
    request = s.wants_signals(t)
    if request is None:
        return False
    assert request.scores == {s.primary: None} and not request.outputs
    s.observe_signals(t, Signals(outputs={}, scores={s.primary: reward(t)}, losses={}))
    return True


def drive(s, start, stop, B=8, reward=lambda t: 0.6, single=False):
    """Steps [start, stop) as the trainer runs them (signals before each step, and once more
    after the last step); returns each step's draw (counts in MIXED mode, a task in SINGLE)."""
    draws = []
    for t in range(start, stop):
        offer(s, t, reward)
        draws.append(s.next_task(t) if single else s.mixed_counts(t, B).tolist())
    if stop == s.total_steps:
        offer(s, stop, reward)
    return draws


# --- oracles (§6.2 (f)) -----------------------------------------------------------------------
def test_small_oracle_gradient_one_and_hundred_steps():
    freq, n = frequency_sum([[0, 0], [1, 2]], 3)
    np.testing.assert_allclose(freq, [1.0, 0.5, 0.5])
    assert n == 2
    grad = surrogate_gradient(np.zeros(3), freq, n, 0.7)
    np.testing.assert_allclose(grad, [0.233333, -0.116667, -0.116667], atol=1e-6)
    one = policy_ascent(np.zeros(3), freq, n, 0.7, lr=0.001, steps=1)
    np.testing.assert_allclose(one, [0.000233, -0.000117, -0.000117], atol=1e-6)
    hundred = policy_ascent(np.zeros(3), freq, n, 0.7, lr=0.001, steps=100)
    np.testing.assert_allclose(hundred, [0.0228, -0.0114, -0.0114], atol=5e-5)  # spec: 4 dp
    np.testing.assert_allclose(softmax(hundred), [0.340976, 0.329512, 0.329512], atol=1e-6)


@pytest.mark.parametrize(
    "advantage, theta, pi",
    [(1.0, [0.462098, -0.231049, -0.231049], [0.5, 0.25, 0.25]),
     (-0.05, [-1.622918, 0.811459, 0.811459], [0.041986, 0.479007, 0.479007])],
)  # fmt: skip
def test_fit_and_negative_advantage_oracles(advantage, theta, pi):
    f_bar = np.array([0.5, 0.25, 0.25])
    got = policy_ascent(np.zeros(3), 1000 * f_bar, 1000, advantage, lr=0.001, steps=100)
    np.testing.assert_allclose(got, theta, atol=1e-6)
    np.testing.assert_allclose(softmax(got), pi, atol=1e-6)


@pytest.mark.parametrize(
    "pi, expected",
    [([1 / 3, 1 / 3, 1 / 3], [0.4, 0.3, 0.3]), ([0.2, 0.5, 0.3], [0.293333, 0.433333, 0.273333])],
)
def test_exploration_marginal_oracles(pi, expected):
    np.testing.assert_allclose(exploration_marginal(pi, 0.1, 0.2, 0), expected, atol=1e-6)
    s = make(T=10)  # the scheduler's task_distribution is this marginal during the search
    s.theta[0] = np.log(pi)
    np.testing.assert_allclose(s.task_distribution(0), expected, atol=1e-6)


def test_clipping_bounds_the_logits():
    freq, n = 1000 * np.array([0.5, 0.25, 0.25]), 1000
    free = policy_ascent(np.zeros(3), freq, n, -1.0, lr=0.001, steps=100)
    assert np.abs(free).max() > 3
    clipped = policy_ascent(np.zeros(3), freq, n, -1.0, lr=0.001, steps=100, max_logit_abs=1.0)
    assert np.abs(clipped).max() == pytest.approx(1.0)
    assert clipped[0] == -1.0


# --- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hparams, message",
    [({"epsilon": 0.3, "gamma": 0.2}, "epsilon <= gamma"),
     ({"epsilon": -0.1}, "0 <= epsilon"), ({"gamma": 1.5}, "<= 1"),
     ({"meta_step": 0}, "meta_step"), ({"policy_lr": -1.0}, "policy_lr"),
     ({"policy_steps": -1}, "policy_steps"), ({"baseline": "mean"}, "none, ema, previous"),
     ({"baseline_decay": 2.0}, "baseline_decay"), ({"max_logit_abs": 0.0}, "max_logit_abs"),
     ({"search_runs": 2}, "init_from")],
)  # fmt: skip
def test_bad_config(hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS["reinforce_policy"].Config(**hparams)


def test_edge_configs_are_allowed():
    for eps, gamma in ((0.0, 0.0), (0.2, 0.2), (1.0, 1.0), (0.0, 1.0)):
        SCHEDULERS["reinforce_policy"].Config(epsilon=eps, gamma=gamma)
    assert SCHEDULERS["reinforce_policy"].Config(max_logit_abs=None).max_logit_abs is None


def test_primary_task_choice():
    assert make().primary == 0
    assert make(tasks=infos(3, primary=2)).primary == 2
    assert make(primary="t1").primary == 1
    with pytest.raises(ConfigError, match="scheduler.primary=nope"):
        make(primary="nope")


def test_meta_steps_and_defaults():
    s = make(T=2500)
    assert (s.N, s.M, s.theta.shape) == (1000, 3, (3, 3))  # M = ⌈T / N⌉, time-variant default
    assert make(T=2500, time_variant=False).theta.shape == (1, 3)
    assert not s.theta.any()  # uniform init


# --- drawing -----------------------------------------------------------------------------------
def test_mixed_counts_match_the_exploration_marginal():
    s = make(T=3000, meta_step=10**6)  # no meta-step ends: π stays fixed
    s.theta[0] = np.log([0.2, 0.5, 0.3])
    counts = np.array([s.mixed_counts(t, 64) for t in range(3000)])
    assert counts.dtype.kind == "i" and (counts.sum(axis=1) == 64).all()
    freq = counts.sum(axis=0) / counts.sum()
    np.testing.assert_allclose(freq, [0.293333, 0.433333, 0.273333], atol=0.006)  # ~4.5 σ
    assert len({tuple(c) for c in counts}) > 50  # examples draw independently


def test_single_mode_draws_from_the_same_mixture(caplog):
    s = make(T=20_000, meta_step=10**6, primary="t2")
    tasks = [s.next_task(t) for t in range(20_000)]
    freq = np.bincount(tasks, minlength=3) / len(tasks)
    np.testing.assert_allclose(freq, exploration_marginal(np.ones(3) / 3, 0.1, 0.2, 2), atol=0.01)
    assert sum("step_mode=mixed" in r.message for r in caplog.records) == 1  # warned once


def test_no_exploration_draws_from_the_policy_only():
    s = make(T=500, meta_step=10**6, epsilon=0.0, gamma=0.0)
    s.theta[0] = np.log([0.0001, 0.0001, 0.9998])
    counts = np.array([s.mixed_counts(t, 16) for t in range(500)]).sum(axis=0)
    assert counts[2] / counts.sum() > 0.99
    s = make(T=50, meta_step=10**6, epsilon=0.0, gamma=1.0, primary="t1")
    assert all(s.mixed_counts(t, 16).tolist() == [0, 16, 0] for t in range(50))


def test_excluding_exploration_actions_changes_f_bar():
    def first_meta_step(include):
        s = make(T=400, meta_step=200, seed=3, include_exploration_actions=include)
        counts = drive(s, 0, 200, B=64)
        offer(s, 200, lambda t: 0.5)
        return s, np.array(counts)

    with_all, counts_all = first_meta_step(True)
    policy_only, counts_policy = first_meta_step(False)
    assert (counts_all == counts_policy).all()  # the flag changes the gradient, not the draws
    f_all = np.array(with_all.history[0]["f_bar"])
    f_policy = np.array(policy_only.history[0]["f_bar"])
    np.testing.assert_allclose(f_all, counts_all.sum(axis=0) / counts_all.sum(), atol=1e-12)
    np.testing.assert_allclose(f_all, [0.4, 0.3, 0.3], atol=0.02)  # the marginal
    np.testing.assert_allclose(f_policy, [1 / 3, 1 / 3, 1 / 3], atol=0.02)  # π alone
    assert not np.allclose(with_all.theta[0], policy_only.theta[0])


# --- policy updates ---------------------------------------------------------------------------
def test_update_ascends_the_surrogate_of_the_drawn_batches():
    s = make(T=60, meta_step=20, policy_lr=0.01, max_logit_abs=None)
    counts = np.array(drive(s, 0, 20, B=8))
    assert s.wants_signals(20) is not None and s.wants_signals(19) is None
    offer(s, 20, lambda t: 0.7)
    freq = (counts / 8).sum(axis=0)
    expected = policy_ascent(np.zeros(3), freq, 20, 0.7, lr=0.01, steps=100)
    np.testing.assert_allclose(s.theta[0], expected, atol=1e-12)
    assert s.history[0]["steps"] == 20 and s.history[0]["reward"] == 0.7
    assert s.wants_signals(20) is None  # closed: asked once per meta-step
    assert s.log_state()["reward"] == 0.7


def test_no_signals_requested_before_the_first_step():
    s = make(T=60, meta_step=20)
    assert s.wants_signals(0) is None


def test_time_variant_updates_only_the_current_theta_m():
    s = make(T=60, meta_step=20)
    drive(s, 0, 21)  # meta-step 0 closed before step 20, one step of meta-step 1
    assert s.theta[0].any() and not s.theta[1:].any()
    after_first = s.theta[0].copy()
    np.testing.assert_allclose(s.policy(20), [1 / 3] * 3)  # θ_1 is still uniform
    drive(s, 21, 41)
    np.testing.assert_array_equal(s.theta[0], after_first)
    assert s.theta[1].any() and not s.theta[2].any()
    assert [h["meta_step"] for h in s.history] == [0, 1]


def test_time_invariant_updates_one_theta_every_meta_step():
    s = make(T=60, meta_step=20, time_variant=False)
    drive(s, 0, 21)
    first = s.theta[0].copy()
    assert first.any()
    np.testing.assert_allclose(s.policy(20), softmax(first))  # in force for meta-step 1
    drive(s, 21, 60)
    assert len(s.history) == 3 and not np.allclose(s.theta[0], first)
    # with b = 0 the primary's forced draws raise its share whatever the reward (§6.2 (d))
    assert softmax(s.theta[0])[0] > 1 / 3


def test_final_partial_meta_step():
    s = make(T=50, meta_step=20, max_logit_abs=None)
    assert s.M == 3
    counts = np.array(drive(s, 0, 50, B=4, reward=lambda t: t / 100))
    assert [h["steps"] for h in s.history] == [20, 20, 10]
    assert [h["end"] for h in s.history] == [20, 40, 50]
    assert [h["reward"] for h in s.history] == [0.2, 0.4, 0.5]
    freq = (counts[40:] / 4).sum(axis=0)  # the last 10 steps only, N = 10 in the gradient
    expected = policy_ascent(np.zeros(3), freq, 10, 0.5, lr=0.001, steps=100)
    np.testing.assert_allclose(s.theta[2], expected, atol=1e-12)
    assert s.wants_signals(50) is None


def test_meta_step_longer_than_the_run():
    s = make(T=30, meta_step=1000)
    assert s.M == 1
    drive(s, 0, 30)
    assert [h["steps"] for h in s.history] == [30]


def baseline_run(baseline, rewards):
    s = make(T=60, meta_step=20, baseline=baseline, max_logit_abs=None)
    drive(s, 0, 60, reward=lambda t: rewards[t // 20 - 1])
    return s


def test_no_baseline_uses_the_raw_reward():
    s = baseline_run("none", [0.5, 0.7, 0.6])
    assert [h["baseline"] for h in s.history] == [0, 0, 0]
    assert [h["advantage"] for h in s.history] == [0.5, 0.7, 0.6]


def test_ema_baseline():
    s = baseline_run("ema", [0.5, 0.7, 0.6])
    np.testing.assert_allclose([h["baseline"] for h in s.history], [0.5, 0.5, 0.52])
    np.testing.assert_allclose([h["advantage"] for h in s.history], [0.0, 0.2, 0.08], atol=1e-12)
    assert not s.theta[0].any()  # b = R_0: the first meta-step has no advantage
    assert s.baseline == pytest.approx(0.9 * 0.52 + 0.1 * 0.6)


def test_previous_baseline_and_a_negative_advantage():
    s = baseline_run("previous", [0.5, 0.7, 0.6])
    np.testing.assert_allclose([h["baseline"] for h in s.history], [0.5, 0.5, 0.7])
    np.testing.assert_allclose([h["advantage"] for h in s.history], [0.0, 0.2, -0.1], atol=1e-12)
    # a negative advantage pushes π away from the sampled frequencies
    f_bar = np.array(s.history[2]["f_bar"])
    assert np.dot(softmax(s.theta[2]) - 1 / 3, f_bar - 1 / 3) < 0
    assert np.dot(softmax(s.theta[1]) - 1 / 3, np.array(s.history[1]["f_bar"]) - 1 / 3) > 0


def test_missing_reward_leaves_theta_unchanged():
    s = make(T=40, meta_step=20)
    drive(s, 0, 20)
    s.observe_signals(20, Signals(outputs={}, scores={0: float("nan")}, losses={}))
    assert not s.theta.any() and s.history[0]["reward"] is None
    assert s.wants_signals(20) is None
    drive(s, 20, 40)
    assert s.history[1]["steps"] == 20 and s.theta[1].any()


# --- determinism and resume ------------------------------------------------------------------
def test_same_seed_same_draws_different_seed_different():
    def run(seed):
        s = make(T=80, meta_step=20, seed=seed)
        return drive(s, 0, 80, reward=lambda t: 0.5 + t / 1000), s.theta

    (a, theta_a), (b, theta_b), (c, _) = run(1), run(1), run(2)
    assert a == b and a != c
    np.testing.assert_array_equal(theta_a, theta_b)


def test_state_round_trip_mid_meta_step_continues_identically():
    reward = lambda t: 0.4 + (t % 7) / 20  # noqa: E731
    s = make(T=100, meta_step=20, baseline="ema", seed=5)
    drive(s, 0, 30, reward=reward)  # stop 10 steps into meta-step 1
    buffer = io.BytesIO()
    torch.save(s.state_dict(), buffer)  # as in last.pt
    tail = drive(s, 30, 100, reward=reward)

    r = make(T=100, meta_step=20, baseline="ema", seed=99)
    buffer.seek(0)
    r.load_state_dict(torch.load(buffer, weights_only=False))
    assert drive(r, 30, 100, reward=reward) == tail
    np.testing.assert_array_equal(r.theta, s.theta)
    assert r.history == s.history and r.log_state() == s.log_state()


def test_log_state_is_json():
    s = make(T=60, meta_step=20)
    drive(s, 0, 60)
    state = json.loads(json.dumps(s.log_state()))
    assert state["meta_step"] == 2 and state["reward"] == 0.6 and state["baseline"] == 0
    np.testing.assert_allclose(state["pi"], softmax(s.theta[2]))


# --- the learned schedule and its replay -------------------------------------------------------
def search(tmp_path, T=50, **hparams):
    s = make(T=T, meta_step=20, **hparams)
    drive(s, 0, T, reward=lambda t: 0.3 + t / 200)
    s.save_artifacts(tmp_path)
    return s, tmp_path / SCHEDULE_FILE


def test_save_artifacts_writes_the_schedule(tmp_path):
    s, path = search(tmp_path)
    doc = json.loads(path.read_text())
    assert doc["format"] == SCHEDULE_FORMAT and doc["tasks"] == ["t0", "t1", "t2"]
    assert (doc["meta_step"], doc["time_variant"], doc["num_meta_steps"]) == (20, True, 3)
    assert doc["primary"] == "t0" and doc["total_steps"] == 50
    np.testing.assert_array_equal(doc["logits"], s.theta)
    for row, logits in zip(doc["probs"], doc["logits"], strict=True):
        np.testing.assert_allclose(row, softmax(logits))
        assert math.isclose(sum(row), 1.0)
    settings = doc["settings"]
    assert settings["epsilon"] == 0.1 and settings["baseline"] == "none"
    assert settings["policy_steps"] == 100 and settings["include_exploration_actions"] is True
    assert len(doc["history"]) == 3
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_fixed_schedule_replays_each_meta_step_and_reuses_the_last_row(tmp_path, caplog):
    s, path = search(tmp_path)
    f = make("fixed_schedule", T=100, path=str(path))  # longer than the 3 × 20 schedule
    assert "reuse its last row" in caplog.text
    probs = [softmax(row) for row in s.theta]
    for t, row in [(0, 0), (19, 0), (20, 1), (39, 1), (40, 2), (59, 2), (60, 2), (99, 2)]:
        np.testing.assert_allclose(f.task_distribution(t), probs[row], atol=1e-12)
    # exploration is off in the final run: not the search run's marginal
    assert not np.allclose(f.task_distribution(0), s.task_distribution(0))


def test_fixed_schedule_time_invariant_has_one_row(tmp_path):
    s, path = search(tmp_path, time_variant=False)
    f = make("fixed_schedule", T=1000, path=str(path))
    for t in (0, 25, 999):
        np.testing.assert_allclose(f.task_distribution(t), softmax(s.theta[0]), atol=1e-12)


def write_schedule(tmp_path, tasks, probs, **extra):
    path = tmp_path / "sched.json"
    doc = {"format": SCHEDULE_FORMAT, "tasks": tasks, "meta_step": 10, "time_variant": True,
           "probs": probs, **extra}  # fmt: skip
    path.write_text(json.dumps(doc))
    return str(path)


def test_fixed_schedule_draws_and_round_trips(tmp_path):
    path = write_schedule(tmp_path, ["t0", "t1", "t2"], [[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    f = make("fixed_schedule", T=40, path=path)
    counts = np.array([f.mixed_counts(5, 50) for _ in range(2000)])
    assert (counts.sum(axis=1) == 50).all()
    np.testing.assert_allclose(counts.sum(axis=0) / counts.sum(), [0.6, 0.3, 0.1], atol=0.01)
    tasks = np.array([f.next_task(15) for _ in range(20_000)])
    np.testing.assert_allclose(np.bincount(tasks, minlength=3) / 20_000, [0.1, 0.1, 0.8], atol=0.01)

    state = f.state_dict()
    tail = [f.next_task(t) for t in range(40)]
    g = make("fixed_schedule", T=40, seed=12, path=path)
    assert [g.next_task(t) for t in range(40)] != tail
    g.load_state_dict(state)
    assert [g.next_task(t) for t in range(40)] == tail


def test_fixed_schedule_reorders_columns_by_task_name(tmp_path):
    path = write_schedule(tmp_path, ["t2", "t0", "t1"], [[0.5, 0.3, 0.2]])
    f = make("fixed_schedule", path=path)
    np.testing.assert_allclose(f.task_distribution(0), [0.3, 0.2, 0.5])


def test_fixed_schedule_renormalises_rows(tmp_path, caplog):
    path = write_schedule(tmp_path, ["t0", "t1", "t2"], [[2.0, 1.0, 1.0]])
    np.testing.assert_allclose(make("fixed_schedule", path=path).task_distribution(0),
                               [0.5, 0.25, 0.25])  # fmt: skip
    assert "renormalised" in caplog.text


def test_fixed_schedule_needs_a_path():
    with pytest.raises(ConfigError, match="scheduler=reinforce_policy.*learned_schedule.json"):
        SCHEDULERS["fixed_schedule"].Config()


def test_fixed_schedule_missing_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as e:
        make("fixed_schedule", path=str(missing))
    assert str(missing) in str(e.value) and "scheduler=reinforce_policy" in str(e.value)
    assert SCHEDULE_FILE in str(e.value)


def test_fixed_schedule_not_json_or_wrong_format(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not a readable JSON"):
        make("fixed_schedule", path=str(bad))
    bad.write_text(json.dumps({"tasks": ["t0"], "probs": [[1.0]]}))
    with pytest.raises(ConfigError, match="bad.json: not a learned schedule"):
        make("fixed_schedule", path=str(bad))


@pytest.mark.parametrize(
    "tasks, message",
    [(["t0", "t1"], "missing from the schedule: t2"),
     (["t0", "t1", "t2", "t3"], "not trained in this run: t3"),
     (["t0", "t1", "x"], "missing from the schedule: t2; not trained in this run: x")],
)  # fmt: skip
def test_fixed_schedule_wrong_tasks(tmp_path, tasks, message):
    path = write_schedule(tmp_path, tasks, [[1 / len(tasks)] * len(tasks)])
    with pytest.raises(ConfigError, match=message):
        make("fixed_schedule", path=path)


@pytest.mark.parametrize(
    "probs, message",
    [([[0.5, float("nan"), 0.5]], "non-finite"), ([[0.5, 0.5]], "one number per task"),
     ([[1.2, -0.2, 0.0]], ">= 0"), ([[0.0, 0.0, 0.0]], "positive sum"), ([], "non-empty"),
     ([[0.5, "a", 0.5]], "one number per task")],
)  # fmt: skip
def test_fixed_schedule_bad_probabilities(tmp_path, probs, message):
    path = write_schedule(tmp_path, ["t0", "t1", "t2"], probs)
    with pytest.raises(ConfigError, match=message):
        make("fixed_schedule", path=path)


def test_init_from_starts_a_second_search_run_from_the_learned_logits(tmp_path):
    s, path = search(tmp_path)
    again = make(T=50, meta_step=20, init_from=str(path))
    np.testing.assert_array_equal(again.theta, s.theta)
    with pytest.raises(ConfigError, match="meta_step=20"):
        make(T=50, meta_step=25, init_from=str(path))
    with pytest.raises(ConfigError, match="3 meta-steps"):
        make(T=100, meta_step=20, init_from=str(path))


# --- end to end through the mtlrun command -----------------------------------------------------
def dev_records(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == "dev"]


@pytest.mark.slow
def test_search_then_replay_end_to_end(tmp_path, cache_dir):
    common = [*TINY, cache_dir]  # TINY runs one thread: robust to busy CPUs
    run = tmp_path / "search"
    mtlrun([*common, "scheduler=reinforce_policy", "scheduler.meta_step=20",
            f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    doc = json.loads((run / SCHEDULE_FILE).read_text())
    assert doc["format"] == SCHEDULE_FORMAT and doc["num_meta_steps"] == 3
    assert len(doc["probs"]) == 3 and len(doc["tasks"]) == 2
    assert [h["steps"] for h in doc["history"]] == [20, 20, 20]
    assert all(0 <= h["reward"] <= 1 for h in doc["history"])
    assert all(math.isclose(sum(row), 1.0) for row in doc["probs"])
    rows = (run / "schedule.csv").read_text().splitlines()[1:]
    assert len(rows) == 60  # one per step
    for row in rows:  # MIXED batches
        assert sum(int(p.split(":")[1]) for p in row.split(",", 1)[1].split("|")) == 16
    records = dev_records(run)
    assert len(records) == 6 and all("pi" in r["scheduler"] for r in records)  # 3 evals x 2 tasks

    replay = tmp_path / "replay"
    mtlrun([*common, "scheduler=fixed_schedule", f"scheduler.path={run / SCHEDULE_FILE}",
            f"hydra.run.dir={replay}"], cwd=tmp_path)  # fmt: skip
    assert (replay / "results.json").is_file()
    records = dev_records(replay)
    assert len(records) == 6
    for r in records:  # evaluation at step s logs the distribution of step s
        row = min(r["step"] // 20, 2)
        assert r["p"] == pytest.approx(doc["probs"][row][doc["tasks"].index(r["task"])])

    proc = mtlrun([*common, "scheduler=fixed_schedule",
                   f"scheduler.path={tmp_path / 'nope.json'}", f"hydra.run.dir={tmp_path / 'x'}"],
                  cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2 and "scheduler=reinforce_policy" in proc.stderr
    assert "nope.json" in proc.stderr and "Traceback" not in proc.stderr
