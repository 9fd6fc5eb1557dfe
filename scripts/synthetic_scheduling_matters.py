"""Does scheduling matter on the embedded synthetic suite? Trains, with the same seed and budget:
single-task on the smallest task, multi-task with `uniform`, and multi-task with `proportional`,
and prints each task's test score.

    python scripts/synthetic_scheduling_matters.py [steps] [seeds]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def run(overrides: list[str], out: Path) -> dict:
    cmd = ["mtlrun", f"hydra.run.dir={out}", "trainer.progress=false", *overrides]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads((out / "results.json").read_text())


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    seeds = range(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    smallest = "sent3"
    setups = {
        "single": ["scheduler=single", f"scheduler.task={smallest}"],
        "uniform": ["scheduler=uniform"],
        "proportional": ["scheduler=proportional"],
    }
    table: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in setups.items():
            for seed in seeds:
                res = run(
                    [*overrides, f"seed={seed}", f"trainer.max_steps={steps}"],
                    Path(tmp) / f"{name}-{seed}",
                )
                for task, r in res["tasks"].items():
                    table.setdefault(name, {}).setdefault(task, []).append(100 * r["test"])
    tasks = list(table["uniform"])
    print(f"test scores (%), mean over {len(seeds)} seed(s), {steps} steps")
    print(f"{'setup':<14}" + "".join(f"{t:>10}" for t in tasks))
    for name, per_task in table.items():
        cells = [f"{np.mean(per_task[t]):10.1f}" if t in per_task else f"{'-':>10}" for t in tasks]
        print(f"{name:<14}" + "".join(cells))


if __name__ == "__main__":
    main()
