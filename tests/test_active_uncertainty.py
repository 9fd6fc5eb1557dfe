"""active_uncertainty against SCHEDULERS.md §7 (Appendix B item 18): EMA and normalisation
oracles, Multinomial draws, the f-step cadence, warm starts, edge cases, determinism and resume,
and one run on a real tiny model with MC dropout."""

import copy
import io
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import mtlrun.schedulers.active_uncertainty  # noqa: F401  (registers the scheduler)
from mtlrun.config import register_configs, validate
from mtlrun.errors import ConfigError
from mtlrun.paths import config_dir
from mtlrun.schedulers import SCHEDULERS, Signals, TaskInfo, TaskOutputs
from mtlrun.schedulers.active_uncertainty import draw_tasks, smooth, union_order
from mtlrun.schedulers.base import scheduler_rng
from mtlrun.schedulers.uncertainty import bald

register_configs()  # after the import above, so the schema is in the ConfigStore

NAME = "active_uncertainty"
BALD_ROW = 0.368064  # §7(f): BALD of the row whose two passes are [0.9, 0.1] and [0.1, 0.9]
INFORMATIVE = np.array([[0.9, 0.1], [0.1, 0.9]]).T  # [C, M]
FLAT = np.full((2, 2), 0.5)  # [C, M]: no epistemic uncertainty


def infos(K=3, batches=None, n_dev=100):
    batches = batches or [10] * K
    return [TaskInfo(f"t{k}", 100, batches[k], "accuracy", n_dev=n_dev) for k in range(K)]


def make(K=3, T=1000, seed=0, tasks=None, **hparams):
    cls = SCHEDULERS[NAME]
    return cls(cls.Config(**hparams), tasks or infos(K), T, scheduler_rng(seed, NAME))


def outputs(mc_probs):
    n = len(mc_probs)
    return TaskOutputs(np.arange(n), np.zeros(n, int), None, np.asarray(mc_probs, np.float64))


def signals_for(per_task, seconds=0.25):
    return Signals({k: outputs(p) for k, p in enumerate(per_task)}, {}, {}, seconds=seconds)


def tenths(informative_rows):
    """Per task, 10 dev rows of which `n` informative: bald_mean u_k = n/10 · 0.368064."""
    return signals_for([np.stack([INFORMATIVE] * n + [FLAT] * (10 - n)) for n in informative_rows])


def random_signals(seed, K=3, N=40, C=2, M=8):
    rng = np.random.default_rng(seed)
    return signals_for(
        [rng.dirichlet(np.ones(C) * 0.7, size=(N, M)).transpose(0, 2, 1) for _ in range(K)]
    )


def run(s, start, stop, signal_seed=0):
    """Steps start..stop-1 as the trainer does them: signals first, then the draw."""
    tasks = []
    for t in range(start, stop):
        if s.wants_signals(t) is not None:
            s.observe_signals(t, random_signals(signal_seed * 100_003 + t, K=s.K))
        tasks.append(s.next_task(t))
    return tasks


# --- §7(f) oracles ----------------------------------------------------------------------------
def test_ema_and_normalisation_oracle():
    u1, u2 = np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.4, 0.5])
    v1 = smooth(None, u1, 0.5)
    np.testing.assert_allclose(v1 / v1.sum(), [0.2, 0.5, 0.3], atol=1e-6)
    np.testing.assert_allclose(smooth(v1, u2, 0.5), [0.15, 0.45, 0.40], atol=1e-6)
    np.testing.assert_allclose(smooth(v1, u2, 0.5, "new"), [0.15, 0.45, 0.40], atol=1e-6)
    np.testing.assert_allclose(smooth(v1, u2, 0.25, "old"), [0.125, 0.425, 0.45], atol=1e-6)
    np.testing.assert_allclose(smooth(v1, u2, 0.25, "new"), [0.175, 0.475, 0.35], atol=1e-6)


@pytest.mark.parametrize(
    "rho, form, p2",
    [
        (0.5, "old", [0.15, 0.45, 0.40]),
        (0.5, "new", [0.15, 0.45, 0.40]),
        (0.25, "old", [0.125, 0.425, 0.45]),
        (0.25, "new", [0.175, 0.475, 0.35]),
    ],
)
def test_ema_oracle_through_the_scheduler(rho, form, p2):
    """u¹ ∝ [0.2, 0.5, 0.3], u² ∝ [0.1, 0.4, 0.5] from real MC outputs (bald_mean)."""
    s = make(estimator="bald_mean", rho=rho, ema_form=form)
    s.observe_signals(200, tenths([2, 5, 3]))
    np.testing.assert_allclose(s.u, np.array([0.2, 0.5, 0.3]) * BALD_ROW, atol=1e-6)
    np.testing.assert_allclose(s.task_distribution(201), [0.2, 0.5, 0.3], atol=1e-6)
    s.observe_signals(400, tenths([1, 4, 5]))
    np.testing.assert_allclose(s.task_distribution(401), p2, atol=1e-6)
    np.testing.assert_allclose(s.v / BALD_ROW, p2, atol=1e-6)  # Σ u = 1 · BALD, so v ∝ p


def test_multinomial_expected_counts():
    rng = np.random.default_rng(0)
    p = [0.15, 0.45, 0.40]
    counts = np.array([np.bincount(draw_tasks(p, 200, rng), minlength=3) for _ in range(4000)])
    # expected [30, 90, 80]; the standard error of each mean is < 0.12
    np.testing.assert_allclose(counts.mean(axis=0), [30, 90, 80], atol=0.6)
    assert (counts.sum(axis=1) == 200).all()
    assert draw_tasks([0.0, 1.0, 0.0], 50, rng).tolist() == [1] * 50  # p = 0 is never drawn


def test_tasks_follow_the_predrawn_list():
    s = make(estimator="bald_mean")
    s.observe_signals(200, tenths([2, 5, 3]))
    assert len(s.tasks_next) == 200
    assert [s.next_task(t) for t in range(200, 400)] == s.tasks_next.tolist()
    counts = np.bincount(s.tasks_next, minlength=3)
    # one Multinomial(200, [0.2, 0.5, 0.3]) draw: within 4 standard deviations
    assert np.all(np.abs(counts - [40, 100, 60]) < 4 * np.sqrt(200 * 0.25))


# --- cadence ----------------------------------------------------------------------------------
def test_signals_every_f_steps_strictly_inside_the_run():
    s = make(T=1000)
    asked = [t for t in range(1001) if s.wants_signals(t) is not None]
    assert asked == [200, 400, 600, 800]  # not at 0, not at T (the trainer's final call)
    request = s.wants_signals(200)
    assert request.outputs == {0: None, 1: None, 2: None} and request.mc_samples == 8
    assert request.scores == {} and request.mc_dropout == "all"
    assert make(mc_dropout="heads").wants_signals(200).mc_dropout == "heads"
    assert make(T=900, every=300).wants_signals(600) is not None


def test_first_block_is_uniform():
    s = make(T=10_000, every=10_000 - 1, seed=3)
    np.testing.assert_allclose(s.task_distribution(0), [1 / 3] * 3)
    counts = np.bincount([s.next_task(t) for t in range(9999)], minlength=3)
    assert np.all(np.abs(counts - 3333) < 4 * np.sqrt(9999 * 2 / 9))


def test_union_warm_start_is_a_permutation_of_the_pooled_batches():
    s = make(tasks=infos(3, batches=[3, 1, 2]), every=6, warm_start="union", estimator="bald_mean")
    assert np.bincount([s.next_task(t) for t in range(6)], minlength=3).tolist() == [3, 1, 2]
    np.testing.assert_allclose(s.task_distribution(0), [0.5, 1 / 6, 1 / 3])
    twelve = union_order([3, 1, 2], 12, np.random.default_rng(1))
    assert np.bincount(twelve[:6]).tolist() == [3, 1, 2]  # one pass of the pool, then a new one
    assert np.bincount(twelve[6:]).tolist() == [3, 1, 2]
    s.observe_signals(6, tenths([2, 5, 3]))  # estimates take over as in the uniform start
    np.testing.assert_allclose(s.task_distribution(7), [0.2, 0.5, 0.3], atol=1e-6)


# --- edge cases (§7(d), §1.4.5) ---------------------------------------------------------------
@pytest.mark.parametrize(
    "estimator", ["batchbald", "batchbald_ref", "bald_mean", "batchbald_exact"]
)
def test_identical_dropout_passes_give_uniform_p(estimator):
    rng = np.random.default_rng(0)
    per_task = [np.repeat(rng.dirichlet([1, 3], size=(30, 1)).transpose(0, 2, 1), 8, axis=2)
                for _ in range(3)]  # fmt: skip
    s = make(estimator=estimator)
    s.observe_signals(200, signals_for(per_task))
    assert s.u.tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(s.task_distribution(201), [1 / 3] * 3)


def aleatoric_and_epistemic(seed=0, N=200, M=8):
    """Task 0: passes agree near [0.5, 0.5] (aleatoric only, as a task with random labels);
    task 1: passes disagree (epistemic); task 2: half of each."""
    rng = np.random.default_rng(seed)
    p1 = 0.5 + 1e-3 * rng.uniform(-1, 1, size=(N, 1, M))
    chance = np.concatenate([p1, 1 - p1], axis=1)
    unsure = rng.dirichlet([0.7, 0.7], size=(N, M)).transpose(0, 2, 1)
    mixed = np.concatenate([chance[: N // 2], unsure[N // 2 :]])
    return signals_for([chance, unsure, mixed])


def test_default_estimator_is_the_mutual_information():
    """The issue: the reference scores give every task ≈ 3 and p ≈ uniform; the default
    (true BatchBALD) gives the aleatoric-only task u ≈ 0 and ranks the others."""
    assert SCHEDULERS[NAME].Config().estimator == "batchbald"
    s = make()
    s.observe_signals(200, aleatoric_and_epistemic())
    assert s.u[0] < 1e-4 < 0.5 < s.u[2] < s.u[1]
    p = s.task_distribution(201)
    assert p[0] < 1e-4 and p[1] > p[2] > 0.3
    ref = make(estimator="batchbald_ref")
    ref.observe_signals(200, aleatoric_and_epistemic())
    assert ref.u[0] > 3.0  # ≈ ln 2 · mean(0..9): aleatoric entropy, counted as uncertainty
    assert np.ptp(ref.task_distribution(201)) < 0.1


def test_non_finite_estimates_keep_the_previous_state(caplog):
    s = make(estimator="bald_mean")
    s.observe_signals(200, tenths([2, 5, 3]))
    before = copy.deepcopy((s.u, s.v, s.p, s.tasks_next))
    broken = tenths([1, 4, 5])
    broken.outputs[1].mc_probs[0, 0, 0] = np.nan
    s.observe_signals(400, broken)
    assert "no usable uncertainty" in caplog.text and "t1" in caplog.text
    np.testing.assert_array_equal(s.u, before[0])
    np.testing.assert_array_equal(s.v, before[1])
    np.testing.assert_array_equal(s.p, before[2])
    assert s.skipped == 1 and s.estimates == 1
    assert len(s.tasks_next) == 200 and not np.array_equal(s.tasks_next, before[3])  # redrawn
    missing = tenths([1, 4, 5])
    del missing.outputs[2]
    s.observe_signals(600, missing)
    assert s.skipped == 2


def test_dev_subset_is_fixed_and_requested():
    s = make(dev_examples=7, tasks=infos(3, n_dev=50) + [TaskInfo("small", 10, 1, "accuracy",
                                                                  n_dev=5)])  # fmt: skip
    request = s.wants_signals(200)
    for k in range(3):
        rows = request.outputs[k]
        assert len(rows) == 7 and len(set(rows.tolist())) == 7 and rows.max() < 50
        assert np.all(np.diff(rows) > 0)
    assert request.outputs[3] is None  # fewer dev examples than the cap: all of them
    again = s.wants_signals(400)
    for k in range(3):
        np.testing.assert_array_equal(again.outputs[k], request.outputs[k])


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"every": 0}, "scheduler.every must be >= 1"),
        ({"mc_samples": 1}, "scheduler.mc_samples must be >= 2"),
        ({"rho": 1.5}, r"scheduler.rho must be in \[0, 1\]"),
        ({"rho": -0.1}, r"scheduler.rho must be in \[0, 1\]"),
        ({"ema_form": "paper"}, "scheduler.ema_form must be one of old, new"),
        ({"estimator": "bald"}, "scheduler.estimator must be one of"),
        ({"mc_dropout": "encoder"}, "scheduler.mc_dropout must be one of all, heads"),
        ({"warm_start": "round_robin"}, "scheduler.warm_start must be one of uniform, union"),
        ({"dev_batch_size": 0}, "scheduler.dev_batch_size must be >= 1"),
        ({"num_samples": 0}, "scheduler.num_samples must be >= 1"),
        ({"max_iter": 0}, "scheduler.max_iter must be >= 1"),
        ({"dev_examples": 0}, "scheduler.dev_examples must be >= 1 or null"),
    ],
)
def test_bad_config(hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS[NAME].Config(**hparams)


def test_yaml_composes_and_repeats_the_schema_defaults():
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = validate(compose("config", overrides=[f"scheduler={NAME}"]))
    assert asdict(cfg.scheduler) == asdict(SCHEDULERS[NAME].Config())
    assert SCHEDULERS[NAME].step_modes[0].value == "single"


# --- determinism, resume, logging -------------------------------------------------------------
def test_same_seed_same_tasks_different_seed_different():
    a = run(make(seed=1), 0, 1000)
    b = run(make(seed=1), 0, 1000)
    c = run(make(seed=2), 0, 1000)
    assert a == b and a != c


@pytest.mark.parametrize("stop", [350, 200, 400])
def test_state_round_trip_mid_sequence_continues_identically(stop):
    reference = make(seed=4)
    whole = run(reference, 0, 1000)
    first = make(seed=4)
    head = run(first, 0, stop)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # as in last.pt
    buffer.seek(0)
    resumed = make(seed=99)  # a different seed: everything must come from the state
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert head + run(resumed, stop, 1000) == whole
    np.testing.assert_array_equal(resumed.v, reference.v)


def test_log_state_reports_u_v_p_and_the_signal_cost():
    s = make(estimator="bald_mean")
    assert s.log_state()["v"] is None and s.log_state()["estimates"] == 0
    s.observe_signals(200, tenths([2, 5, 3]))
    state = json.loads(json.dumps(s.log_state()))
    np.testing.assert_allclose(state["u"], np.array([0.2, 0.5, 0.3]) * BALD_ROW, atol=1e-6)
    np.testing.assert_allclose(state["p"], [0.2, 0.5, 0.3], atol=1e-6)
    assert state["signal_seconds"] == 0.25 and state["signal_seconds_total"] == 0.25
    assert state["estimate_seconds"] > 0 and state["estimates"] == 1


# --- on a real tiny model ---------------------------------------------------------------------
def test_a_tiny_run_estimates_from_real_mc_dropout(tmp_path):
    from test_trainer import trainer_for

    tr = trainer_for(tmp_path, f"scheduler={NAME}", "scheduler.every=20", "model.dropout=0.3")
    s = tr.scheduler
    for t in range(45):
        tr._train_step(t)
    assert s.estimates == 2 and s.skipped == 0
    assert np.all(s.u > 0) and s.task_distribution(45).sum() == pytest.approx(1.0)
    assert s.log_state()["signal_seconds"] > 0 and tr.state.signal_seconds > 0
    # the same dev outputs give the same u (the measurement is seeded by the step)
    signals = tr.meter.measure(tr.model, s.wants_signals(40), seed=0)
    mc = signals.outputs[0].mc_probs
    assert mc.shape[2] == 8 and bald(mc).max() > 0


def test_a_tiny_run_with_head_dropout_only(tmp_path):
    from test_trainer import trainer_for

    tr = trainer_for(tmp_path, f"scheduler={NAME}", "scheduler.every=20",
                     "scheduler.mc_dropout=heads", "model.dropout=0.3")  # fmt: skip
    for t in range(25):
        tr._train_step(t)
    assert tr.scheduler.estimates == 1 and tr.scheduler.skipped == 0
    assert np.all(tr.scheduler.u[:2] > 0)  # the sentence tasks (tagging: MI ~1e-5, may clamp)
    tr.model.encoder.head_dropout.p = 0.0  # nothing left to sample: the passes agree
    mc = tr.meter.measure(tr.model, tr.scheduler.wants_signals(40), seed=0).outputs[0].mc_probs
    assert np.abs(mc - mc[..., :1]).max() == 0.0
