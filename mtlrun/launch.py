"""Starting the processes of a data-parallel run (training/runtime.py says how they train).

Three ways in, one run and one run directory each:
- `mtlrun hardware=ddp hardware.devices=N`: this process spawns N ranks (`spawn`) and waits;
- `torchrun --nproc_per_node=N -m mtlrun hardware.devices=N hydra.run.dir=D`: every process
  is a rank (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT);
- SLURM (`hydra/launcher=slurm`): `hardware.devices` tasks on each of `hardware.nodes` nodes,
  every task a rank (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, SLURM_STEP_NODELIST).

gloo on CPU, nccl on CUDA (one GPU per rank: cuda:LOCAL_RANK), unless hardware.backend says.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from mtlrun.errors import ConfigError, MtlrunError, Preempted
from mtlrun.training.runtime import Runtime

log = logging.getLogger("mtlrun")

TIMEOUT = timedelta(minutes=30)  # a collective waits this long for a lost rank


@dataclass(frozen=True)
class World:
    """How the processes of a run were started: this one's place among them."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str  # "torchrun", "slurm" or "spawn"


def external_world() -> World | None:
    """The world torchrun or SLURM started this process in; None for a plain process."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                     env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 29500)),
                     "torchrun")  # fmt: skip
    if int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1 and "SLURM_PROCID" in env:
        job = int(env.get("SLURM_JOB_ID", "0"))
        return World(int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"]),
                     int(env.get("SLURM_LOCALID", 0)),
                     _first_host(env.get("SLURM_STEP_NODELIST") or env["SLURM_JOB_NODELIST"]),
                     20_000 + job % 20_000, "slurm")  # fmt: skip
    return None


def env_rank() -> int:
    """This process's rank as its launcher set it (0 for a plain process): read before Hydra
    writes anything, so only rank 0 writes the run directory's .hydra/."""
    world = external_world()
    return world.rank if world else 0


def _first_host(nodelist: str) -> str:
    """The first host of a SLURM node list ("node[3-5,7],gpu1" -> node3)."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, check=True, timeout=30).stdout.split()  # fmt: skip
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    m = re.match(r"([^,\[]+)(?:\[(\d+))?", nodelist)
    return m.group(1) + (m.group(2) or "") if m else nodelist


def check_world(world: World, hw: Any) -> None:
    if world.world_size != hw.world_size:
        raise ConfigError(
            f"{world.launcher} started {world.world_size} processes, but hardware.devices × "
            f"hardware.nodes = {hw.world_size}: set hardware.devices (per node) to match"
        )


def init(world: World, hw: Any) -> Runtime:
    """Join the process group of `world`; the rank's device (cuda:local_rank on a GPU)."""
    device = torch.device(hw.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"hardware.device={hw.device} but this torch has no usable CUDA "
                              "device; use hardware.device=cpu")  # fmt: skip
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"rank {world.rank} needs GPU {world.local_rank}, but this node "
                              f"has {torch.cuda.device_count()}")  # fmt: skip
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    backend = hw.backend or ("nccl" if device.type == "cuda" else "gloo")
    dist.init_process_group(
        backend, init_method=f"tcp://{world.master_addr}:{world.master_port}",
        rank=world.rank, world_size=world.world_size, timeout=TIMEOUT,
        **({"device_id": device} if backend == "nccl" else {}),
    )  # fmt: skip
    if world.rank > 0:
        quiet_logging(world.rank)
    return Runtime(world.rank, world.world_size, world.local_rank, device)


def quiet_logging(rank: int) -> None:
    """Ranks other than 0 log only errors, to stderr, marked with their rank: rank 0 speaks
    for the run (its log file, its progress display)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[rank {rank}] %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.ERROR)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# --- spawning the ranks of `hardware=ddp hardware.devices=N` ---------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)  # preemption: every rank stops


def spawn(fn: Callable[..., Any], args: tuple, hw: Any, logging_config: dict | None) -> None:
    """Run `fn(*args, runtime=...)` in hw.devices fresh processes, one per rank, and wait. When a
    rank fails, the others are stopped; a user error (MtlrunError) is raised here as it was
    raised there (the rank's one-line message), anything else as a RuntimeError."""
    import torch.multiprocessing as mp

    world = hw.devices
    queue = mp.get_context("spawn").SimpleQueue()
    port = free_port()
    context = mp.start_processes(
        _rank_main, args=(fn, args, hw, world, port, logging_config, queue), nprocs=world,
        join=False, start_method="spawn",
    )  # fmt: skip
    previous = {s: signal.getsignal(s) for s in FORWARDED}
    received: list[int] = []

    def forward(signum, frame):  # preemption: every rank stops at its next step boundary
        received.append(signum)
        for p in context.processes:
            if p.is_alive():
                os.kill(p.pid, signum)

    for s in FORWARDED:
        signal.signal(s, forward)
    try:
        while not context.join():
            pass
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
        failure = queue.get() if not queue.empty() else None
        if failure is None and isinstance(e, mp.ProcessExitedException):  # killed, e.g. by OOM
            raise MtlrunError(
                f"data-parallel rank {e.error_index} died ({e}); the other ranks were stopped, "
                "and the last checkpoint is kept"
            ) from None
        if failure is None:  # a bug: the rank's traceback
            raise RuntimeError(f"a data-parallel rank failed: {e}") from None
        handler = previous.get(received[0]) if received else None
        if isinstance(failure, Preempted) and callable(handler):
            handler(received[0], None)  # e.g. submitit's: requeue the job
        raise failure from None
    except KeyboardInterrupt:  # the ranks ignore Ctrl-C: stop them at a step boundary
        forward(signal.SIGTERM, None)
        for p in context.processes:
            p.join(timeout=120)
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in context.processes:
            if p.is_alive():
                p.terminate()


def _rank_main(local_rank: int, fn, args, hw, world: int, port: int, logging_config, queue):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into a clean stop
    if logging_config and local_rank == 0:
        logging.config.dictConfig(logging_config)  # Hydra's: the run's console and log file
    runtime = init(World(local_rank, world, local_rank, "127.0.0.1", port, "spawn"), hw)
    try:
        fn(*args, runtime=runtime)
    except MtlrunError as e:
        queue.put(e)  # every rank fails the same way; the parent reports the first
        raise SystemExit(2) from None
    finally:
        shutdown()
