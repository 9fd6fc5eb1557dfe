"""Static samplers against the oracles of SCHEDULERS.md §2.1–2.6 (Appendix B items 1, 2, 19)."""

import numpy as np
import pytest

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, TaskInfo
from mtlrun.schedulers.base import scheduler_rng, to_probabilities


def infos(sizes, batch_size=10):
    return [TaskInfo(f"t{k}", n, -(-n // batch_size), "accuracy") for k, n in enumerate(sizes)]


def make(name, sizes=(1000, 100, 10), seed=0, **hparams):
    cls = SCHEDULERS[name]
    return cls(cls.Config(**hparams), infos(sizes), 1000, scheduler_rng(seed, name))


def draws(s, n):
    return np.array([s.next_task(t) for t in range(n)])


def test_uniform_oracle():
    s = make("uniform")
    assert s.task_distribution(0).tolist() == [1 / 3, 1 / 3, 1 / 3]
    freq = np.bincount(draws(s, 30_000), minlength=3) / 30_000
    assert np.all(np.abs(freq - 1 / 3) < 0.01)


def test_round_robin_oracle():
    assert draws(make("round_robin"), 7).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_proportional_oracle():
    p = make("proportional").task_distribution(0)
    np.testing.assert_allclose(p, [0.900901, 0.090090, 0.009009], atol=1e-6)


def test_proportional_counts_batches():
    p = make("proportional", sizes=(1000, 15), count_unit="batches").task_distribution(0)
    np.testing.assert_allclose(p, [100 / 102, 2 / 102])


def test_proportional_never_samples_empty_task():
    s = make("proportional", sizes=(10, 0, 10))
    assert 1 not in draws(s, 2000)


def test_proportional_all_empty_is_error():
    with pytest.raises(ConfigError, match="empty"):
        make("proportional", sizes=(0, 0))


@pytest.mark.parametrize(
    "T, expected",
    [(1, [0.900901, 0.090090, 0.009009]), (2, [0.706101, 0.223289, 0.070610]),
     (5, [0.492838, 0.310960, 0.196202])],
)  # fmt: skip
def test_temperature_oracle(T, expected):
    np.testing.assert_allclose(make("temperature", T=T).task_distribution(0), expected, atol=1e-6)


def test_temperature_inf_is_exactly_uniform():
    assert make("temperature", T=float("inf")).task_distribution(0).tolist() == [1 / 3] * 3


@pytest.mark.parametrize("T", [0, -1])
def test_temperature_must_be_positive(T):
    with pytest.raises(ConfigError, match="T must be > 0"):
        SCHEDULERS["temperature"].Config(T=T)


@pytest.mark.parametrize("seed", range(5))
def test_union_epoch_oracle(seed):
    cls = SCHEDULERS["union"]
    tasks = [TaskInfo(f"t{k}", n, n, "accuracy") for k, n in enumerate([3, 1, 2])]
    s = cls(cls.Config(), tasks, 100, scheduler_rng(seed, "union"))
    epochs = draws(s, 60).reshape(10, 6)
    for epoch in epochs:
        assert np.bincount(epoch, minlength=3).tolist() == [3, 1, 2]
    assert len({tuple(e) for e in epochs}) > 1  # every epoch draws a new permutation


def test_constant_oracle():
    s = make("constant", sizes=(5, 5), p=[0.25, 0.75])
    assert s.task_distribution(0).tolist() == [0.25, 0.75]
    freq = draws(s, 100_000).mean()
    assert abs(freq - 0.75) < 0.005


def test_constant_rejects_negative_and_wrong_length():
    with pytest.raises(ConfigError, match=">= 0"):
        make("constant", sizes=(5, 5), p=[-0.1, 1.1])
    with pytest.raises(ConfigError, match="one probability per task"):
        make("constant", sizes=(5, 5), p=[1.0])


def test_constant_zero_task_is_never_drawn():
    assert 0 not in draws(make("constant", sizes=(5, 5), p=[0.0, 1.0]), 1000)


def test_to_probabilities_conventions():
    np.testing.assert_allclose(to_probabilities(np.array([-1.0, 1.0, 3.0])), [0, 0.25, 0.75])
    assert to_probabilities(np.array([np.nan, 1.0])).tolist() == [0.5, 0.5]
    assert to_probabilities(np.array([0.0, 0.0])).tolist() == [0.5, 0.5]


@pytest.mark.parametrize("name", ["uniform", "proportional", "temperature", "union"])
def test_same_seed_same_sequence_other_seed_other_sequence(name):
    a, b, c = make(name, seed=1), make(name, seed=1), make(name, seed=2)
    seq = draws(a, 300)
    assert np.array_equal(seq, draws(b, 300))
    assert not np.array_equal(seq, draws(c, 300))


@pytest.mark.parametrize("name", ["uniform", "round_robin", "temperature", "union"])
def test_state_round_trip_continues_the_sequence(name):
    a = make(name, seed=3)
    draws(a, 37)
    state = a.state_dict()
    tail = draws(a, 100)
    b = make(name, seed=99)
    b.load_state_dict(state)
    assert np.array_equal(tail, draws(b, 100))


def test_union_mixed_walks_every_example_once_per_epoch():
    cls = SCHEDULERS["union"]
    tasks = [TaskInfo(f"t{k}", n, 1, "accuracy") for k, n in enumerate([30, 10, 20])]
    s = cls(cls.Config(mixed=True), tasks, 100, scheduler_rng(0, "union"))
    assert s.default_step_mode(s.cfg).value == "mixed"
    counts = np.array([s.mixed_counts(t, 12) for t in range(10)])  # 120 examples = 2 epochs
    assert counts.sum(axis=1).tolist() == [12] * 10
    assert counts[:5].sum(axis=0).tolist() == [30, 10, 20]  # epoch 1: each example once
    assert counts[5:].sum(axis=0).tolist() == [30, 10, 20]
    assert len({tuple(c) for c in counts}) > 1  # batches really mix differently
