"""How many torch threads a CPU process uses when `hardware.num_threads=0` (auto).

torch's own default is one thread per core of the machine. On a machine other work shares (a
laptop with a browser open, a SLURM node, two runs side by side) its threads spin waiting for
cores they do not get, and a run becomes several times slower than with fewer threads
(scripts/bench_threads.py measures it). Auto takes the CPUs this process may use (its affinity,
its cgroup's CPU quota, SLURM's allocation), subtracts the load other processes put on the
machine (the 1-minute load average, scaled to our share of the machine), and splits what is
left between the run's processes; at least 1, at most MAX_AUTO, since the models here gain
little beyond that and a shared machine loses much."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_AUTO = 8


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    why: str  # for the run's header line


def allowed_cpus() -> int:
    """CPUs this process may run on: affinity, cgroup v2 quota and SLURM_CPUS_PER_TASK."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, round(quota)))
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cpus = min(cpus, int(slurm))
    return max(1, cpus)


def _cgroup_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """The cgroup v2 CPU limit in CPUs ("200000 100000" -> 2.0); None when unlimited or absent."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def other_load() -> float:
    """Runnable processes on the machine over the last minute (0 where unknown)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return 0.0


def choose(cpus: int, load: float, machine_cpus: int, processes: int = 1) -> ThreadChoice:
    """Threads per process for `processes` processes on `cpus` CPUs, `load` of the machine's
    `machine_cpus` busy with other work."""
    busy = min(cpus, load * cpus / max(machine_cpus, cpus))  # our share of the machine's load
    free = max(1, int(cpus - busy + 0.5))
    threads = max(1, min(MAX_AUTO, free // processes))
    why = (f"auto: {cpus} CPUs allowed, load {load:.1f} from other work"
           + (f", {processes} processes" if processes > 1 else ""))  # fmt: skip
    return ThreadChoice(threads, why)


def auto_threads(processes: int = 1) -> ThreadChoice:
    return choose(allowed_cpus(), other_load(), os.cpu_count() or 1, processes)
