"""What each scheduler costs, measured in one process on the synthetic suite.

1. Decision cost: microseconds per step of the scheduler's own work (next_task / mixed_counts,
   loss_weights, lr_scales, observe_train on a fixed fake loss stream), without the model.
   Target for samplers: <= 20 µs per step.
2. Training throughput relative to the baseline of the same step mode: `uniform` for SINGLE and
   MIXED, `uniform_weights` for ALL (an ALL step trains K minibatches, so comparing it with a
   one-task step would measure K, not the scheduler). Target for loss weighters: >= 0.95.
3. GradNorm's extra cost per step, stated in units of one backward pass of the same ALL step.

    python scripts/bench_schedulers.py [--steps 150] [--decisions 20000] [id ...]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from mtlrun.config import register_configs, validate
from mtlrun.experiment import build_trainer
from mtlrun.paths import config_dir
from mtlrun.schedulers import SCHEDULERS, Category, StepMode

# options a scheduler cannot run without, for the 5-task synthetic suite
BASELINES = "{sent0: 0.9, sent1: 0.85, sent2: 0.8, sent3: 0.75, entities: 0.95}"
REQUIRED = {
    "constant": ["scheduler.p=[0.4,0.3,0.1,0.1,0.1]"],
    "single": ["scheduler.task=sent0"],
    "hand_crafted": ["scheduler.w=[1,2,1,2,1]"],
    "prioritize_easy": [f"scheduler.baselines={BASELINES}"],
    "prioritize_hard": [f"scheduler.baselines={BASELINES}"],
    "jean_explicit": [f"scheduler.baselines={BASELINES}"],
    "jean_implicit": [f"scheduler.baselines={BASELINES}"],
}


def build(name: str, tmp: Path):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"scheduler={name}", *REQUIRED.get(name, []), "trainer.progress=false",
                       "trainer.checkpoints=false", "hardware.num_threads=1"],
        )  # fmt: skip
    return build_trainer(validate(cfg), tmp / name)


def decision_cost(trainer, n: int) -> float:
    s = copy.deepcopy(trainer.scheduler)
    mode, batch = trainer.step_mode, trainer.cfg.batch_size
    fake = np.random.default_rng(0).uniform(0.1, 2.0, size=(n, s.K))
    start = time.perf_counter()
    for t in range(n):
        if mode == StepMode.SINGLE:
            trained = [s.next_task(t)]
        elif mode == StepMode.MIXED:
            trained = [k for k, c in enumerate(s.mixed_counts(t, batch)) if c]
        else:
            trained = range(s.K)
        s.loss_weights(t)
        s.lr_scales(t)
        if s.observes_train_loss:
            s.observe_train(t, {k: float(fake[t, k]) for k in trained})
    return (time.perf_counter() - start) / n * 1e6


def steps_per_second(trainer, steps: int) -> float:
    for t in range(10):  # warm-up
        trainer._train_step(t)
    start = time.perf_counter()
    for t in range(10, 10 + steps):
        trainer._train_step(t)
    return steps / (time.perf_counter() - start)


def backward_seconds(trainer, repeats: int = 30) -> float:
    """Mean time of the backward pass alone of one ALL step (forward excluded)."""
    total = 0.0
    for _ in range(repeats):
        losses = []
        for k, stream in enumerate(trainer.streams):
            split = trainer.tasks[k].splits["train"]
            batch = trainer.kinds[k].collate(split, stream.next(), trainer.device)
            losses.append(trainer.model(k, batch).loss)
        trainer.optimizers.zero_grad()
        loss = sum(losses)
        start = time.perf_counter()
        loss.backward()
        total += time.perf_counter() - start
    return total / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("ids", nargs="*", help="scheduler ids (default: all)")
    args = parser.parse_args()
    register_configs()
    torch.set_num_threads(1)
    ids = args.ids or sorted(SCHEDULERS)
    for baseline in ("uniform", "uniform_weights"):
        if baseline in SCHEDULERS and baseline not in ids:
            ids.append(baseline)

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ids:
            trainer = build(name, Path(tmp))
            rows[name] = {
                "category": trainer.scheduler.category,
                "mode": trainer.step_mode,
                "decision_us": decision_cost(trainer, args.decisions),
                "steps_per_s": steps_per_second(trainer, args.steps),
            }
        gradnorm_note = ""
        if "gradnorm" in rows and "uniform_weights" in rows:
            backward = backward_seconds(build("uniform_weights", Path(tmp)))
            extra = 1 / rows["gradnorm"]["steps_per_s"] - 1 / rows["uniform_weights"]["steps_per_s"]
            gradnorm_note = (
                f"gradnorm: +{extra * 1e3:.2f} ms per step over uniform_weights "
                f"= {extra / backward:.2f} x one backward pass of an ALL step "
                f"({backward * 1e3:.2f} ms)"
            )

    base = {StepMode.SINGLE: "uniform", StepMode.MIXED: "uniform", StepMode.ALL: "uniform_weights"}
    print(f"{'scheduler':<22}{'category':<18}{'mode':<8}{'decision µs':>12}{'steps/s':>10}"
          f"{'vs base':>9}  check")  # fmt: skip
    for name, r in rows.items():
        ref = rows.get(base[r["mode"]])
        ratio = r["steps_per_s"] / ref["steps_per_s"] if ref else float("nan")
        check = ""
        if r["category"] == Category.SAMPLER:
            check = "ok" if r["decision_us"] <= 20 else "SLOW (> 20 µs)"
        elif r["category"] == Category.LOSS_WEIGHTER:
            check = "ok" if ratio >= 0.95 else "SLOW (< 0.95)"
        head = f"{name:<22}{r['category'].value:<18}{r['mode'].value:<8}"
        print(f"{head}{r['decision_us']:>12.1f}{r['steps_per_s']:>10.1f}{ratio:>9.3f}  {check}")
    if gradnorm_note:
        print(gradnorm_note)


if __name__ == "__main__":
    main()
