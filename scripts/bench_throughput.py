"""Training throughput of mtlrun's trainer against a bare hand-written PyTorch loop.

Both train the same model (same initial weights) on the same minibatches (the same scheduler
draws), in one process, alternating A/B rounds to cancel drift. The bare loop gets its batches
pre-collated, so the ratio charges mtlrun for everything it adds per step: the scheduler
decision, batch assembly, loss weighting, logging and the progress display. Target: >= 0.95.

    python scripts/bench_throughput.py [--steps 300] [--rounds 3] [override ...]
    python scripts/bench_throughput.py tasks=multidomain16 data_dir=../shared/data
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

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
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
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
        probe = copy.deepcopy(trainer.scheduler), copy.deepcopy(trainer.streams)
        batches = []
        for t in range(args.steps):
            k = probe[0].next_task(t)
            index = probe[1][k].next()
            split = trainer.tasks[k].splits["train"]
            batches.append((k, collate(split, index, trainer.tagging[k], trainer.device)))

        for t in range(20):  # warm-up both paths
            trainer._train_step(t)
        bare_loop(model, optimizer, batches[:20], c.optimizer.grad_clip or float("inf"))

        timings = {"mtlrun": 0.0, "bare": 0.0}
        step = 20
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer._train_step(step)
                step += 1
            timings["mtlrun"] += time.perf_counter() - start
            start = time.perf_counter()
            bare_loop(model, optimizer, batches, c.optimizer.grad_clip or float("inf"))
            timings["bare"] += time.perf_counter() - start

    n = args.steps * args.rounds
    rate = {name: n / seconds for name, seconds in timings.items()}
    print(
        f"tasks={c.tasks.name} model={c.model.name} scheduler={c.scheduler.name} "
        f"batch={c.trainer.batch_size} threads={torch.get_num_threads()} steps={n}"
    )
    print(f"mtlrun trainer : {rate['mtlrun']:8.1f} steps/s")
    print(f"bare loop      : {rate['bare']:8.1f} steps/s")
    print(f"ratio          : {rate['mtlrun'] / rate['bare']:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
