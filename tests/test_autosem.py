"""AutoSeM against SCHEDULERS.md §6.1 (Appendix B item 15)."""

import numpy as np
import pytest

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, TaskInfo
from mtlrun.schedulers.autosem import bandit_update, cyclic_schedule, reward
from mtlrun.schedulers.base import scheduler_rng


def infos(K):
    return [TaskInfo(f"t{k}", 100, 10, "accuracy") for k in range(K)]


def make(name="autosem", K=3, seed=0, tasks=None, **hparams):
    cls = SCHEDULERS[name]
    return cls(cls.Config(**hparams), tasks or infos(K), 1000, scheduler_rng(seed, name))


def observe(s, primary_score):
    s.observe_eval(1, {k: primary_score if k == s.primary else 0.5 for k in range(s.K)}, {})


ORACLE = [
    ((0, 1), [2, 1, 1], [1, 1, 1], [0.666667, 0.5, 0.5]),
    ((1, 0), [1.7, 1, 1], [1, 2, 1], [0.629630, 0.333333, 0.5]),
    ((0, 1), [2.49, 1, 1], [1, 1.7, 1], [0.713467, 0.370370, 0.5]),
]


def test_beta_updates_oracle_pure_function():
    a, b = np.ones(3), np.ones(3)
    for (arm, r), alpha, beta, u in ORACLE:
        a, b = bandit_update(a, b, arm, r, 0.3)
        np.testing.assert_allclose(a, alpha, atol=1e-6)
        np.testing.assert_allclose(b, beta, atol=1e-6)
        np.testing.assert_allclose(a / (a + b), u, atol=1e-6)


def test_beta_updates_oracle_through_the_scheduler():
    s = make()
    score = 0.5
    for (arm, r), alpha, beta, u in ORACLE:
        s.arm = arm  # play the oracle's arm; the reward comes from the primary's dev score
        score = score + 0.1 if r else score - 0.1
        observe(s, score)
        assert s.last_reward == r
        np.testing.assert_allclose(s.log_state()["alpha"], alpha, atol=1e-6)
        np.testing.assert_allclose(s.log_state()["beta"], beta, atol=1e-6)
        np.testing.assert_allclose(s.log_state()["utility"], u, atol=1e-6)


def test_stationary_update_without_decay():
    a, b = bandit_update(np.array([3.0, 1.0]), np.array([2.0, 1.0]), 1, 1, 0.0)
    assert a.tolist() == [3, 2] and b.tolist() == [2, 1]


def test_reward_shaping_oracle():
    previous, rewards = 0.0, []
    for score in (0.61, 0.60, 0.60, 0.65):
        rewards.append(reward(score, previous))
        previous = score
    assert rewards == [1, 0, 1, 1]
    s = make()
    got = []
    for score in (0.61, 0.60, 0.60, 0.65):
        observe(s, score)
        got.append(s.last_reward)
    assert got == [1, 0, 1, 1]


def test_stage2_cycle_oracle():
    assert cyclic_schedule([2, 1, 5]).tolist() == [0, 0, 1, 2, 2, 2, 2, 2]
    s = make("autosem_mixing", ratio=[2, 1, 5])
    assert [s.next_task(t) for t in range(16)] == [0, 0, 1, 2, 2, 2, 2, 2] * 2
    assert s.next_task(1001) == 0
    np.testing.assert_allclose(s.task_distribution(0), [2 / 8, 1 / 8, 5 / 8])


def test_stage2_zero_drops_a_task_and_empty_means_ones():
    assert 1 not in [make("autosem_mixing", ratio=[1, 0, 2]).next_task(t) for t in range(30)]
    assert [make("autosem_mixing").next_task(t) for t in range(4)] == [0, 1, 2, 0]


def test_stage2_bad_ratio():
    with pytest.raises(ConfigError, match="one integer per task"):
        make("autosem_mixing", ratio=[1, 2])
    with pytest.raises(ConfigError, match=">= 0"):
        SCHEDULERS["autosem_mixing"].Config(ratio=[1, -1])
    with pytest.raises(ConfigError, match="not all 0"):
        SCHEDULERS["autosem_mixing"].Config(ratio=[0, 0])


def test_arm_starts_at_primary_and_holds_between_evaluations():
    s = make(K=4, primary="t2")
    assert s.primary == 2
    assert {s.next_task(t) for t in range(50)} == {2}
    assert s.task_distribution(0).tolist() == [0, 0, 1, 0]
    for _ in range(10):
        observe(s, 0.5)
        arm = s.arm
        assert {s.next_task(t) for t in range(20)} == {arm}
        assert s.task_distribution(0).sum() == 1


def test_primary_from_task_info_and_unknown_primary():
    tasks = [TaskInfo(f"t{k}", 100, 10, "accuracy", is_primary=k == 1) for k in range(3)]
    assert make(tasks=tasks).primary == 1
    assert make().primary == 0
    with pytest.raises(ConfigError, match="scheduler.primary=nope"):
        make(primary="nope")


def test_ignores_missing_primary_score():
    s = make()
    observe(s, 0.7)
    state = s.log_state()
    s.observe_eval(2, {0: float("nan"), 1: 0.3, 2: 0.3}, {})
    assert s.log_state() == state


class TiedRng:
    """Beta draws with a tie between arms 0 and 2; records the tie-break candidates."""

    def __init__(self):
        self.choices = []

    def beta(self, a, b):
        return np.array([0.7, 0.1, 0.7])

    def choice(self, options):
        self.choices.append(list(options))
        return options[-1]


def test_ties_are_broken_at_random():
    s = make()
    s.rng = TiedRng()
    observe(s, 0.5)
    assert s.rng.choices == [[0, 2]] and s.arm == 2


def test_thompson_sampling_prefers_the_useful_arm():
    s = make(K=2, seed=4)
    draws = []
    for _ in range(300):
        # the primary improves only when arm 1 was played
        observe(s, (s.previous + 0.001) if s.arm == 1 else (s.previous - 0.001))
        draws.append(s.arm)
    assert np.mean(draws[100:]) > 0.7
    assert s.utilities()[1] > s.utilities()[0]


def test_kept_tasks():
    s = make(K=4)
    s.alpha = np.array([1.0, 3.0, 1.0, 2.0])
    s.beta = np.array([1.0, 1.0, 2.0, 1.5])
    assert s.log_state()["kept"] == ["t0", "t1", "t3"]  # primary + utility > 0.5
    s.cfg.top_m = 1
    assert s.kept_tasks() == [0, 1]


def test_same_seed_same_arms_and_state_round_trip():
    def run(s, n, start=0.0):
        arms, score = [], start
        for i in range(n):
            score += 0.01 * ((i * 7) % 3 - 1)
            observe(s, score)
            arms.append(s.arm)
        return arms

    a, b, c = make(seed=1), make(seed=1), make(seed=2)
    assert run(a, 60) == run(b, 60) != run(c, 60)
    d = make(seed=5)
    run(d, 20)
    state = d.state_dict()
    tail = run(d, 40, start=d.previous)
    e = make(seed=77)
    e.load_state_dict(state)
    assert run(e, 40, start=e.previous) == tail
    assert e.log_state() == d.log_state()


@pytest.mark.parametrize(
    "hparams, message",
    [({"decay": 1.5}, "decay"), ({"prior_alpha": 0}, "prior"), ({"top_m": -1}, "top_m")],
)
def test_bad_config(hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS["autosem"].Config(**hparams)
