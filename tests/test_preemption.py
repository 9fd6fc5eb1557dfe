"""Preemption: a stop signal (SIGTERM, SIGUSR1) checkpoints the step it arrives at and stops
the run with exit 128 + signal and the resume command; `trainer.resume=auto` continues it, and
the finished run equals an uninterrupted one: results, dev metrics and the schedule. Also for a
data-parallel run (2 processes, dropout on, so each rank's RNG must come back as it was)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, metric_lines, mtlrun, scores_of

pytestmark = pytest.mark.slow


def started_then_signalled(args: list[str], cwd: Path, run: Path, signum: int):
    """Run mtlrun in `run`; once its first evaluation is logged, send `signum`; wait."""
    exe = Path(sys.executable).with_name("mtlrun")
    proc = subprocess.Popen([str(exe), *args, f"hydra.run.dir={run}"], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    metrics, deadline = run / "metrics.jsonl", time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if metrics.exists() and metrics.read_text().strip():
            break
        time.sleep(0.02)
    proc.send_signal(signum)  # a no-op once reaped: never a signal to a reused pid
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


def comparable(run: Path) -> tuple[dict, list[dict], str]:
    """Results, dev metric lines and schedule, without wall-clock timings."""
    return scores_of(run), metric_lines(run), (run / "schedule.csv").read_text()


def torchrun(args: list[str], cwd: Path) -> None:
    """`torchrun --standalone --nproc_per_node=2 mtlrun *args`."""
    exe = Path(sys.executable)
    proc = subprocess.run([str(exe.with_name("torchrun")), "--standalone", "--nproc_per_node=2",
                           str(exe.with_name("mtlrun")), *args], cwd=cwd, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "extra, signum",
    [([], signal.SIGTERM), (["hardware=ddp", "model.dropout=0.3"], signal.SIGUSR1)],
    ids=["one-process", "ddp"],
)
def test_a_stop_signal_checkpoints_and_the_run_resumes_exactly(tmp_path, cache_dir, extra,
                                                               signum):  # fmt: skip
    """The data-parallel reference run is started by torchrun, the interrupted one by mtlrun
    itself (2 spawned ranks): both launchers give the same ranks the same seeds, so the
    resumed run must equal the torchrun one to the bit."""
    args = [*TINY, cache_dir, *extra, "trainer.max_steps=200", "trainer.eval_every=50"]
    full = tmp_path / "full"
    (torchrun if extra else mtlrun)([*args, f"hydra.run.dir={full}"], cwd=tmp_path)

    run = tmp_path / "run"
    status, err = started_then_signalled(args, tmp_path, run, signum)
    assert status == 128 + signum, err
    message = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert message.startswith(f"mtlrun: error: stopped by {name} at step "), err
    assert message.endswith(f"continue with: mtlrun trainer.resume={run}")
    assert "Traceback" not in err
    step = int(message.split(" at step ")[1].split()[0])
    assert 50 <= step < 200, "the signal must arrive mid-run"
    assert not (run / "results.json").exists()
    lines = (run / "schedule.csv").read_text().splitlines()
    assert int(lines[-1].split(",")[0]) == step - 1  # logged up to the checkpointed step

    mtlrun([*args, "trainer.resume=auto", f"hydra.run.dir={run}"], cwd=tmp_path)
    assert comparable(run) == comparable(full)
    log = (run / "mtlrun.log").read_text()
    assert f"resuming {run} at step {step}" in log
    if extra:
        assert comparable(run)[0]["world_size"] == 2
