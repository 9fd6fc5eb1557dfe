"""Training throughput of mtlrun's trainer against a bare hand-written PyTorch loop.

Both train the same model (same initial weights) on the same minibatches (the same scheduler
draws), in one process, alternating A/B rounds to cancel drift. Both see the same batches
in the same rounds; the bare loop gets them pre-collated, so the ratio charges mtlrun for
everything it adds per step: the scheduler
decision, batch assembly, loss weighting, logging and the progress display. Target: >= 0.95.

    python scripts/bench_throughput.py [--steps 100] [--rounds 12] [override ...]
    python scripts/bench_throughput.py tasks=multidomain16 data_dir=/path/to/data
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
from mtlrun.training.batches import collate


def bare_loop(model, optimizer, batches, grad_clip) -> None:
    for k, batch in batches:
        loss = model(k, batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per round")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=["trainer.progress=false", *args.overrides])
    c = validate(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(c, Path(tmp))
        trainer.model.train()
        # the bare loop's copy: same weights, its own optimizer of the same kind and settings
        model = copy.deepcopy(trainer.model)
        reference = trainer.optimizers.optimizers[0]
        optimizer = type(reference)(model.parameters(), **reference.defaults)
        # the exact batches the trainer will draw, warm-up (steps 0-19) included
        probe = copy.deepcopy(trainer.scheduler), copy.deepcopy(trainer.streams)
        batches = []
        for t in range(20 + args.steps * args.rounds):
            k = probe[0].next_task(t)
            index = probe[1][k].next()
            split = trainer.tasks[k].splits["train"]
            batches.append((k, collate(split, index, trainer.tagging[k], trainer.device)))

        for t in range(20):  # warm-up both paths
            trainer._train_step(t)
        bare_loop(model, optimizer, batches[:20], c.optimizer.grad_clip or float("inf"))

        # short alternating rounds: machine noise hits both sides alike; the median ratio of
        # the rounds is the figure, the spread says how much to trust it
        timings: dict[str, list[float]] = {"mtlrun": [], "bare": []}
        step = 20
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer._train_step(step)
                step += 1
            timings["mtlrun"].append(time.perf_counter() - start)
            same = batches[step - args.steps : step]
            start = time.perf_counter()
            bare_loop(model, optimizer, same, c.optimizer.grad_clip or float("inf"))
            timings["bare"].append(time.perf_counter() - start)

    ratios = np.array(timings["bare"]) / np.array(timings["mtlrun"])
    rate = {name: args.steps * args.rounds / sum(t) for name, t in timings.items()}
    print(f"tasks={c.tasks.name} model={c.model.name} scheduler={c.scheduler.name} "
          f"batch={c.trainer.batch_size} threads={torch.get_num_threads()} "
          f"rounds={args.rounds}x{args.steps} steps")  # fmt: skip
    print(f"mtlrun trainer : {rate['mtlrun']:8.1f} steps/s")
    print(f"bare loop      : {rate['bare']:8.1f} steps/s")
    print(f"ratio          : {np.median(ratios):.3f} median over rounds "
          f"(range {ratios.min():.3f}-{ratios.max():.3f}; target >= 0.95)")  # fmt: skip


if __name__ == "__main__":
    main()
