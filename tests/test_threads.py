"""hardware.num_threads=0 (auto): threads from the CPUs this process may use, less other work's
load (mtlrun/threads.py), and the run's log says what it chose."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, mtlrun

from mtlrun import threads
from mtlrun.threads import MAX_AUTO, choose


@pytest.mark.parametrize(
    "cpus, load, machine, processes, expected",
    [
        (2, 0.1, 2, 1, 2),  # an idle 2-core machine: both cores
        (2, 1.1, 2, 1, 1),  # one competing process: one thread, not two fighting for one core
        (2, 9.0, 2, 1, 1),  # a crowded machine: never fewer than one
        (4, 32.0, 64, 1, 2),  # 4 of 64 CPUs allowed, the machine half busy: our share is 2
        (16, 0.0, 16, 2, 8),  # two processes of a data-parallel run share the CPUs
        (64, 0.0, 64, 1, MAX_AUTO),  # more cores than these models use well
    ],
)
def test_auto_threads_leave_room_for_other_work(cpus, load, machine, processes, expected):
    choice = choose(cpus, load, machine, processes)
    assert choice.threads == expected
    assert f"{cpus} CPUs allowed, load {load:.1f}" in choice.why


def test_the_allowed_cpus_honour_cgroup_quota_and_slurm(tmp_path, monkeypatch):
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert threads._cgroup_quota(quota) == 1.5
    quota.write_text("max 100000\n")
    assert threads._cgroup_quota(quota) is None
    assert threads._cgroup_quota(tmp_path / "absent") is None
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert threads.allowed_cpus() == 1


@pytest.mark.slow
def test_a_run_logs_the_threads_it_chose(tmp_path):
    run = tmp_path / "run"
    mtlrun([*TINY, "hardware.num_threads=0", "trainer.max_steps=20", f"cache_dir={tmp_path}",
            f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    line = re.search(r"torch threads: (\d+) \(auto: (\d+) CPUs allowed, load ([\d.]+) from other"
                     r" work; hardware.num_threads=N to choose\)",
                     (run / "mtlrun.log").read_text())  # fmt: skip
    assert line and 1 <= int(line.group(1)) <= int(line.group(2))


@pytest.mark.slow
def test_bench_threads_runs_and_prints_the_ratio(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_threads.py"
    proc = subprocess.run([sys.executable, str(script), "--load", "0", "--repeats", "1", *TINY[:5],
                           "trainer.max_steps=20", "trainer.eval_every=20"],
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"ratio all cores / auto: wall \d+\.\d\d, train \d+\.\d\d", proc.stdout)
    assert re.search(r"auto \(num_threads=0\) +[\d.]+ +[\d.]+ \d+\n", proc.stdout)
