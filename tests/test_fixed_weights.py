"""Fixed loss weightings against SCHEDULERS.md §2.7–2.9 (Appendix B item 3 and the §2.7/§2.8
oracles)."""

import json

import numpy as np
import pytest
import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, StepMode, TaskInfo
from mtlrun.schedulers.base import scheduler_rng


def infos(k=3, **fields):
    per_task = {key: list(v) for key, v in fields.items()}
    return [
        TaskInfo(f"t{i}", 100, 10, "accuracy", **{key: v[i] for key, v in per_task.items()})
        for i in range(k)
    ]


def make(name, tasks=None, seed=0, **hparams):
    cls = SCHEDULERS[name]
    tasks = tasks if tasks is not None else infos()
    return cls(cls.Config(**hparams), tasks, 1000, scheduler_rng(seed, name))


def total(s, losses, t=0):
    """The step loss the trainer would backpropagate, from real tensors."""
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in enumerate(losses)}
    return float(s.combine(t, tensors).detach())


# --- §2.7 uniform_weights ------------------------------------------------------------------------
def test_uniform_weights_oracle():
    s = make("uniform_weights", infos(2))
    assert s.loss_weights(0).tolist() == [1.0, 1.0]
    assert total(s, [2.0, 1.0]) == pytest.approx(3.0, abs=1e-6)


def test_uniform_weights_defaults_to_all_mode_and_goes_round_robin_in_single():
    cls = SCHEDULERS["uniform_weights"]
    assert cls.step_modes[0] == StepMode.ALL and StepMode.SINGLE in cls.step_modes
    s = make("uniform_weights")
    assert [s.next_task(t) for t in range(7)] == [0, 1, 2, 0, 1, 2, 0]


# --- §2.8 hand_crafted ---------------------------------------------------------------------------
def test_hand_crafted_oracle():
    s = make("hand_crafted", infos(2), w=[0.5, 2.0])
    assert s.loss_weights(0).tolist() == [0.5, 2.0]
    assert total(s, [2.0, 1.0]) == pytest.approx(3.0, abs=1e-6)


def test_hand_crafted_weights_scale_gradients():
    s = make("hand_crafted", infos(2), w=[0.5, 2.0])
    losses = {k: torch.tensor(v, requires_grad=True) for k, v in enumerate([2.0, 1.0])}
    s.combine(0, losses).backward()
    assert [float(losses[k].grad) for k in range(2)] == [0.5, 2.0]


def test_hand_crafted_all_zero_is_error():
    with pytest.raises(ConfigError, match="all zeros"):
        SCHEDULERS["hand_crafted"].Config(w=[0, 0, 0])


@pytest.mark.parametrize("w", [[1, -1, 1], [1, float("nan"), 1], [1, float("inf"), 1]])
def test_hand_crafted_rejects_negative_or_non_finite(w):
    with pytest.raises(ConfigError, match="finite and >= 0"):
        SCHEDULERS["hand_crafted"].Config(w=w)


@pytest.mark.parametrize("w", [[], [1, 2]])
def test_hand_crafted_wrong_length_names_the_tasks(w):
    with pytest.raises(ConfigError, match=r"3 tasks \(t0, t1, t2\).*scheduler.w=\[1,1,1\]"):
        make("hand_crafted", w=w)


# --- §2.9 prioritize_easy / prioritize_hard -----------------------------------------------------
def test_prioritize_hard_oracle_k3():
    s = make("prioritize_hard", baselines={"t0": 0.9, "t1": 0.8, "t2": 0.3})
    np.testing.assert_allclose(s.loss_weights(0), [0.01, 0.01, 0.98], atol=1e-6)
    np.testing.assert_allclose(s.task_distribution(0), [1 / 3] * 3)  # weighter: uniform draws


def test_prioritize_easy_oracle_k2_weighter_and_sampler():
    tasks = infos(2, baseline_score=[0.6, 0.9])
    s = make("prioritize_easy", tasks)
    np.testing.assert_allclose(s.loss_weights(0), [0.01, 0.98], atol=1e-6)  # sums to 0.99
    sampler = make("prioritize_easy", tasks, as_sampler=True)
    np.testing.assert_allclose(sampler.task_distribution(0), [0.010101, 0.989899], atol=1e-6)
    assert sampler.loss_weights(0).tolist() == [1.0, 1.0]


def test_prioritize_difficulty_rank_wins_over_baselines():
    tasks = infos(3, difficulty_rank=[2, 0, 1], baseline_score=[0.1, 0.5, 0.9])
    assert make("prioritize_hard", tasks).target == 0  # rank 2 = hardest
    assert make("prioritize_easy", tasks).target == 1  # rank 0 = easiest


def test_prioritize_ties_go_to_lowest_index():
    assert make("prioritize_hard", infos(3, baseline_score=[0.9, 0.5, 0.5])).target == 1
    assert make("prioritize_easy", infos(3, baseline_score=[0.5, 0.9, 0.9])).target == 1
    assert make("prioritize_hard", infos(3, difficulty_rank=[0, 2, 2])).target == 1
    assert make("prioritize_easy", infos(3, difficulty_rank=[1, 0, 0])).target == 1


def test_prioritize_config_baselines_beat_task_scores(tmp_path):
    tasks = infos(3, baseline_score=[0.1, 0.5, 0.9])
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"t0": 0.9, "t1": 0.2, "t2": 0.8}))
    assert make("prioritize_hard", tasks, baselines=str(path)).target == 1
    assert make("prioritize_hard", tasks).target == 0


def test_prioritize_without_difficulty_says_how_to_give_baselines():
    with pytest.raises(ConfigError, match=r"scheduler.baselines=\{t0: 0.8"):
        make("prioritize_hard")


def test_prioritize_baselines_missing_a_task():
    with pytest.raises(ConfigError, match=r"no score for t2$"):
        make("prioritize_hard", baselines={"t0": 0.9, "t1": 0.8})
    # a misspelt task is named as such (not only as the task it left without a score)
    with pytest.raises(ConfigError, match=r"no score for t2 \(it has scores for T2, not tasks"):
        make("prioritize_hard", baselines={"t0": 0.9, "t1": 0.8, "T2": 0.7})


def test_prioritize_baselines_for_more_tasks_are_used_for_these(caplog):
    """A baselines file from a wider sweep covers more tasks than the run: the extra are
    ignored, and the log says which."""
    with caplog.at_level("INFO", logger="mtlrun"):
        s = make("prioritize_hard", baselines={"t0": 0.9, "t1": 0.2, "t2": 0.8, "pos": 0.5})
    assert s.target == 1
    assert "scheduler.baselines: the scores of pos ignored (not tasks of this run)" in caplog.text


def test_prioritize_sampler_draws_follow_the_distribution():
    s = make("prioritize_hard", infos(2, baseline_score=[0.9, 0.4]), as_sampler=True)
    draws = np.array([s.next_task(t) for t in range(20_000)])
    assert abs(draws.mean() - 0.98 / 0.99) < 0.005


@pytest.mark.parametrize(
    "name, hparams",
    [("uniform_weights", {}), ("hand_crafted", {"w": [0.25, 4.0, 1.0]}),
     ("prioritize_easy", {"baselines": {"t0": 0.5, "t1": 0.7, "t2": 0.6}}),
     ("prioritize_hard", {"baselines": {"t0": 0.5, "t1": 0.7, "t2": 0.6}, "as_sampler": True})],
)  # fmt: skip
def test_properties(name, hparams):
    s = make(name, **hparams)
    for t in (0, 10, 999):
        p = s.task_distribution(t)
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0)
        assert np.all(np.isfinite(s.loss_weights(t))) and np.all(s.loss_weights(t) >= 0)
    first = [s.next_task(t) for t in range(50)]
    state = s.state_dict()
    cont = [s.next_task(t) for t in range(50, 100)]
    fresh = make(name, seed=7, **hparams)
    fresh.load_state_dict(state)
    assert [fresh.next_task(t) for t in range(50, 100)] == cont
    again = make(name, **hparams)
    assert [again.next_task(t) for t in range(50)] == first
