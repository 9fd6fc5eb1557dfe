"""Plots: the data behind each figure from hand-made metrics.jsonl and schedule.csv, the figures
drawn from it (read back from the files), which figures a run gets, the one-line errors of the
report command, the warning-only run-end hook, mtlrun-report --plots, and one real run."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY, mtlrun

from mtlrun.errors import MtlrunError
from mtlrun.report import plots
from mtlrun.report.cli import main

P = {100: [0.5, 0.5], 200: [0.7, 0.3], 300: [0.2, 0.8], 400: [0.4, 0.6]}
SCORES = {100: [0.5, 0.1], 200: [0.6, 0.3], 300: [0.9, 0.2], 400: [0.8, 0.5]}  # a, b


def lines(w=None, state=None) -> list[dict]:
    """Two tasks a, b at four evaluations; `w(step, k)` and `state(step)` optional."""
    out = []
    for step in sorted(P):
        for k, task in enumerate("ab"):
            r = {"step": step, "task": task, "split": "dev", "metric": "accuracy",
                 "score": SCORES[step][k], "loss": 0.5, "p": P[step][k],
                 "w": w(step, k) if w else 1.0, "lr_scale": 1.0}  # fmt: skip
            if state:
                r["scheduler"] = state(step)
            out.append(r)
    return out


def write_run(d: Path, records: list[dict], schedule: str | None = None, best=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if schedule is not None:
        (d / "schedule.csv").write_text(schedule)
    if best is not None:
        (d / "results.json").write_text(json.dumps({"best_step": best, "tasks": {}}))
    return d


def single_schedule(steps: int = 400) -> str:
    """Task a for the first quarter of the steps, then a, b, b, b, ..."""
    rows = [f"{t},{'a' if t < steps // 4 or t % 4 == 0 else 'b'}" for t in range(steps)]
    return "step,task\n" + "\n".join(rows) + "\n"


# --- the data -----------------------------------------------------------------------------------
def test_dev_curves_and_best_step():
    curves = plots.dev_curves(list(reversed(lines())))
    assert curves["a"] == ([100, 200, 300, 400], [0.5, 0.6, 0.9, 0.8])
    assert curves["b"][1] == [0.1, 0.3, 0.2, 0.5]
    # means 0.3, 0.45, 0.55, 0.65: the last; with b lower-is-better 0.2, 0.15, 0.35, 0.15
    assert plots.best_step(lines()) == 400
    assert plots.best_step(lines(), {"b": False}) == 300


def test_best_step_ties_and_undefined_scores():
    ls = [{"step": s, "task": "a", "split": "dev", "score": x}
          for s, x in [(1, 0.5), (2, 0.7), (3, 0.7), (4, None)]]  # fmt: skip
    assert plots.best_step(ls) == 2  # the first of equals, as the trainer keeps it
    assert plots.best_step(ls[3:]) is None


def test_probability_heatmap_is_p_from_the_log():
    h = plots.probabilities(lines())
    assert h.tasks == ["a", "b"] and h.steps == [100, 200, 300, 400]
    assert np.array_equal(h.values, np.array([[P[s][k] for s in sorted(P)] for k in range(2)]))


def test_active_uncertainty_estimates_blank_before_the_first():
    def state(step):
        return {"u": [1.0, 1.0] if step == 100 else [step / 1000, step / 500],
                "v": None, "estimates": 0 if step == 100 else step // 100}  # fmt: skip

    h = plots.uncertainties(lines(state=state))
    assert h.label == "u_k" and "epistemic" in h.what
    assert np.isnan(h.values[:, 0]).all()  # the prior u = 1, not an estimate
    assert np.allclose(h.values[:, 1:], [[0.2, 0.3, 0.4], [0.4, 0.6, 0.8]])


def test_kendall_uncertainty_is_sigma_squared():
    h = plots.uncertainties(lines(state=lambda step: {"s": [0.0, step / 100], "weights": [1, 1]}))
    assert h.label == "σ_k² = exp(s_k)"
    assert np.allclose(
        h.values, [[1, 1, 1, 1], [math.exp(1), math.exp(2), math.exp(3), math.exp(4)]]
    )


def test_no_uncertainty_in_other_states():
    assert plots.uncertainties(lines()) is None
    assert plots.uncertainties(lines(state=lambda s: {"q": [0.1, 0.2], "u": [1.0]})) is None


def test_weight_series_only_when_not_one():
    assert plots.weight_series(lines()) == {}
    series = plots.weight_series(lines(w=lambda step, k: 1 + k * step / 100))
    assert list(series) == ["w"]  # lr_scale stays 1: left out
    assert series["w"]["b"] == ([100, 200, 300, 400], [2.0, 3.0, 4.0, 5.0])


def test_read_schedule_in_every_step_mode(tmp_path: Path):
    path = tmp_path / "schedule.csv"
    path.write_text("step,task\n0,a\n1,*\n2,a:3|b:5\n")
    assert plots.read_schedule(path) == [(0, {"a": 1.0}), (1, {}), (2, {"a": 3.0, "b": 5.0})]
    assert plots.read_schedule(tmp_path / "none.csv") == []
    path.write_text("step,task\n0,a\nx,b\n")
    with pytest.raises(MtlrunError, match=r"schedule.csv, line 3: not a 'step,task' row"):
        plots.read_schedule(path)


def test_schedule_shares_in_windows():
    rows = [(t, {"a" if t < 4 else "b": 1.0}) for t in range(10)]
    shares = plots.schedule_shares(rows, ["a", "b"], windows=3)  # width 4: 0-3, 4-7, 8-9
    assert list(shares.edges) == [0, 4, 8, 10]
    assert np.allclose(shares.values, [[1, 0, 0], [0, 1, 1]])
    mixed = plots.schedule_shares([(0, {"a": 3.0, "b": 1.0}), (1, {"b": 4.0})], ["a", "b"], 1)
    assert np.allclose(mixed.values[:, 0], [3 / 8, 5 / 8])  # examples, not steps
    assert plots.schedule_shares([(0, {}), (1, {})], ["a", "b"]) is None  # ALL mode


# --- the figures --------------------------------------------------------------------------------
def test_dev_curve_figure_shows_the_scores_and_the_best_step():
    fig = plots.draw_dev_curves(lines(), best=300)
    (ax,) = fig.axes
    curves = {ln.get_label(): ln for ln in ax.lines}
    assert np.allclose(curves["a"].get_ydata(), [50, 60, 90, 80])  # percent
    best = curves["best checkpoint (step 300)"]
    assert list(best.get_xdata()) == [300, 300]  # the vertical line
    stars = [ln for ln in ax.lines if ln.get_marker() == "*"]
    assert sorted(float(s.get_ydata()[0]) for s in stars) == pytest.approx([20, 90])
    assert ax.get_ylabel() == "dev score (%)"


def test_heatmap_figure_holds_the_matrix():
    fig = plots.draw_task_probabilities(plots.probabilities(lines()), None)
    image = fig.axes[0].images[0].get_array()
    assert np.allclose(image, plots.probabilities(lines()).values)
    assert plots.draw_task_probabilities(None, None) is None


def test_plot_run_writes_what_applies(tmp_path: Path):
    run = write_run(tmp_path / "run", lines(), single_schedule(), best=300)
    stale = run / "plots" / "loss_weights.png"  # from an earlier run with loss weights
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    written = plots.plot_run(run)
    names = {p.name for p in written}
    assert names == {f"{n}.{f}" for n in ("dev_curves", "task_probabilities", "schedule")
                     for f in ("png", "pdf")}  # fmt: skip
    assert set(written) == set((run / "plots").iterdir())  # the stale figure went, no temps
    import matplotlib.image

    for png in (p for p in written if p.suffix == ".png"):
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas
    for pdf in (p for p in written if p.suffix == ".pdf"):
        assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000


def test_plot_run_of_an_all_mode_weighter(tmp_path: Path):
    """Every task every step: no sampling distribution or schedule; weights and the
    uncertainty estimates instead."""
    records = lines(w=lambda step, k: 1 - k * step / 1000, state=lambda s: {"s": [0.0, s / 400]})
    run = write_run(
        tmp_path / "run", records, "step,task\n" + "".join(f"{t},*\n" for t in range(9))
    )
    written = plots.plot_run(run, out=tmp_path / "figs")
    assert {p.stem for p in written} == {"dev_curves", "task_probabilities", "loss_weights"}
    assert all(p.parent == tmp_path / "figs" for p in written)


def test_plot_run_errors_are_one_line(tmp_path: Path):
    with pytest.raises(MtlrunError, match="metrics.jsonl: no such file"):
        plots.plot_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(MtlrunError, match="no evaluation yet"):
        plots.plot_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "task"\n')
    with pytest.raises(MtlrunError, match="line 1: not JSON") as e:
        plots.plot_run(tmp_path)
    assert "\n" not in str(e.value)


def test_run_end_hook_only_warns(tmp_path: Path, caplog):
    (tmp_path / "metrics.jsonl").write_text("garbage\n")
    with caplog.at_level(logging.WARNING, logger="mtlrun"):
        assert plots.plot_run_quietly(tmp_path) == []
    assert "plots not drawn" in caplog.text and "line 1: not JSON" in caplog.text
    assert not (tmp_path / "plots").exists()


# --- a sweep ------------------------------------------------------------------------------------
def test_sweep_curves_mean_and_band():
    other = [{**r, "score": r["score"] + 0.2} for r in lines()]
    short = [r for r in lines() if r["step"] <= 200]  # a run cut short
    bands = plots.sweep_curves({"uniform": [lines(), other], "qls": [short]})
    a = bands["a"]["uniform"]
    assert a.steps == [100, 200, 300, 400] and a.runs == 2
    assert a.mean == pytest.approx([0.6, 0.7, 1.0, 0.9])
    assert a.low == pytest.approx([0.5, 0.6, 0.9, 0.8]) and a.high == pytest.approx(
        [0.7, 0.8, 1.1, 1.0]
    )
    assert bands["b"]["qls"].steps == [100, 200] and bands["b"]["qls"].mean == pytest.approx(
        [0.1, 0.3]
    )


def sweep_with_logs(root: Path, damaged: bool = False) -> Path:
    sweep = root / "sweep"
    for i, sched in enumerate(["uniform", "uniform", "qls"]):
        d = write_run(sweep / str(i), lines(), single_schedule())
        (d / ".hydra").mkdir()
        (d / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump([f"scheduler={sched}", f"seed={i}"])
        )
        res = {"tasks": {t: {"metric": "accuracy", "dev": 0.5, "test": 0.5} for t in "ab"},
               "aggregate": {"dev": 0.5, "test": 0.5}, "best_step": 400, "steps": 400}  # fmt: skip
        (d / "results.json").write_text(json.dumps(res))
    if damaged:
        (sweep / "2" / "metrics.jsonl").write_text("{oops\n")
    return sweep


def test_report_plots(tmp_path: Path, capsys):
    sweep = sweep_with_logs(tmp_path)
    main([str(sweep), "--out", str(tmp_path / "out"), "--plots"])
    assert "plots in" in capsys.readouterr().out
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "out" / "dev_curves.png").shape[1] > 400
    assert (tmp_path / "out" / "dev_curves.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "out" / "report.md").is_file()


def test_report_plots_damaged_log_is_one_line_and_writes_nothing(tmp_path: Path, capsys):
    sweep = sweep_with_logs(tmp_path, damaged=True)
    with pytest.raises(SystemExit) as e:
        main([str(sweep), "--plots"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("mtlrun-report: error: ") and "2/metrics.jsonl, line 1: not JSON" in err
    assert not (sweep / "report.md").exists() and not (sweep / "dev_curves.png").exists()


def test_report_redraws_one_run(tmp_path: Path, capsys):
    run = write_run(tmp_path / "run", lines(), "step,task\n0,*\n1,*\n")  # ALL mode: one figure
    main([str(run), "--plots"])
    assert f"plots (dev_curves) in {run / 'plots'}\n" in capsys.readouterr().out
    assert (run / "plots" / "dev_curves.png").is_file()
    (run / "metrics.jsonl").write_text("[]\n")
    with pytest.raises(SystemExit) as e:
        main([str(run), "--plots"])
    assert e.value.code == 2 and "line 1: no step" in capsys.readouterr().err


# --- a real run ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_run_has_plots_and_time_to_accuracy(tmp_path: Path):
    run = tmp_path / "run"
    mtlrun(
        [*TINY, "trainer.plots=true", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"],
        cwd=tmp_path,
    )
    results = json.loads((run / "results.json").read_text())
    dev = plots.read_dev_lines(run / "metrics.jsonl")
    best = results["best_step"]
    assert plots.best_step(dev) == best  # the same rule as the trainer's
    for task, r in results["tasks"].items():
        scores = {x["step"]: x["score"] for x in dev if x["task"] == task}
        hits = r["time_to_accuracy"]
        assert list(hits) == ["90", "95", "99"]
        if not scores[best] > 0:  # TINY's tagging task may score F1 = 0: no ratio
            assert set(hits.values()) == {None}
            continue
        for f, hit in hits.items():  # the first evaluation at or above the fraction
            reached = [s for s in sorted(scores) if scores[s] >= int(f) / 100 * scores[best]]
            seconds = next(x["train_seconds"] for x in dev if x["step"] == reached[0])
            assert hit == {"step": reached[0], "seconds": seconds} and seconds > 0
    assert {p.name for p in (run / "plots").iterdir()} == {
        f"{n}.{f}" for n in ("dev_curves", "task_probabilities", "schedule") for f in ("png", "pdf")
    }
