"""Cost of the CRF output layer: training steps and dev evaluation of the same tagging model
with and without `model.crf`, in one process, alternating A/B rounds to cancel drift.

Prints steps/s and evaluation seconds for both and their ratios (CRF / softmax). The CRF adds a
forward algorithm per step (a loop over time) and Viterbi at evaluation.

    python scripts/bench_crf.py                                   # synthetic tagging task
    python scripts/bench_crf.py tasks=conll data_dir=/path/to/data tasks.tasks=[ner]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from mtlrun.config import register_configs, validate
from mtlrun.experiment import build_trainer
from mtlrun.paths import config_dir
from mtlrun.tasks.spec import Kind


def trainer_for(overrides: list[str], crf: bool, tmp: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        fixed = ["trainer.progress=false", "trainer.checkpoints=false"]
        cfg = compose("config", overrides=[*fixed, f"model.crf={str(crf).lower()}", *overrides])
    return build_trainer(validate(cfg), Path(tmp) / str(crf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    register_configs()
    torch.set_num_threads(1)  # one thread: stable timings on a shared machine
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {crf: trainer_for(args.overrides, crf, tmp) for crf in (False, True)}
        tagging = [k for k, t in enumerate(trainers[False].tasks) if t.task.kind == Kind.TAGGING]
        if not tagging:
            raise SystemExit("no tagging task in this suite: nothing for a CRF to do")
        step_rate, eval_seconds = {False: [], True: []}, {False: [], True: []}
        for _ in range(args.rounds):
            for crf, trainer in trainers.items():
                trainer.model.train()
                started = time.perf_counter()
                for t in range(args.steps):
                    trainer._train_step(t)
                step_rate[crf].append(args.steps / (time.perf_counter() - started))
                started = time.perf_counter()
                for k in tagging:
                    trainer._eval(k, "dev")
                eval_seconds[crf].append(time.perf_counter() - started)
    names = ", ".join(trainers[False].tasks[k].task.name for k in tagging)
    print(f"tagging tasks: {names}; {args.rounds} rounds of {args.steps} steps (median)")
    rate = {crf: statistics.median(v) for crf, v in step_rate.items()}
    secs = {crf: statistics.median(v) for crf, v in eval_seconds.items()}
    print(f"training steps/s   softmax {rate[False]:8.2f}   CRF {rate[True]:8.2f}   "
          f"ratio {rate[True] / rate[False]:.2f}")  # fmt: skip
    print(f"dev evaluation s   softmax {secs[False]:8.3f}   CRF {secs[True]:8.3f}   "
          f"ratio {secs[True] / secs[False]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
