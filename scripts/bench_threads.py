"""The thread default on a shared machine: the default experiment (`mtlrun` with no overrides but
the run directory) next to a competing CPU load, with `hardware.num_threads=0` (auto,
mtlrun/threads.py) against `hardware.num_threads=<all cores>` (torch's own default, what 0
meant before), and on an idle machine for reference.

The competing load is `--load` processes that spin on the CPU for the whole benchmark (a
browser tab, another run, a neighbour on a SLURM node). Each setting runs `--repeats` times,
the settings taking turns; printed: each setting's median wall time of the whole command and of
its training loop (results.json timing.train_seconds), how many threads auto chose (from the
run's log), and the ratio all-cores / auto (> 1: auto is faster).

    python scripts/bench_threads.py                  # 1 competing process, 3 repeats
    python scripts/bench_threads.py --load 0         # an idle machine
    python scripts/bench_threads.py --load 1 --repeats 1 trainer.max_steps=200
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def spin() -> None:
    while True:
        pass


def run(overrides: list[str], directory: Path) -> tuple[float, float, str]:
    exe = Path(sys.executable).with_name("mtlrun")
    start = time.perf_counter()
    subprocess.run([str(exe), "trainer.progress=false", "trainer.plots=false", *overrides,
                    f"hydra.run.dir={directory}"], check=True, capture_output=True)  # fmt: skip
    wall = time.perf_counter() - start
    train = json.loads((directory / "results.json").read_text())["timing"]["train_seconds"]
    chosen = re.search(r"torch threads: (\d+)", (directory / "mtlrun.log").read_text())
    return wall, train, chosen.group(1) if chosen else "as set"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=int, default=1, help="competing busy processes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="extra mtlrun overrides")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    settings = {"auto (num_threads=0)": ["hardware.num_threads=0"],
                f"all cores (num_threads={cores})": [f"hardware.num_threads={cores}"]}  # fmt: skip
    hogs = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.load)]
    for h in hogs:
        h.start()
    times: dict[str, list[tuple[float, float, str]]] = {name: [] for name in settings}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            time.sleep(5 if args.load else 0)  # let the load average see the competition
            for r in range(args.repeats):
                for name, overrides in settings.items():
                    out = Path(tmp) / f"{len(times[name])}-{name.split()[0]}"
                    times[name].append(run([*overrides, *args.overrides, f"cache_dir={tmp}/c"],
                                           out))  # fmt: skip
                    print(f"round {r + 1}: {name}: {times[name][-1][0]:.1f} s", flush=True)
    finally:
        for h in hogs:
            h.kill()
    print(f"\n{cores} cores, {args.load} competing busy process(es), {args.repeats} repeats")
    print(f"{'setting':<28} {'wall s':>8} {'train s':>8} threads")
    med = {}
    for name, rows in times.items():
        med[name] = (statistics.median(w for w, _, _ in rows),
                     statistics.median(t for _, t, _ in rows))  # fmt: skip
        chosen = ",".join(sorted({c for _, _, c in rows}))
        print(f"{name:<28} {med[name][0]:>8.1f} {med[name][1]:>8.1f} {chosen}")
    auto, every = med.values()
    print(f"ratio all cores / auto: wall {every[0] / auto[0]:.2f}, train {every[1] / auto[1]:.2f}")


if __name__ == "__main__":
    main()
