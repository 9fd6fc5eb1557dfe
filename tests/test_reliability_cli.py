"""Reliability through the `mtlrun` command: a run directory is never corrupted or silently
overwritten, a diverged run is never reported as a result, a repeated task is refused, and
every failure a user can cause ends in one line on stderr."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TAGGING, TINY, kill_when, metric_lines, mtlrun, scores_of

pytestmark = pytest.mark.slow


def one_line_error(proc: subprocess.CompletedProcess, status: int = 2) -> str:
    """The failure's stderr, asserted to be exactly one `mtlrun: error:` line."""
    err = proc.stderr.strip()
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mtlrun: error: "), err
    assert "Traceback" not in proc.stdout + proc.stderr
    return err


def last_eval(run: Path) -> int:
    """The step last.pt holds, read from the checkpoint itself."""
    from mtlrun.training import checkpoint

    return checkpoint.load(run / "checkpoints" / "last.pt")["progress"]["step"]


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file of a run directory (its log excepted, which later commands may append to)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != "mtlrun.log"}  # fmt: skip


def strict_lines(path: Path) -> list[dict]:
    """metrics.jsonl parsed strictly: a bare NaN or Infinity fails."""

    def refuse(token: str):
        raise AssertionError(f"{path}: non-JSON constant {token}")

    return [json.loads(ln, parse_constant=refuse) for ln in path.read_text().splitlines()]


@pytest.fixture
def finished(tmp_path, cache_dir) -> Path:
    run = tmp_path / "run"
    mtlrun([*TINY, cache_dir, f"hydra.run.dir={run}"], cwd=tmp_path)
    return run


# --- 1. resume -------------------------------------------------------------------------------
def test_resume_into_its_own_directory_continues_the_saved_run(tmp_path, cache_dir):
    """`hydra.run.dir=D trainer.resume=D`: Hydra must not rewrite D/.hydra, and the resumed
    run ends exactly as an uninterrupted one."""
    args = [*TINY, cache_dir, "trainer.max_steps=400", "trainer.eval_every=100",
            "tasks.train_sizes=[600,120]", "seed=3"]  # fmt: skip
    full = tmp_path / "full"
    mtlrun([*args, f"hydra.run.dir={full}"], cwd=tmp_path)
    killed = tmp_path / "killed"
    kill_when(args, tmp_path, killed, killed / "checkpoints" / "last.pt")
    assert not (killed / "results.json").exists(), "the run was not cut short"
    hydra_files = {p.name: p.read_bytes() for p in (killed / ".hydra").iterdir()}

    mtlrun([f"hydra.run.dir={killed}", f"trainer.resume={killed}"], cwd=tmp_path)
    assert {p.name: p.read_bytes() for p in (killed / ".hydra").iterdir()} == hydra_files
    done, ref = scores_of(killed), scores_of(full)
    assert done["seed"] == 3
    assert done["tasks"] == ref["tasks"] and done["aggregate"] == ref["aggregate"]
    assert metric_lines(killed) == metric_lines(full)


def test_a_changed_or_missing_saved_config_is_refused(finished, tmp_path):
    (finished / "results.json").unlink()  # as if killed before the end
    config = finished / "config.yaml"
    config.write_text(config.read_text().replace("seed: 0", "seed: 7"))
    proc = mtlrun([f"trainer.resume={finished}"], cwd=tmp_path, check=False)
    assert "config.yaml was changed after the run started" in one_line_error(proc)
    config.unlink()
    proc = mtlrun([f"trainer.resume={finished}"], cwd=tmp_path, check=False)
    assert "config.yaml is missing" in one_line_error(proc)


def test_resuming_a_finished_run_changes_nothing(finished, tmp_path):
    before = snapshot(finished)
    proc = mtlrun([f"trainer.resume={finished}", "seed=9"], cwd=tmp_path, check=False)
    assert "drop seed=9" in one_line_error(proc)
    proc = mtlrun([f"trainer.resume={finished}"], cwd=tmp_path, check=False)
    assert "has finished" in one_line_error(proc)
    assert snapshot(finished) == before


def test_a_run_without_checkpoints_is_not_silently_restarted(tmp_path, cache_dir):
    run = tmp_path / "run"
    mtlrun([*TINY, cache_dir, "trainer.checkpoints=false", f"hydra.run.dir={run}"], cwd=tmp_path)
    (run / "results.json").unlink()  # as if killed before the end
    proc = mtlrun([f"trainer.resume={run}"], cwd=tmp_path, check=False)
    assert "trainer.checkpoints=false, so it cannot be resumed" in one_line_error(proc)


# --- 4. a run directory has one owner ------------------------------------------------------
def test_a_new_run_never_overwrites_another_silently(finished, tmp_path, cache_dir):
    before = snapshot(finished)
    proc = mtlrun([*TINY, cache_dir, "seed=4", f"hydra.run.dir={finished}"], cwd=tmp_path,
                  check=False)  # fmt: skip
    assert "already holds a run" in one_line_error(proc)
    assert snapshot(finished) == before  # .hydra/ included: Hydra did not rewrite it

    mtlrun([*TINY, cache_dir, "seed=4", "trainer.overwrite=true", f"hydra.run.dir={finished}"],
           cwd=tmp_path)  # fmt: skip
    assert json.loads((finished / "results.json").read_text())["seed"] == 4
    assert "seed: 4" in (finished / "config.yaml").read_text()
    assert "seed=4" in (finished / ".hydra" / "overrides.yaml").read_text()


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path, cache_dir):
    run = tmp_path / "run"
    args = [*TINY, cache_dir, "trainer.max_steps=100000", "trainer.eval_every=50",
            f"hydra.run.dir={run}"]  # fmt: skip
    exe = Path(sys.executable).with_name("mtlrun")

    # Ctrl-C's default action, as in a terminal: a shell's background job inherits SIGINT
    # ignored, and so would this process (and run on past the test) if pytest was one
    def default_ctrl_c() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    first = subprocess.Popen([str(exe), *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=default_ctrl_c)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        for second in ([f"trainer.resume={run}"], [*args[:-1], f"hydra.run.dir={run}"]):
            proc = mtlrun(second, cwd=tmp_path, check=False)
            err = one_line_error(proc)
            assert f"is in use by pid {first.pid} on " in err or "already holds a run" in err
        assert first.poll() is None, "the first run must not be disturbed"
    finally:
        first.send_signal(signal.SIGINT)
        try:
            _, stderr = first.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            first.kill()  # never leave it training when the test fails
            first.communicate()
            raise
    # Ctrl-C: one line telling how to continue, status 130, and a resumable run
    assert first.returncode == 130 and stderr.strip().splitlines() == [
        f"mtlrun: error: interrupted (checkpoint at step {last_eval(run)}); continue with: "
        f"mtlrun trainer.resume={run}"
    ]
    steps = [int(r.split(",")[0]) for r in (run / "schedule.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps))  # one writer: no repeated or out-of-order steps


def test_temp_files_of_an_interrupted_write_are_removed(tmp_path, cache_dir):
    args = [*TINY, cache_dir, "trainer.max_steps=400", "trainer.eval_every=100"]
    run = tmp_path / "run"
    kill_when(args, tmp_path, run, run / "checkpoints" / "last.pt")
    stale = run / "checkpoints" / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    last = run / "checkpoints" / "last.pt"
    whole = last.read_bytes()
    last.write_bytes(whole[: len(whole) // 2])  # as a disk full during a copy would leave it
    proc = mtlrun([f"trainer.resume={run}"], cwd=tmp_path, check=False)
    assert f"{last}: not an mtlrun checkpoint (truncated" in one_line_error(proc)
    last.write_bytes(whole)
    mtlrun([f"trainer.resume={run}"], cwd=tmp_path)
    assert not stale.exists() and (run / "results.json").is_file()


def test_a_damaged_or_foreign_policy_file_is_one_line(tmp_path, cache_dir):
    """scheduler.policy names a file someone shared: it is never unpickled, and a file that is
    not a QLS policy is refused in one line."""
    import torch

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    crafted = tmp_path / "crafted.pt"
    torch.save({"format": "mtlrun.qls_policy/1", "q": Payload()}, crafted)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(os.urandom(4096))
    for policy, reason in ((crafted, "never loaded for safety"), (damaged, "not a torch file")):
        run = tmp_path / policy.stem
        args = [*TINY, cache_dir, "scheduler=qls", f"scheduler.policy={policy}"]
        proc = mtlrun([*args, f"hydra.run.dir={run}"], cwd=tmp_path, check=False)
        err = one_line_error(proc)
        assert err.startswith(f"mtlrun: error: scheduler.policy: {policy}: not a QLS policy") and (
            reason in err
        )
    assert not marker.exists()


# --- 2. divergence -------------------------------------------------------------------------
def test_a_diverged_run_stops_with_one_line_and_no_results(tmp_path, cache_dir):
    run = tmp_path / "run"
    proc = mtlrun([*TINY, cache_dir, "optimizer.lr=inf", f"hydra.run.dir={run}"], cwd=tmp_path,
                  check=False)  # fmt: skip
    err = one_line_error(proc)
    assert "training diverged at step 1 (task " in err and "is nan" in err
    assert not (run / "results.json").exists() and not (run / "results.md").exists()
    strict_lines(run / "metrics.jsonl")


def test_skipping_non_finite_updates_is_counted(tmp_path, cache_dir):
    """L^q with q = 100: the gradient q L^(q-1) dL overflows float32's norm at the initial
    losses (the tagging task's, about 1.9), on every step; stop mode stops at the first, skip
    mode drops and counts them."""
    stop = tmp_path / "stop"
    args = [*TINY, TAGGING, cache_dir, "scheduler=loss_exponentiation", "scheduler.q=100"]
    proc = mtlrun([*args, f"hydra.run.dir={stop}"], cwd=tmp_path, check=False)
    assert (
        "training diverged at step 0 (task sent0, sent1, entities): the gradient norm is "
        "inf" in one_line_error(proc)
    )
    skip = tmp_path / "skip"
    proc = mtlrun([*args, "trainer.nonfinite=skip", f"hydra.run.dir={skip}"], cwd=tmp_path)
    results = json.loads((skip / "results.json").read_text())
    assert results["skipped_steps"] == 60
    assert "skipping the update (trainer.nonfinite=skip" in proc.stdout  # the log
    strict_lines(skip / "metrics.jsonl")


def test_a_blown_up_dev_loss_is_reported(tmp_path, cache_dir):
    run = tmp_path / "run"
    proc = mtlrun([*TINY, cache_dir, "optimizer.lr=1e6", f"hydra.run.dir={run}"], cwd=tmp_path,
                  check=False)  # fmt: skip
    if proc.returncode == 0:
        results = json.loads((run / "results.json").read_text())
        assert results["blown_up"], "a dev loss of ~1e6 must be reported"
        assert "the model has diverged" in proc.stdout  # the log
    else:  # overflowed on the way: the guard stopped it
        assert "training diverged" in one_line_error(proc)


# --- 3. task identity ----------------------------------------------------------------------
def test_a_repeated_task_is_refused(tmp_path, cache_dir):
    data = tmp_path / "data" / "fdu_mtl_16domain"
    data.mkdir(parents=True)
    (data / "books.task.train").write_text("1\tgood book\n0\tbad book\n" * 10)
    (data / "books.task.test").write_text("1\tfine\n0\tdull\n")
    proc = mtlrun(["tasks=multidomain16", "tasks.domains=[books,books]", "tasks.dev_size=4",
                   f"data_dir={tmp_path / 'data'}", cache_dir, f"hydra.run.dir={tmp_path / 'r'}"],
                  cwd=tmp_path, check=False)  # fmt: skip
    assert "task books is listed twice" in one_line_error(proc)


# --- 5. I/O failures end in one line ------------------------------------------------------
def test_an_unwritable_checkpoint_directory_fails_before_training(tmp_path, cache_dir):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("a file where the directory should be")
    proc = mtlrun([*TINY, cache_dir, f"hydra.run.dir={run}"], cwd=tmp_path, check=False)
    assert f"{run / 'checkpoints'}: not writable" in one_line_error(proc)
    assert not (run / "metrics.jsonl").exists()


def test_an_unwritable_output_directory_is_one_line(tmp_path, cache_dir):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = mtlrun([*TINY, cache_dir, f"hydra.run.dir={blocker / 'run'}"], cwd=tmp_path,
                  check=False)  # fmt: skip
    assert str(blocker) in one_line_error(proc)


def test_a_full_disk_during_a_checkpoint_is_one_line(tmp_path, cache_dir):
    """A real write failure (the file-size limit: EFBIG, as ENOSPC would be) while saving."""
    mtlrun([*TINY, cache_dir, f"hydra.run.dir={tmp_path / 'warm'}"], cwd=tmp_path)  # the cache
    run = tmp_path / "run"
    limit = 20_000  # bytes: every log fits, a checkpoint does not

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    exe = Path(sys.executable).with_name("mtlrun")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    args = [str(exe), *TINY, cache_dir, f"hydra.run.dir={run}"]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                          preexec_fn=small_files)  # fmt: skip
    err = one_line_error(proc)
    assert "cannot write" in err and "File too large" in err and ".pt" in err
    assert not list(run.rglob("*.tmp"))
