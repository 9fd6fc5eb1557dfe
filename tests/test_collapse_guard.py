"""The schedule's visibility (shares and entropy in metrics.jsonl and results.json) and the
collapse guard of learned schedulers: the pure decision function, in-process runs that collapse
or do not, resume, and mtlrun-report marking a collapsed cell."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TAGGING, TINY, metric_lines
from hydra import compose, initialize_config_dir
from scipy import stats

from mtlrun.config import register_configs
from mtlrun.errors import ConfigError
from mtlrun.experiment import run_experiment
from mtlrun.paths import config_dir
from mtlrun.report.cli import main as report_main
from mtlrun.schedulers import SCHEDULERS
from mtlrun.schedulers.reinforce import SCHEDULE_FORMAT
from mtlrun.training import schedule_stats as ss
from mtlrun.training.trainer import Trainer

register_configs()

NAMES = ["a", "b", "c", "d"]
TASKS = ["sent0", "sent1", "entities"]  # TINY + TAGGING's synthetic suite, in order


# --- the pure functions ----------------------------------------------------------------------
def test_threshold_is_halfway_between_uniform_and_one_task():
    assert ss.auto_threshold(4) == pytest.approx(0.625)
    assert ss.auto_threshold(16) == pytest.approx((1 + 1 / 16) / 2)
    assert ss.auto_threshold(1) == 1.0  # one task: nothing to collapse from


def test_guard_trips_on_a_dominant_task_and_not_below_the_threshold():
    record = ss.check_collapse(NAMES, [90, 4, 3, 3], step=100)
    assert record == {"task": "a", "share": 0.9, "threshold": 0.625, "decisions": 100,
                      "uniform": 0.25, "first_step": 100}  # fmt: skip
    assert ss.check_collapse(NAMES, [62, 14, 12, 12], step=100) is None  # 0.62 <= 0.625
    assert ss.check_collapse(NAMES, [3, 3, 4, 90], step=100)["task"] == "d"  # the top task
    # an explicit threshold replaces the automatic one; "exceeds" is strict
    assert ss.check_collapse(NAMES, [50, 50, 0, 0], 100, threshold=0.4)["share"] == 0.5
    assert ss.check_collapse(NAMES, [50, 50, 0, 0], 100, threshold=0.5) is None
    assert ss.check_collapse(NAMES, [100, 0, 0, 0], 100, threshold=1.0) is None


def test_guard_needs_the_minimum_number_of_decisions():
    assert ss.MIN_DECISIONS == 32
    assert ss.check_collapse(NAMES, [31, 0, 0, 0], step=31) is None
    assert ss.check_collapse(NAMES, [32, 0, 0, 0], step=32)["decisions"] == 32


def test_decision_interval_scales_the_number_of_decisions():
    counts = [300, 10, 5, 5]  # 320 steps
    assert ss.check_collapse(NAMES, counts, 320, decision_interval=10)["decisions"] == 32
    assert ss.check_collapse(NAMES, counts, 320, decision_interval=11) is None  # 29 decisions


def test_schedule_statistics():
    assert ss.shares([3, 1]) == [0.75, 0.25]
    assert ss.entropy([5, 5, 5, 5]) == pytest.approx(math.log(4))
    assert ss.normalised_entropy([5, 5, 5, 5]) == pytest.approx(1.0)
    assert ss.normalised_entropy([7, 0, 0]) == 0.0 and ss.entropy([7, 0, 0]) == 0.0
    assert ss.normalised_entropy([9]) is None
    s = ss.summary(["x", "y"], [3, 1], "batches")
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert s["counts"] == {"x": 3, "y": 1} and s["share"] == {"x": 0.75, "y": 0.25}
    assert s["entropy"] == pytest.approx(h, abs=1e-6)
    assert s["entropy_norm"] == pytest.approx(h / math.log(2), abs=1e-6)
    assert s["unit"] == "batches"


def test_message_is_one_line_with_the_numbers():
    record = ss.check_collapse(["books", *map(str, range(15))], [146] + [4] * 1 + [0] * 14, 150)
    msg = ss.collapse_message("qls", record)
    assert msg == (
        "collapse: qls gave 97% of its 150 decisions to task books (threshold 53%, uniform "
        "would give 6%); its scores measure one task's training, not a schedule"
    )


def test_a_schedule_uniform_sampling_could_give_is_recorded():
    record = ss.check_uniform([26, 25, 24, 25], step=100)
    assert record == {"decisions": 100, "p_value": round(stats.chisquare([26, 25, 24, 25]).pvalue,
                      6), "share_min": 0.24, "share_max": 0.26, "uniform": 0.25}  # fmt: skip
    assert ss.check_uniform([40, 20, 20, 20], step=100) is None  # p = 0.02: not uniform
    assert ss.check_uniform([8, 8, 8, 7], step=31) is None  # too few decisions to tell
    assert ss.check_uniform([100], step=100) is None  # one task: nothing to choose between


def test_the_uniform_test_counts_decisions_not_steps():
    """160:96 over 256 steps is far from uniform as 256 draws (p = 6e-5), but with 8 steps per
    decision it is 20:12 over 32 decisions (p = 0.16), which uniform sampling gives."""
    assert ss.check_uniform([160, 96], step=256) is None
    record = ss.check_uniform([160, 96], step=256, decision_interval=8)
    assert record["decisions"] == 32
    assert record["p_value"] == pytest.approx(stats.chisquare([20, 12]).pvalue, abs=1e-6)


def test_uniform_message_is_one_line_with_the_numbers():
    record = ss.check_uniform([26, 25, 24, 25], step=100)
    message = ss.uniform_message("qls", record)
    assert "\n" not in message and message.startswith("uniform: qls's 100 decisions")
    assert "p = 0.99" in message and "24.0%–26.0%, uniform 25.0%" in message


def _binomial_tail(n: int, p: float, at_least: int) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(at_least, n + 1))


@pytest.mark.parametrize("K", [4, 5, 8, 16])
def test_uniform_sampling_does_not_trip_at_the_minimum(K):
    """The claim behind MIN_DECISIONS and the automatic threshold, by a union bound over tasks
    of the exact binomial tail, and by simulating 10,000 uniform schedules."""
    n = ss.MIN_DECISIONS
    need = math.floor(ss.auto_threshold(K) * n) + 1  # the least count that exceeds the threshold
    assert K * _binomial_tail(n, 1 / K, need) < 1e-5
    rng = np.random.default_rng(12345)
    draws = rng.integers(0, K, size=(10_000, n))
    counts = np.stack([np.bincount(row, minlength=K) for row in draws])
    names = [f"t{k}" for k in range(K)]
    assert not any(ss.check_collapse(names, c.tolist(), n) for c in counts)
    # ...while a schedule at the threshold's count does trip
    assert ss.check_collapse(names, [need] + [0] * (K - 2) + [n - need], n) is not None


def test_learned_flags():
    learned = {name for name, cls in SCHEDULERS.items() if cls.learned}
    assert {"reinforce_policy", "fixed_schedule", "autosem", "autosem_mixing"} <= learned
    assert not {"uniform", "proportional", "round_robin", "single"} & learned
    assert all(isinstance(cls.decision_interval, property) for cls in SCHEDULERS.values())


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan")])
def test_collapse_share_is_validated(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"trainer.collapse_share must be a share in \(0, 1\]"):
        run_experiment(_cfg(tmp_path, f"trainer.collapse_share={bad}"), tmp_path / "run")


# --- in-process runs -------------------------------------------------------------------------
def _cfg(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=[*TINY, TAGGING, f"cache_dir={tmp_path / 'cache'}",
                                            "hardware.num_threads=1", *overrides])  # fmt: skip


def _schedule_file(tmp_path: Path, probs: list[float]) -> Path:
    path = tmp_path / f"schedule_{'_'.join(f'{p:.2f}' for p in probs)}.json"
    doc = {"format": SCHEDULE_FORMAT, "tasks": TASKS, "meta_step": 1000, "time_variant": False,
           "probs": [probs]}  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def _fixed(tmp_path: Path, probs: list[float], *overrides: str):
    return _cfg(tmp_path, "scheduler=fixed_schedule", "trainer.step_mode=single",
                f"scheduler.path={_schedule_file(tmp_path, probs)}", *overrides)  # fmt: skip


def _dev_lines(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == "dev"]


COLLAPSE_WARNING = (
    "collapse: fixed_schedule gave 100% of its 40 decisions to task sent0 (threshold 67%, "
    "uniform would give 33%); its scores measure one task's training, not a schedule"
)


@pytest.mark.slow
def test_a_collapsed_learned_schedule_is_reported(tmp_path, caplog):
    run_dir = tmp_path / "collapsed"
    with caplog.at_level(logging.WARNING):
        results = run_experiment(_fixed(tmp_path, [1.0, 0.0, 0.0]), run_dir)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("collapse:")]
    assert warnings == [COLLAPSE_WARNING]  # once, at the first evaluation with >= 32 decisions
    # TINY: 60 steps, evaluations at 20 (20 decisions: too few), 40 (trips) and 60
    expected = {"task": "sent0", "share": 1.0, "threshold": round(2 / 3, 6), "decisions": 40,
                "uniform": round(1 / 3, 6), "first_step": 40}  # fmt: skip
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["collapse"] == expected and results["collapse"] == expected
    assert on_disk["uniform_like"] is None  # a collapse is not also called uniform
    assert on_disk["schedule"] == {
        "unit": "batches", "counts": {"sent0": 60, "sent1": 0, "entities": 0},
        "share": {"sent0": 1.0, "sent1": 0.0, "entities": 0.0}, "entropy": 0.0, "entropy_norm": 0.0,
    }  # fmt: skip
    assert "-0.0" not in (run_dir / "results.json").read_text()  # one task: H = 0, not -0
    md = (run_dir / "results.md").read_text()
    assert "| sent0 † | accuracy |" in md and "| average † |" in md
    assert md.rstrip().endswith(f"† {COLLAPSE_WARNING}")
    # every dev line carries the schedule so far
    lines = _dev_lines(run_dir)
    assert [r["schedule"]["share"] for r in lines if r["task"] == "sent0"] == [1.0, 1.0, 1.0]
    assert {r["schedule"]["entropy_norm"] for r in lines} == {0.0}


@pytest.mark.slow
def test_a_balanced_learned_schedule_is_not_a_collapse(tmp_path, caplog):
    run_dir = tmp_path / "balanced"
    with caplog.at_level(logging.WARNING):
        results = run_experiment(_fixed(tmp_path, [0.34, 0.33, 0.33]), run_dir)
    assert not [r for r in caplog.records if r.getMessage().startswith("collapse:")]
    assert json.loads((run_dir / "results.json").read_text())["collapse"] is None
    assert "†" not in (run_dir / "results.md").read_text()
    schedule = results["schedule"]
    counts = list(schedule["counts"].values())
    # ... but one that uniform sampling could have given, and the run says so
    assert stats.chisquare(counts).pvalue >= 0.05
    assert results["uniform_like"] == ss.check_uniform(counts, 60) is not None
    warning = ss.uniform_message("fixed_schedule", results["uniform_like"])
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("uniform:")] == [
        warning
    ]
    assert (run_dir / "results.md").read_text().rstrip().endswith(warning)
    assert sum(counts) == 60 and max(counts) < 40  # a real spread, not one task
    assert schedule["share"] == {t: round(c / 60, 6) for t, c in schedule["counts"].items()}
    assert schedule["entropy_norm"] == pytest.approx(ss.entropy(counts) / math.log(3), abs=1e-6)
    assert schedule["entropy_norm"] > 0.8
    # the last evaluation's lines agree with results.json, and share the run-wide numbers
    last = [r for r in _dev_lines(run_dir) if r["step"] == 60]
    assert {r["task"]: r["schedule"]["share"] for r in last} == schedule["share"]
    assert {r["schedule"]["entropy"] for r in last} == {schedule["entropy"]}


@pytest.mark.slow
def test_a_learned_preference_is_neither_collapse_nor_uniform(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        results = run_experiment(_fixed(tmp_path, [0.5, 0.25, 0.25]), tmp_path / "skewed")
    counts = list(results["schedule"]["counts"].values())
    assert max(counts) / 60 < 2 / 3 and stats.chisquare(counts).pvalue < 0.05
    assert results["collapse"] is None and results["uniform_like"] is None
    assert not [r for r in caplog.records if r.getMessage().startswith(("uniform:", "collapse:"))]


@pytest.mark.slow
def test_mixed_mode_counts_examples(tmp_path):
    run_dir = tmp_path / "mixed"
    cfg = _fixed(tmp_path, [1.0, 0.0, 0.0], "trainer.step_mode=mixed")
    results = run_experiment(cfg, run_dir)
    assert results["schedule"]["unit"] == "examples"
    assert results["schedule"]["counts"] == {"sent0": 60 * 16, "sent1": 0, "entities": 0}
    assert results["collapse"]["task"] == "sent0" and results["collapse"]["first_step"] == 40


@pytest.mark.slow
def test_uniform_sampling_is_never_guarded(tmp_path, caplog):
    """Not a learned scheduler: no record even with a threshold any schedule exceeds."""
    run_dir = tmp_path / "uniform"
    with caplog.at_level(logging.WARNING):
        results = run_experiment(_cfg(tmp_path, "trainer.collapse_share=0.01"), run_dir)
    assert results["collapse"] is None
    assert not [r for r in caplog.records if r.getMessage().startswith("collapse:")]
    assert sum(results["schedule"]["counts"].values()) == 60  # the schedule is still reported
    # the same threshold on a learned, balanced schedule does trip: the flag is what differs
    balanced = run_experiment(_fixed(tmp_path, [0.34, 0.33, 0.33], "trainer.collapse_share=0.01"),
                              tmp_path / "learned")  # fmt: skip
    assert balanced["collapse"] is not None and balanced["collapse"]["threshold"] == 0.01


@pytest.mark.slow
def test_a_resumed_run_reports_what_an_uninterrupted_one_does(tmp_path, monkeypatch, caplog):
    full = run_experiment(_fixed(tmp_path, [1.0, 0.0, 0.0]), tmp_path / "full")

    train_step = Trainer._train_step

    def crash_at_50(self, t):
        if t == 50:
            raise KeyboardInterrupt
        train_step(self, t)

    cut = tmp_path / "cut"
    monkeypatch.setattr(Trainer, "_train_step", crash_at_50)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_fixed(tmp_path, [1.0, 0.0, 0.0]), cut)
    monkeypatch.setattr(Trainer, "_train_step", train_step)
    assert not (cut / "results.json").exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resumed = run_experiment(_fixed(tmp_path, [1.0, 0.0, 0.0]), cut, resume=True)
    assert resumed["schedule"] == full["schedule"]
    assert resumed["collapse"] == full["collapse"] and resumed["collapse"]["first_step"] == 40
    # the checkpointed record is told again at the resume (it tripped before the interruption)
    assert [r.getMessage() for r in caplog.records if "collapse:" in r.getMessage()] == [
        COLLAPSE_WARNING
    ]
    assert metric_lines(cut) == metric_lines(tmp_path / "full")


# --- mtlrun-report ---------------------------------------------------------------------------
def _job(sweep: Path, num: int, scheduler: str, scores: dict[str, float], collapse=None) -> Path:
    d = sweep / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"scheduler={scheduler}"]))
    (d / "config.yaml").write_text(yaml.safe_dump({"scheduler": {"name": scheduler}}))
    tasks = {t: {"metric": "accuracy", "dev": s, "test": s} for t, s in scores.items()}
    agg = {k: sum(scores.values()) / len(scores) for k in ("dev", "test")}
    results = {"tasks": tasks, "aggregate": agg, "best_step": 1, "steps": 1,
               "scheduler": scheduler, "collapse": collapse}  # fmt: skip
    (d / "results.json").write_text(json.dumps(results))
    return d


def test_report_marks_the_collapsed_cell(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    record = {"task": "b", "share": 0.97, "threshold": 0.75, "decisions": 150,
              "uniform": 0.5, "first_step": 600}  # fmt: skip
    _job(sweep, 0, "uniform", {"a": 0.7, "b": 0.8})
    bad = _job(sweep, 1, "qls", {"a": 0.5, "b": 0.9}, collapse=record)
    report_main([str(sweep)])  # exits only on an error
    out = capsys.readouterr().out
    md = (sweep / "report.md").read_text()
    assert "| a (accuracy) | **70.00** | 50.00 † |" in md
    assert "† Learned schedule collapsed onto one task in 1 run" in md
    assert (
        "| b (accuracy) | 80.00 | **90.00 †** |" in md and "| average | **75.00** | 70.00 † |" in md
    )
    assert (
        f"- `{bad}` (scheduler=qls): collapsed onto b (97% of 150 decisions, threshold 75%)" in md
    )
    csv_rows = (sweep / "report.csv").read_text().splitlines()
    assert csv_rows[0] == "task,column,mean,std,n,collapsed"
    flags = {tuple(r.split(",")[:2]): r.split(",")[-1] for r in csv_rows[1:]}
    assert flags == {(t, c): "1" if c == "qls" else "0"
                     for t in ("a", "b", "average") for c in ("uniform", "qls")}  # fmt: skip
    tex = (sweep / "report.tex").read_text()
    assert r"a (accuracy) & \textbf{70.00} & 50.00 $^\dagger$ \\" in tex
    assert r"\multicolumn{3}{l}{$^\dagger$ a learned schedule collapsed" in tex
    # the rich table: marker, and the run among the printed warnings
    assert "50.00 †" in out and "1 run(s) whose learned schedule collapsed" in out
    assert "collapsed onto b (97% of 150 decisions" in out.replace("\n  ", " ")
