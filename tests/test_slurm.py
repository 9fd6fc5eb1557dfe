"""SLURM submission on a real (one-node) Slurm: `mtlrun -m hydra/launcher=slurm` runs a 2×2
sweep as a job array; one job is preempted mid-training, requeued and continues from its
checkpoint; the sweep's tables equal those of the same sweep run locally.

CI starts the cluster with `.ci/slurm-up`; elsewhere the test is skipped unless one answers."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY, mtlrun
from test_preemption import comparable  # results, dev metrics and schedule, without timings

from mtlrun.report.cli import main as report_main

pytestmark = pytest.mark.slow

MAX_STEPS = 200
# TINY, long enough to be interrupted between its first evaluation and its end (about 2 s of
# training); one CPU per job, so the two-core CI machine runs two jobs at a time
SWEEP = ["-m", "scheduler=uniform,proportional", "seed=1,2", *TINY,
         f"trainer.max_steps={MAX_STEPS}", "trainer.eval_every=50",
         "hardware.cpus_per_task=1"]  # fmt: skip
DEADLINE_S = 300  # the whole Slurm sweep, requeue included (about 45 s on 2 idle cores)


@pytest.fixture
def slurm() -> None:
    """Skip unless sbatch is here and a Slurm controller answers."""
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher",
        reason="needs hydra-submitit-launcher: pip install -e '.[slurm]'",
    )
    if shutil.which("sbatch") is None:
        pytest.skip("no Slurm here: sbatch is not on PATH (start one with: sudo .ci/slurm-up)")
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
        answer = ping.stdout.strip() or ping.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        answer = str(e)
    if "is UP" not in answer:
        pytest.skip(f"no Slurm controller answers ({answer!r}); start one with: sudo .ci/slurm-up")


def wait_for(condition, what: str, proc: subprocess.Popen, log: Path,
             timeout: float = DEADLINE_S) -> None:  # fmt: skip
    """Poll `condition` while the sweep `proc` runs."""
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}:\n{tail(log)}")
        if time.time() > deadline:
            raise AssertionError(f"no {what} after {timeout} s:\n{tail(log)}\n{squeue()}")
        time.sleep(0.05)


def tail(log: Path, n: int = 40) -> str:
    """The sweep's output without submitit's warnings that accounting is off."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines()
             if "sacct" not in ln and "accounting storage is disabled" not in ln]  # fmt: skip
    return "\n".join(lines[-n:])


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def squeue() -> str:
    return subprocess.run(["squeue"], capture_output=True, text=True).stdout


def slurm_job_id(job_dir: Path) -> str:
    """The Slurm id of a sweep job (`<array id>_<index>`), as submitit gave it to Hydra."""
    hydra = yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text())
    return str(hydra["hydra"]["job"]["id"])


def report_table(sweep: Path, out: Path) -> list[str]:
    """The rows of `mtlrun-report <sweep>`'s Markdown table."""
    report_main([str(sweep), "--out", str(out)])  # exits only on an error
    return [ln for ln in (out / "report.md").read_text().splitlines() if ln.startswith("|")]


def test_a_slurm_sweep_with_a_preempted_job_equals_the_local_sweep(slurm, tmp_path, cache_dir):
    sweep, log = tmp_path / "slurm", tmp_path / "slurm.log"
    exe = Path(sys.executable).with_name("mtlrun")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    cmd = [str(exe), *SWEEP, "hydra/launcher=slurm", cache_dir, f"hydra.sweep.dir={sweep}"]
    # with the submitit launcher, `mtlrun -m` submits a job array and blocks until it is done
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    job = sweep / "0"
    try:
        # Preempt job 0 in mid-training: after its first evaluation, before its results.
        metrics = job / "metrics.jsonl"
        wait_for(lambda: metrics.is_file() and metrics.stat().st_size > 0,
                 "first evaluation of job 0", proc, log)  # fmt: skip
        assert not (job / "results.json").exists(), "job 0 ended before it could be interrupted"
        job_id = slurm_job_id(job)
        state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                               text=True).stdout.strip()  # fmt: skip
        assert state == "RUNNING", f"job {job_id}: {state!r}\n{squeue()}"
        # The interruption is SIGUSR2 through Slurm: what a submitit job gets before its time
        # limit (sbatch --signal=USR2@signal_delay_s) and, where the cluster sets
        # PreemptParameters=send_user_signal, when it is preempted. mtlrun checkpoints at the
        # next step and hands the signal to submitit, which requeues the job (scontrol requeue)
        # and exits without a result, so `mtlrun -m` waits for the rerun. Not `scontrol requeue`
        # from outside: its SIGTERM is ignored by submitit, mtlrun then stops the run itself,
        # and `mtlrun -m` reports the job failed while Slurm reruns it on its own.
        scancel = subprocess.Popen(["scancel", "--signal=USR2", job_id])
        submitit_log = sweep / ".submitit" / job_id / f"{job_id}_0_log.out"
        try:
            wait_for(lambda: "Caught signal SIGUSR2" in read(submitit_log),
                     f"SIGUSR2 in {submitit_log}", proc, log, timeout=60)  # fmt: skip
        finally:  # scancel retries (and would signal the rerun) when the requeue races it
            scancel.kill()
            scancel.wait()
        proc.wait(timeout=DEADLINE_S)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:  # never leave jobs behind
        arrays = {p.name.split("_")[0] for p in (sweep / ".submitit").glob("*")}
        if arrays and proc.returncode != 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(["scancel", *sorted(arrays)], capture_output=True, timeout=30)
    assert proc.returncode == 0, tail(log)

    # Slurm ran job 0 twice: submitit requeued it, and mtlrun continued from its checkpoint
    started = submitit_log.read_text()
    assert "Requeued job" in started, started
    assert started.count("Starting with JobEnvironment") == 2, started
    resumed = re.findall(r"resuming \S+ at step (\d+)", (job / "mtlrun.log").read_text())
    assert len(resumed) == 1 and 0 < int(resumed[0]) < MAX_STEPS, (job / "mtlrun.log").read_text()
    for d in (sweep / str(j) for j in range(4)):
        assert (d / "results.json").is_file(), f"{d} has no results"
        assert not (d / "error.txt").exists(), f"{d}: {(d / 'error.txt').read_text()}"

    # the same sweep, run locally one job after another, gives the same results and tables
    local = tmp_path / "local"
    mtlrun([*SWEEP, cache_dir, f"hydra.sweep.dir={local}"], cwd=tmp_path)
    for j in range(4):
        got, want = comparable(sweep / str(j)), comparable(local / str(j))
        assert (got[0]["scheduler"], got[0]["seed"]) == (want[0]["scheduler"], want[0]["seed"])
        assert got[0]["tasks"] == want[0]["tasks"], f"job {j}: test scores differ"
        assert got == want, f"job {j}: results, metrics.jsonl or schedule.csv differ"
    table = report_table(sweep, tmp_path / "report_slurm")
    assert len(table) == 5  # header, rule, 2 tasks, average
    assert table == report_table(local, tmp_path / "report_local")


def test_a_data_parallel_job_runs_its_ranks_as_slurm_tasks(slurm, tmp_path, cache_dir):
    """`hardware=ddp hardware.devices=2` under the SLURM launcher: one job of 2 tasks, each a
    rank that reads its place from Slurm's environment (what a multi-node job does on every
    node), trains the same run as 2 ranks spawned locally: the same results to the bit."""
    args = ["-m", "seed=1", *TINY, "hardware=ddp", "hardware.devices=2",
            "hardware.cpus_per_task=1", cache_dir]  # fmt: skip
    sweep, local = tmp_path / "slurm", tmp_path / "local"
    mtlrun([*args, "hydra/launcher=slurm", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    mtlrun([*args, f"hydra.sweep.dir={local}"], cwd=tmp_path)
    got, want = comparable(sweep / "0"), comparable(local / "0")
    assert got[0]["world_size"] == 2
    assert got == want
    job_id = slurm_job_id(sweep / "0")
    logs = sorted((sweep / ".submitit" / job_id).glob("*_log.out"))
    assert len(logs) == 2, logs  # two Slurm tasks ran the job: ranks 0 and 1
