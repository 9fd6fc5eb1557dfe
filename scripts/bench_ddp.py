"""Data-parallel scaling: one `mtlrun` run on 1 process against the same run on N processes.

Every run is a separate `mtlrun` command with the same config, seed and global batch
(`trainer.batch_size`, split into N shards of B/N examples by `hardware=ddp`), `trainer.max_steps`
steps and one evaluation, at the end (`trainer.eval_every` = max_steps). The time is
results.json's `timing.train_seconds`: the training loop's wall time (rank 0's clock), which
leaves out start-up (imports, data, process spawn, process-group set-up) and the final
evaluation and test (the trainer books an evaluation's time to the interval after it; with one
evaluation at the end there is none). Printed beside it: the command's wall time (start-up
included) and `load`, the highest 1-minute load average seen at the end of the setting's runs;
a load well above the setting's processes means other work competed for the cores, and a
data-parallel step waits for its slowest rank. steps/s = max_steps / train_seconds, the median
over `--repeats` runs (the settings take turns, so a change in the machine's load hits each);
speed-up = steps/s(N) / steps/s(1); scaling efficiency = speed-up / N, N being the cores
(processes × threads) or GPUs the setting uses.

On CPU, the fair comparison is N processes with one thread each against one process with one
thread (`hardware.num_threads=1` per process, which `hardware=ddp` sets): N processes on N
cores use N cores, and the single-thread baseline is the work one of those cores does alone.
Against one process with N threads (`--threads-baseline` adds that row) the question is a
different one: whether data parallelism beats intra-op threading on the same cores. On a
2-core machine nothing else may run during the benchmark: with a third busy process, one rank
is descheduled at times and every step waits for it.

What limits scaling here: each rank still runs the LSTM's time steps one after another, only on
B/N rows, so a small batch or hidden size leaves fixed per-time-step and per-step costs (Python,
kernel launches, the all-reduce's latency) that do not shrink with N; the gradient all-reduce
itself moves every parameter each step (gloo on CPU), the word embeddings included (a 50,000 x
300 table is 60 MB a step). A larger hidden size and batch make the divided work dominate, e.g.

    python scripts/bench_ddp.py --batch-size 64 model.hidden_size=256 model.embeddings.dim=128
    python scripts/bench_ddp.py --devices 1 --steps 20          # the script itself, 1 process
    python scripts/bench_ddp.py --gpu                           # 1 vs all visible GPUs (nccl)

`--gpu` compares `hardware=gpu` (1 GPU) with `hardware=ddp hardware.device=cuda
hardware.devices=N` for N = torch.cuda.device_count() (> 1 needed). A run whose results.json
says it trained on a different number of processes (`world_size`) than asked is flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Setting:
    label: str  # the row's name
    processes: int
    threads: int | None  # per process on CPU; None on GPU
    overrides: tuple[str, ...]

    @property
    def units(self) -> int:
        """What the setting uses: cores (processes x threads) on CPU, GPUs on GPU."""
        return self.processes * (self.threads or 1)


def settings(devices: list[int], gpu: bool, threads_baseline: bool) -> list[Setting]:
    """What to run: plain single-process baselines, then `hardware=ddp` with N processes."""
    out = []
    for n in devices:
        if gpu:
            hw = ("hardware=gpu",) if n == 1 else ("hardware=ddp", "hardware.device=cuda",
                                                   f"hardware.devices={n}")  # fmt: skip
            out.append(Setting(f"{n} GPU{'s' if n > 1 else ''}", n, None, hw))
        elif n == 1:
            out.append(Setting("1 process x 1 thread", 1, 1,
                               ("hardware=cpu", "hardware.num_threads=1")))  # fmt: skip
        else:
            out.append(Setting(f"{n} processes x 1 thread", n, 1,
                               ("hardware=ddp", f"hardware.devices={n}",
                                "hardware.num_threads=1")))  # fmt: skip
    if threads_baseline and not gpu:
        for n in devices:
            if n > 1:
                out.append(Setting(f"1 process x {n} threads", 1, n,
                                   ("hardware=cpu", f"hardware.num_threads={n}")))  # fmt: skip
    return out


def mtlrun_command() -> list[str]:
    exe = Path(sys.executable).parent / "mtlrun"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mtlrun")
    if found is None:
        raise SystemExit("bench_ddp: the mtlrun command is not installed (pip install -e .)")
    return [found]


def run_once(setting: Setting, steps: int, batch_size: int, overrides: list[str],
             run_dir: Path) -> dict:  # fmt: skip
    """One `mtlrun` run; its results.json figures and the command's wall time."""
    command = [*mtlrun_command(), *setting.overrides, f"trainer.max_steps={steps}",
               f"trainer.eval_every={steps}", f"trainer.batch_size={batch_size}",
               "trainer.progress=false", "trainer.checkpoints=false",
               f"hydra.run.dir={run_dir}", *overrides]  # fmt: skip
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"bench_ddp: {setting.label} failed (exit {done.returncode}):\n"
                         f"  {' '.join(command)}\n{tail}")  # fmt: skip
    results = json.loads((run_dir / "results.json").read_text())
    return {"train_seconds": float(results["timing"]["train_seconds"]),
            "steps": int(results["steps"]), "world_size": results.get("world_size"),
            "wall": wall, "load": os.getloadavg()[0]}  # fmt: skip


def scaling(rows: list[dict]) -> list[dict]:
    """steps/s, speed-up over the first row and efficiency (speed-up / units) per row; each
    row has label, units (cores or GPUs), steps and train_seconds (a list: the repeats)."""
    out = []
    base = None
    for r in rows:
        seconds = statistics.median(r["train_seconds"])
        rate = r["steps"] / seconds
        base = base or rate
        speedup = rate / base
        out.append({**r, "seconds": seconds, "rate": rate, "speedup": speedup,
                    "efficiency": speedup / r["units"]})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default=None,
                        help="process counts, comma-separated; the first is the baseline "
                             "(default 1,2 on CPU; 1,<GPUs> with --gpu)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=200, help="trainer.max_steps per run")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="the global batch (trainer.batch_size), the same for every run",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting (median)")
    parser.add_argument("--gpu", action="store_true", help="1 GPU vs N GPUs (nccl)")
    parser.add_argument(
        "--threads-baseline", action="store_true", help="CPU: also one process with N threads"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides for every run (model.hidden_size=256, tasks=...)",
    )
    args = parser.parse_args()

    if args.gpu:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus < 2 and args.devices is None:
            raise SystemExit(f"bench_ddp: --gpu needs more than one GPU (this machine: {gpus})")
        default = f"1,{gpus}"
    else:
        default = "1,2"
    devices = [int(n) for n in (args.devices or default).split(",")]
    plan = settings(devices, args.gpu, args.threads_baseline)
    rows = [
        {"label": s.label, "processes": s.processes, "units": s.units, "train_seconds": [],
         "wall": [], "load": [], "world_size": set(), "steps": args.steps}
        for s in plan
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):  # settings interleaved: drifting load hits all alike
            for i, (s, row) in enumerate(zip(plan, rows, strict=True)):
                got = run_once(s, args.steps, args.batch_size, args.overrides,
                               Path(tmp) / f"{i}-{r}")  # fmt: skip
                row["train_seconds"].append(got["train_seconds"])
                row["wall"].append(got["wall"])
                row["load"].append(got["load"])
                row["world_size"].add(got["world_size"])
                row["steps"] = got["steps"]

    print(f"global batch {args.batch_size}, {args.steps} steps per run, one evaluation (at the "
          f"end, outside train_seconds), median of {args.repeats} run(s) per setting; "
          f"overrides: {' '.join(args.overrides) or '(none)'}")  # fmt: skip
    print("speed-up and efficiency against the first row; efficiency = speed-up / cores or GPUs "
          "used; load = 1-min load average after the runs")  # fmt: skip
    print(f"{'setting':<26}{'train s':>9}{'steps/s':>9}{'speed-up':>10}{'efficiency':>12}"
          f"{'wall s':>8}{'load':>6}")  # fmt: skip
    for r in scaling(rows):
        flag = ""
        sizes = r["world_size"] - {None}
        if sizes and sizes != {r["processes"]}:
            flag = f"  trained on {sorted(sizes)} process(es), not {r['processes']}"
        elif not sizes and r["processes"] > 1:
            flag = "  (results.json does not say how many processes trained)"
        print(
            f"{r['label']:<26}{r['seconds']:>9.2f}{r['rate']:>9.1f}{r['speedup']:>10.2f}"
            f"{r['efficiency']:>12.2f}{statistics.median(r['wall']):>8.1f}"
            f"{max(r['load']):>6.1f}{flag}"
        )


if __name__ == "__main__":
    main()
