"""End to end through the installed `mtlrun` command, as a user runs it."""

import json

import pytest
from conftest import TINY, kill_when, metric_lines, mtlrun, scores_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One TINY run, shared by the tests below that only read it: (run dir, the finished
    process, its cache_dir override)."""
    tmp = tmp_path_factory.mktemp("tiny")
    cache_dir, run = f"cache_dir={tmp / 'cache'}", tmp / "run"
    return run, mtlrun([*TINY, cache_dir, f"hydra.run.dir={run}"], cwd=tmp), cache_dir


def test_run_writes_every_output(tiny):
    run, proc, _ = tiny
    results = json.loads((run / "results.json").read_text())
    assert set(results["tasks"]) == {"sent0", "sent1"}
    for r in results["tasks"].values():
        assert 0 <= r["dev"] <= 1 and 0 <= r["test"] <= 1
    assert results["aggregate"]["test"] == pytest.approx(
        sum(r["test"] for r in results["tasks"].values()) / 2
    )
    assert results["steps"] == 60 and results["best_step"] in (20, 40, 60)
    # the composed config, metrics (3 evaluations x 2 tasks + 2 test lines), the schedule
    assert "scheduler" in (run / "config.yaml").read_text()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [ln["split"] for ln in lines].count("dev") == 6 and len(lines) == 8
    assert {"step", "task", "score", "loss", "train_loss", "p", "w", "lr_scale"} <= set(lines[0])
    trained = [ln["train_loss"] for ln in lines if ln["split"] == "dev"]
    assert all(x is None or 0 < x < 10 for x in trained) and any(x is not None for x in trained)
    schedule = (run / "schedule.csv").read_text().splitlines()
    assert schedule[0] == "step,task" and len(schedule) == 61
    assert sum(r["batches_seen"] for r in results["tasks"].values()) == 60
    assert (run / "results.md").read_text().count("|") > 10
    assert (run / "results.csv").read_text().splitlines()[-1].startswith("average,")
    assert (run / "checkpoints" / "best.pt").is_file() and (
        run / "checkpoints" / "last.pt"
    ).is_file()
    assert "average" in proc.stdout  # the final table
    assert not list(run.rglob("*.tmp"))  # atomic writes leave nothing behind
    assert not (run / "plots").exists()  # trainer.plots=false (TINY)


def test_same_config_and_seed_give_identical_results(tiny, tmp_path):
    first, _, cache_dir = tiny  # the same config: its encoding cache is warm now
    mtlrun([*TINY, cache_dir, f"hydra.run.dir={tmp_path / 'b'}"], cwd=tmp_path)
    assert scores_of(tmp_path / "b") == scores_of(first)
    mtlrun([*TINY, cache_dir, "seed=1", f"hydra.run.dir={tmp_path / 'c'}"], cwd=tmp_path)
    assert scores_of(tmp_path / "c") != scores_of(first)


def test_multirun_sweep_2x2(tiny_sweep):
    sweep = tiny_sweep  # mtlrun -m scheduler=uniform,proportional seed=1,2 (conftest)
    results = sorted(sweep.glob("*/results.json"))
    assert len(results) == 4
    runs = {(r["scheduler"], r["seed"]) for r in (json.loads(p.read_text()) for p in results)}
    assert runs == {("uniform", 1), ("uniform", 2), ("proportional", 1), ("proportional", 2)}
    schedules = {p.parent.name: p.read_text() for p in sweep.glob("*/schedule.csv")}
    assert len(set(schedules.values())) == 4  # each job really ran its own schedule


def test_resume_after_kill_reproduces_the_uninterrupted_run(tmp_path, cache_dir):
    # killed at the first checkpoint (step 50), resumed for 150 steps across epoch boundaries
    args = [*TINY, cache_dir, "trainer.max_steps=200", "trainer.eval_every=50",
            "tasks.train_sizes=[600,120]"]  # fmt: skip
    full = tmp_path / "full"
    mtlrun([*args, f"hydra.run.dir={full}"], cwd=tmp_path)

    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.pt"
    kill_when(args, tmp_path, killed, last)
    assert last.exists() and not (killed / "results.json").exists(), "the run was not cut short"

    mtlrun([f"trainer.resume={killed}", cache_dir, f"hydra.run.dir={tmp_path / 'resume-log'}"],
           cwd=tmp_path)  # fmt: skip
    assert scores_of(killed) == scores_of(full)
    assert (killed / "schedule.csv").read_text() == (full / "schedule.csv").read_text()
    assert metric_lines(killed) == metric_lines(full)


def test_resume_refuses_a_changed_configuration(tiny, tmp_path):
    run, _, _ = tiny
    proc = mtlrun([f"trainer.resume={run}", "seed=5", f"hydra.run.dir={tmp_path / 'r'}"],
                  cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2 and "drop seed=5" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["trainer.max_steps=-5"], "trainer.max_steps must be > 0"),
        (["trainer.batch_size=0"], "trainer.batch_size must be > 0"),
        (["scheduler=temperature", "scheduler.T=0"], "scheduler.T must be > 0"),
        (
            ["tasks=multidomain16", "data_dir=/no/such/dir"],
            "/no/such/dir/fdu_mtl_16domain does not exist",
        ),
        (["scheduler=single", "scheduler.task=nope"], "scheduler.task=nope is not a task"),
        (["trainer.resume=/no/such/run"], "not an mtlrun run directory"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, cache_dir, args, message):
    tiny = [] if "tasks=multidomain16" in args else TINY  # TINY sizes the synthetic suite
    proc = mtlrun([*tiny, *args, cache_dir, f"hydra.run.dir={tmp_path / 'r'}"], cwd=tmp_path,
                  check=False)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # exactly one line
    assert proc.stderr.startswith("mtlrun: error: ") and message in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [(["trainer.max_steps=-5"], "trainer.max_steps must be > 0"),  # the config check
     (["trainer.max_step=5"], "trainer.max_step=5: "),  # the overrides check, before Hydra
     (["trainer.resume=/no/such/run"], "not an mtlrun run directory")],  # inside the run
)  # fmt: skip
def test_a_shell_sees_the_same_one_line(tmp_path, args, message):
    """The tests above call mtlrun's entry point in-process; the installed executable, in its
    own process, prints the same one line and exits 2."""
    proc = mtlrun([*TINY, *args, f"hydra.run.dir={tmp_path / 'r'}"], cwd=tmp_path, check=False,
                  process=True)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("mtlrun: error: ") and proc.stderr.count("\n") == 1
    assert message in proc.stderr


def test_malformed_data_line_is_reported_with_file_and_line(tmp_path, cache_dir):
    data = tmp_path / "data" / "fdu_mtl_16domain"
    data.mkdir(parents=True)
    (data / "books.task.train").write_text("1\tgood\n0\tbad\nbroken line\n" + "1\tok\n" * 5)
    (data / "books.task.test").write_text("1\tfine\n")
    proc = mtlrun(["tasks=multidomain16", "tasks.domains=[books]", "tasks.dev_size=2",
                   f"data_dir={tmp_path / 'data'}", cache_dir, f"hydra.run.dir={tmp_path / 'r'}"],
                  cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "books.task.train:3: expected 'label<TAB>text'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("override", ["trainer.max_step=5", "scheduler=nope"])
def test_unknown_config_options_fail_readably(tmp_path, override):
    proc = mtlrun([override, f"hydra.run.dir={tmp_path / 'r'}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"mtlrun: error: {override}: ")  # mtlrun/overrides.py


def test_works_from_any_directory_and_single_task_baseline(tmp_path, cache_dir):
    run = tmp_path / "single"
    elsewhere = tmp_path / "some" / "where"
    elsewhere.mkdir(parents=True)
    mtlrun([*TINY, cache_dir, "scheduler=single", "scheduler.task=sent1", f"hydra.run.dir={run}"],
           cwd=elsewhere)  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    assert list(results["tasks"]) == ["sent1"]
    assert set((run / "schedule.csv").read_text().splitlines()[1:]) == {
        f"{i},sent1" for i in range(60)
    }


def test_a_failing_sweep_job_does_not_lose_the_others(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    # scheduler=constant without scheduler.p fails when the run builds; the others must finish
    proc = mtlrun(["-m", "scheduler=uniform,constant,proportional", *TINY, cache_dir,
                   f"hydra.sweep.dir={sweep}"], cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 1
    assert (sweep / "0" / "results.json").is_file() and (sweep / "2" / "results.json").is_file()
    assert not (sweep / "1" / "results.json").exists()
    assert "give one probability per task" in (sweep / "1" / "error.txt").read_text()
    assert "mtlrun: error: job 1 failed" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["scheduler=uniform", "trainer.step_mode=all"], "cannot run with trainer.step_mode=all"),
        (["scheduler=uniform", "trainer.step_mode=mixed", "optimizer.layout=per_task"],
         "optimizer.layout=per_task needs one task per step"),
        (["optimizer.layout=per_task", "optimizer.scale_mode=grad"], "optimizer.force=true"),
    ],
)  # fmt: skip
def test_impossible_combinations_are_clear_errors(tmp_path, cache_dir, args, message):
    proc = mtlrun([*TINY, *args, cache_dir, f"hydra.run.dir={tmp_path / 'r'}"], cwd=tmp_path,
                  check=False)  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_mixed_step_mode_draws_a_task_per_example(tmp_path, cache_dir):
    run = tmp_path / "run"
    mtlrun([*TINY, "trainer.step_mode=mixed", cache_dir, f"hydra.run.dir={run}"], cwd=tmp_path)
    rows = (run / "schedule.csv").read_text().splitlines()[1:]
    for row in rows:
        counts = [int(part.split(":")[1]) for part in row.split(",", 1)[1].split("|")]
        assert sum(counts) == 16  # trainer.batch_size examples, split across tasks
    assert any("|" in row for row in rows)  # some batches really mix tasks


def test_one_sweep_passes_baselines_to_schedulers_that_use_them(tmp_path, cache_dir):
    # Hydra composes a multirun's primary config with the default scheduler (uniform), so
    # scheduler.baselines must be a key every scheduler schema accepts.
    sweep = tmp_path / "sweep"
    baselines = "scheduler.baselines={sent0: 0.9, sent1: 0.7}"
    mtlrun(["-m", "scheduler=uniform,jean_explicit", baselines, *TINY, cache_dir,
            f"hydra.sweep.dir={sweep}"], cwd=tmp_path)  # fmt: skip
    assert len(list(sweep.glob("*/results.json"))) == 2


@pytest.mark.slow
def test_a_terminal_run_shows_its_directory_first_and_every_evaluation(tmp_path, cache_dir):
    """On a terminal (a pty: the rich progress bar is live) the run directory comes first and
    each evaluation's per-task dev scores print as their own line, above the bar; mtlrun.log
    holds them too."""
    import os
    import pty
    import re
    import sys
    from pathlib import Path

    run = tmp_path / "run"
    exe = Path(sys.executable).with_name("mtlrun")
    args = [str(exe), *TINY, "trainer.progress=true", cache_dir, f"hydra.run.dir={run}"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: mtlrun on the pty
        os.chdir(tmp_path)
        os.execve(args[0], args, {**os.environ, "COLUMNS": "250"})  # no wrapped log lines
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the pty
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", screen) if ln.strip()]
    assert lines[0].endswith(f"run directory: {run}")
    evaluations = [
        ln for ln in lines if re.match(r"\[[\d\-: ,]+\]\[mtlrun\]\[INFO\] - step \d+/60", ln)
    ]
    assert len(evaluations) == 3 and all("sent0=" in ln and "sent1=" in ln for ln in evaluations)
    assert (run / "mtlrun.log").read_text().count("dev aggregate") == 3


@pytest.mark.slow
def test_a_run_that_fails_before_training_leaves_no_directory(tmp_path, cache_dir):
    args = [cache_dir, "tasks=multidomain16", f"data_dir={tmp_path / 'none'}",
            "hardware.num_threads=1", "trainer.progress=false"]  # fmt: skip
    proc = mtlrun(args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no 16-domain sentiment data" in proc.stderr
    assert "run directory: " in proc.stdout  # it was created, claimed, then removed
    assert not any((tmp_path / "outputs").rglob("*"))
    # a directory holding anything else is kept as it is
    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("my notes")
    mtlrun([*args, f"hydra.run.dir={kept}"], cwd=tmp_path, check=False)
    assert (kept / "notes.txt").read_text() == "my notes" and (kept / "run.json").is_file()
