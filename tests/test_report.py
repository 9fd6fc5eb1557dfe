"""mtlrun-report: aggregation over handmade sweep dirs, and one real sweep end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtlrun.report.cli import main
from mtlrun.report.sweep import build_table, collect_runs

C = "tasks.dev_size=40"  # the same in every job: not shown for failed runs
SD = 0.05 * 2**0.5  # sample std (ddof=1) of two scores 0.1 apart: sqrt(2 * 0.05^2 / 1)


def job(
    sweep: Path,
    num: int | str,
    overrides: list[str],
    scores: dict[str, float] | None = None,  # task -> test score; dev = test - 0.1
    error: str | None = None,
    config: dict | None = None,
) -> Path:
    d = sweep / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / "config.yaml").write_text(yaml.safe_dump(config or {"scheduler": {"name": "uniform"}}))
    if error:
        (d / "error.txt").write_text(error + "\n")
    if scores is not None:
        tasks = {t: {"metric": "accuracy", "dev": s - 0.1, "test": s, "batches_seen": 1,
                     "examples_seen": 1} for t, s in scores.items()}  # fmt: skip
        n = len(scores)
        agg = {k: sum(t[k] for t in tasks.values()) / n for k in ("dev", "test")}
        results = {"tasks": tasks, "aggregate": agg, "best_step": 1, "steps": 1}
        (d / "results.json").write_text(json.dumps(results))
    return d


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """uniform/proportional x seed 1/2 (uniform first, so not alphabetical)."""
    s = tmp_path / "sweep"
    job(s, 0, ["scheduler=uniform", "seed=1", C], {"a": 0.5, "b": 0.9})
    job(s, 1, ["scheduler=uniform", "seed=2", C], {"a": 0.6, "b": 0.9})
    job(s, 2, ["scheduler=proportional", "seed=1", C], {"a": 0.7, "b": 0.8})
    job(s, 3, ["scheduler=proportional", "seed=2", C], {"a": 0.8, "b": 0.8})
    return s


def report(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_mean_std_and_best(sweep: Path):
    t = build_table(collect_runs(sweep))
    assert t.columns == ["uniform", "proportional"]  # sweep order, not alphabetical
    assert t.rows == ["a", "b", "average"] and t.averaged_over == ["seed"]
    a_u, a_p = t.cells["a", "uniform"], t.cells["a", "proportional"]
    assert (a_u.mean, a_u.std, a_u.n) == (pytest.approx(0.55), pytest.approx(SD), 2)
    assert (a_p.mean, a_p.std) == (pytest.approx(0.75), pytest.approx(SD))
    assert t.cells["b", "uniform"].std == pytest.approx(0.0)
    # average row: per-run means (0.7, 0.75) and (0.75, 0.8)
    avg_u, avg_p = t.cells["average", "uniform"], t.cells["average", "proportional"]
    assert avg_u.mean == pytest.approx(0.725) and avg_p.mean == pytest.approx(0.775)
    assert avg_u.std == pytest.approx(0.025 * 2**0.5)
    assert t.best == {("a", "proportional"), ("b", "uniform"), ("average", "proportional")}
    assert not t.show_n
    dev = build_table(collect_runs(sweep), split="dev")
    assert dev.cells["a", "uniform"].mean == pytest.approx(0.45)


def test_files_written(sweep: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = report([sweep, "--out", out], capsys)
    assert code == 0 and "55.00 ± 7.07" in stdout
    md = (out / "report.md").read_text()
    assert "| a (accuracy) | 55.00 ± 7.07 | **75.00 ± 7.07** |" in md
    assert "| average | 72.50 ± 3.54 | **77.50 ± 3.54** |" in md
    tex = (out / "report.tex").read_text()
    assert r"a (accuracy) & 55.00 $\pm$ 7.07 & \textbf{75.00 $\pm$ 7.07} \\" in tex
    assert "\\begin{tabular}{lrr}" in tex and tex.rstrip().endswith("\\end{tabular}")
    lines = (out / "report.csv").read_text().splitlines()
    assert lines[0] == "task,column,mean,std,n,collapsed"
    task, col, mean, std, n, collapsed = lines[1].split(",")
    assert (task, col, n, collapsed) == ("a", "uniform", "2", "0")
    assert float(mean) == pytest.approx(0.55) and float(std) == pytest.approx(SD)
    assert not (sweep / "report.md").exists() and not list(out.glob(".*tmp"))


def test_failed_and_unfinished_are_listed(sweep: Path, capsys):
    job(sweep, 4, ["scheduler=proportional", "seed=3", C], error="scheduler.T must be > 0")
    job(sweep, 5, ["scheduler=uniform", "seed=3", C])  # killed: .hydra but no results.json
    (sweep / "3" / "results.json").unlink()  # proportional now has one finished run
    code, stdout, _ = report([sweep], capsys)
    assert code == 0
    assert "scheduler.T must be > 0" in stdout and "unfinished: no results.json" in stdout
    md = (sweep / "report.md").read_text()
    assert "## Failed or unfinished runs (3)" in md
    assert "scheduler=proportional seed=3): scheduler.T must be > 0" in md  # swept keys only
    # one run: mean alone (no std), and n shown in every column with missing runs
    assert "| a (accuracy) | 55.00 ± 7.07 (n=2) | **70.00 (n=1)** |" in md
    assert "a,proportional,0.7,,1" in (sweep / "report.csv").read_text()


def test_no_finished_runs_exit_1(tmp_path: Path, capsys):
    s = tmp_path / "sweep"
    job(s, 0, ["seed=1"], error="boom")
    job(s, 1, ["seed=2"])
    code, out, err = report([s], capsys)
    assert code == 1 and "no finished runs" in err and len(err.strip().splitlines()) == 1
    assert "boom" in out and "unfinished: no results.json" in out
    assert not (s / "report.md").exists()


def test_not_a_sweep_exit_2(tmp_path: Path, capsys):
    job(tmp_path, "run", ["seed=1"], {"a": 0.5})
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "missing", tmp_path / "empty", tmp_path / "run" / ".hydra"):
        code, _, err = report([target], capsys)
        assert code == 2 and err.startswith("mtlrun-report: error:") and err.count("\n") == 1
    code, _, err = report([tmp_path, "--by", "nope.key"], capsys)  # tmp_path holds one job
    assert code == 2 and "no finished job sets nope.key" in err


def test_by_other_key_and_config_fallback(tmp_path: Path):
    s = tmp_path / "sweep"
    cfg = {"scheduler": {"name": "temperature", "T": 2}, "model": {"hidden_size": 16}}
    job(s, 10, ["optimizer.lr=0.01", "seed=1"], {"a": 0.4}, config=cfg)  # 10 sorts after 2
    job(s, 2, ["optimizer.lr=0.001", "seed=1"], {"a": 0.6}, config=cfg)
    job(s, 3, ["optimizer.lr=0.001", "seed=2"], {"a": 0.8}, config=cfg)
    t = build_table(collect_runs(s), by="optimizer.lr")
    assert t.columns == ["0.001", "0.01"] and t.averaged_over == ["seed"]
    assert t.cells["a", "0.001"].mean == pytest.approx(0.7)
    assert t.best == {("a", "0.001"), ("average", "0.001")}
    assert build_table(collect_runs(s), by="scheduler").columns == ["temperature"]  # group name
    assert build_table(collect_runs(s), by="scheduler.T").columns == ["2"]
    assert build_table(collect_runs(s)).best == set()  # one column: nothing to beat


def test_baselines(tmp_path: Path, capsys):
    s = tmp_path / "single"
    for i, (task, seed, score) in enumerate(
        [("a", 1, 0.9), ("a", 2, 0.8), ("b", 1, 0.7), ("b", 2, 0.6)]
    ):
        job(s, i, ["scheduler=single", f"scheduler.task={task}", f"seed={seed}"], {task: score})
    job(s, 4, ["scheduler=single", "scheduler.task=b", "seed=3"])  # unfinished: ignored
    out = tmp_path / "baselines.json"
    code, _, _ = report([s, "--baselines", out], capsys)
    assert code == 0
    b = json.loads(out.read_text())  # dev = test - 0.1, mean over seeds
    assert b == {"a": pytest.approx(0.75), "b": pytest.approx(0.55)}
    t = build_table(collect_runs(s), by="scheduler.task")
    assert t.columns == ["a", "b"] and t.cells["a", "b"].n == 0
    from mtlrun.schedulers.baselines import load_baselines

    assert load_baselines(str(out), ["b", "a"]) == pytest.approx([0.55, 0.75])


def test_baselines_refuse_multitask_runs(sweep: Path, tmp_path: Path, capsys):
    code, _, err = report([sweep, "--baselines", tmp_path / "b.json"], capsys)
    assert code == 2 and "single-task runs" in err
    assert not (tmp_path / "b.json").exists() and not (sweep / "report.md").exists()


@pytest.mark.slow
def test_real_sweep_end_to_end(tmp_path: Path, tiny_sweep: Path):
    sweep = tiny_sweep  # mtlrun -m scheduler=uniform,proportional seed=1,2 (conftest)
    exe = Path(sys.executable).with_name("mtlrun-report")
    proc = subprocess.run([str(exe), str(sweep), "--out", str(tmp_path / "rep")],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "rep" / "report.csv").read_text().splitlines()
    rows = {(r[0], r[1]): r for r in (ln.split(",") for ln in lines[1:])}
    assert {c for _, c in rows} == {"uniform", "proportional"}
    assert {t for t, _ in rows} == {"sent0", "sent1", "average"}
    # the uniform sent0 cell is the mean of that task's test score in jobs 0 and 1
    tests = [json.loads((sweep / j / "results.json").read_text())["tasks"]["sent0"]["test"]
             for j in ("0", "1")]  # fmt: skip
    assert float(rows["sent0", "uniform"][2]) == pytest.approx(sum(tests) / 2)
    assert rows["sent0", "uniform"][4] == "2"
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| task | uniform | proportional |" in md and "**" in md
    assert (tmp_path / "rep" / "report.tex").read_text().count("\\\\") == 5  # header+2+avg+noise
    assert "average" in proc.stdout


def test_separate_run_directories_are_compared_as_one_sweep(tmp_path: Path, capsys):
    """Runs made on different days (or by mtlrun-reproduce): any run directories and sweeps
    on the command line, one table, written where they meet."""
    a = job(tmp_path / "monday", "uniform", ["scheduler=uniform", "seed=1"], {"a": 0.5})
    b = job(tmp_path / "tuesday", "dtp", ["scheduler=dtp", "seed=1"], {"a": 0.75},
            config={"scheduler": {"name": "dtp"}})  # fmt: skip
    sweep = tmp_path / "wednesday"
    job(sweep, 0, ["scheduler=dtp", "seed=2"], {"a": 0.25}, config={"scheduler": {"name": "dtp"}})
    code, _, err = report([a, b, sweep], capsys)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    cells = {(r["task"], r["column"]): (float(r["mean"]), int(r["n"])) for r in rows}
    assert cells["a", "uniform"] == (0.5, 1) and cells["a", "dtp"] == (0.5, 2)  # 0.75, 0.25
