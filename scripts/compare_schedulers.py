"""Compare schedulers (or variants of one) on one suite over seeds, as separate `mtlrun` runs,
and print one row per setup: mean ± sd test score, the share of training each task got (the
watched task's, the largest), how many tasks got at least 2 % of it, the collapse guard, and the
wall time including any learning phase and signal overhead.

    python scripts/compare_schedulers.py OUT --suite random3 --seeds 0 1 2 --jobs 2 \
        --setup uniform=scheduler=uniform \
        --setup qls=scheduler=qls,scheduler.episodes=6

Each setup is NAME=override,override,...; `{out}` and `{seed}` in an override are replaced
(e.g. scheduler.path={out}/reinforce/seed{seed}/learned_schedule.json). Runs land in
OUT/NAME/seed<S> and are reused when their results.json exists, so a long comparison can be
resumed or extended. `--suite` picks a
preset of overrides (below) or `none`; `--extra` adds overrides to every run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SUITES = {
    # three synthetic tasks, the third with random labels (label noise 0.5): a scheduler should
    # train it less than uniform does, without losing accuracy on the others
    "random3": [
        "tasks.train_sizes=[400,400,400]", "tasks.label_noise=[0.0,0.0,0.5]",
        "tasks.tagging_train_size=0", "tasks.dev_size=100", "tasks.test_size=400",
        "model.hidden_size=16", "model.embeddings.dim=16", "model.dropout=0.3",
        "trainer.max_steps=800", "trainer.eval_every=200",
    ],
    # the 16-domain sentiment benchmark with a small model (CPU budget)
    "multidomain16": [
        "tasks=multidomain16", "model.hidden_size=64", "model.embeddings.dim=64",
        "model.max_length=100", "model.dropout=0.2", "trainer.max_steps=1000",
        "trainer.eval_every=250",
    ],
    "none": [],
}  # fmt: skip


def run_one(out: Path, overrides: list[str]) -> dict | None:
    result = out / "results.json"
    if not result.is_file():
        exe = Path(sys.executable).with_name("mtlrun")
        cmd = [str(exe), f"hydra.run.dir={out}", "trainer.progress=false",
               "hardware.num_threads=1", *overrides]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
        if proc.returncode != 0:
            print(f"FAILED {out}: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return None
    return json.loads(result.read_text())


def summarise(name: str, results: list[dict], watch: str | None) -> str:
    tests = [100 * r["aggregate"]["test"] for r in results]
    shares = [r.get("schedule", {}).get("share", {}) for r in results]
    watched = [s.get(watch, math.nan) for s in shares] if watch else []
    largest = [max(s.values()) if s else math.nan for s in shares]
    used = [sum(v >= 0.02 for v in s.values()) for s in shares]
    collapsed = sum(bool(r.get("collapse")) for r in results)
    timing = [r["timing"] for r in results]
    wall = [t.get("train_seconds", 0) + t.get("learn_seconds", 0) for t in timing]
    signal = [t.get("signal_seconds", 0) + t.get("learn_signal_seconds", 0)
              + t.get("policy_seconds", 0) + t.get("learn_policy_seconds", 0)
              for t in timing]  # fmt: skip
    sd = np.std(tests, ddof=1) if len(tests) > 1 else 0.0
    cells = [f"{name:<22}", f"{np.mean(tests):6.2f} ± {sd:4.2f}"]
    if watch:
        cells.append(f"{np.mean(watched):6.3f}")
    cells += [
        f"{np.mean(largest):6.3f}",
        f"{np.mean(used):5.1f}",
        f"{collapsed}/{len(results)}",
        f"{np.mean(wall):7.0f}",
        f"{100 * np.sum(signal) / max(np.sum(wall), 1e-9):5.1f}",
    ]
    return " | ".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--suite", default="random3", choices=SUITES)
    ap.add_argument("--setup", action="append", required=True, help="NAME=o1,o2,...")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--extra", default="", help="overrides for every run, comma-separated")
    ap.add_argument("--watch", default=None, help="a task whose share to report (random3: sent2)")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    watch = args.watch or ("sent2" if args.suite == "random3" else None)
    extra = [o for o in args.extra.split(",") if o]
    setups = dict(s.split("=", 1) for s in args.setup)
    jobs = [(name, seed, [*SUITES[args.suite], *extra,
                          *[o.format(out=args.out, seed=seed) for o in ov.split(",") if o],
                          f"seed={seed}"])
            for name, ov in setups.items() for seed in args.seeds]  # fmt: skip
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda j: run_one(args.out / j[0] / f"seed{j[1]}", j[2]), jobs))
    header = ["setup".ljust(22), "test % (mean ± sd)"] + (["watch"] if watch else [])
    header += ["max", "tasks", "coll.", "wall s", "sig %"]
    print(
        f"suite {args.suite}, seeds {args.seeds}; watch = share of {watch}; max = largest "
        "task share; tasks = tasks with ≥ 2 % of the steps; wall = training + learning; "
        "sig = signals + policy share of it"
    )
    print(" | ".join(header))
    for name in setups:
        results = [r for (n, _, _), r in zip(jobs, done, strict=True) if n == name and r]
        if results:
            print(summarise(name, results, watch))


if __name__ == "__main__":
    main()
