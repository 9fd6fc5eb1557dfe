"""Transitions per second of QLS's learning phase against the number of parallel episodes N
(scheduler.parallel_episodes: N model replicas trained at once), with the serial path (one
Trainer per episode) at N = 1 as the baseline, on a multidomain16-shaped problem: 16 binary
tasks, 200 dev examples each, embedding 300 / hidden 128, and scheduler=qls_faithful (D = 1:
a decision every step; the flat Q-network; one DQN update per transition).

    python scripts/bench_qls_learning.py                     # CPU defaults, a few minutes
    python scripts/bench_qls_learning.py --device cuda       # the paper's signals (below)
    python scripts/bench_qls_learning.py --data_dir DATA   # real reviews if present

On cuda the defaults are the paper's signal settings: H_k = 128 hard dev rows per task and the
reward over the whole dev sets (--reward_examples 0), reviews of up to 200 tokens, and 1024 dev
rows per forward pass (fewer, larger kernels). On cpu they are cut to 4 + 4 rows per task and
64 tokens so that N = 64 finishes in minutes; raise them with the flags. Without real data a
synthetic stand-in of the same shape is written (vocabulary ~20k words, 100-200 tokens).

A transition is one decision stored in the replay buffer; the rate is transitions per second of
the learning loop (training, signals and DQN updates; building the N models is left out: it is
paid once per 10K-step episode). Each N runs one group of N episodes of --steps steps.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from mtlrun.config import MULTIDOMAIN16, register_configs, validate
from mtlrun.experiment import learn, prepare
from mtlrun.paths import config_dir
from mtlrun.training.parallel_learning import learn_policy_parallel

DEV = 200  # the reader's dev_size: the last 200 training lines
PAPER_TRANSITIONS = 1_000_000
# flag -> (meaning, cpu default, cuda default); cuda's are the paper's signals and lengths
FLAGS = {
    "steps": ("steps (decisions) per episode", 3, 10),
    "hard_examples": ("H_k rows per task", 4, 128),
    "reward_examples": ("reward rows per task, 0 = the dev set", 4, 0),
    "max_length": ("tokens kept per review", 64, 200),
    "eval_batch_size": ("dev rows per serial forward pass (N replicas read 16x that)", 128, 1024),
    # on busy shared cores 2 threads spin-wait: single ops ran 20x slower than with 1 here
    "threads": ("torch CPU threads, 0 = torch's default", 1, 0),
}


def write_stand_in(directory: Path, train: int, vocab: int, seed: int = 0) -> None:
    """multidomain16's files with random reviews: Zipf-distributed words, 100-200 tokens."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, vocab + 1)
    p = 1.0 / (ranks + 10.0)
    p /= p.sum()
    directory.mkdir(parents=True, exist_ok=True)
    for domain in MULTIDOMAIN16:
        for split, n in (("train", train + DEV), ("test", 10)):
            lines = []
            for _ in range(n):
                words = rng.choice(vocab, size=int(rng.integers(100, 201)), p=p)
                lines.append(f"{rng.integers(2)}\t" + " ".join(f"w{w}" for w in words))
            (directory / f"{domain}.task.{split}").write_text("\n".join(lines) + "\n")


def task_overrides(data_dir: str | None, tmp: Path) -> list[str]:
    """Real 16-domain data when present, else the stand-in (written once into tmp)."""
    if data_dir and (Path(data_dir) / "fdu_mtl_16domain").is_dir():
        return ["tasks=multidomain16", f"data_dir={Path(data_dir).resolve()}"]
    write_stand_in(tmp / "fdu_mtl_16domain", train=400, vocab=20_000)
    return ["tasks=multidomain16", f"data_dir={tmp}", "model.vocab.max_size=20000"]


def settings(args, tmp: Path, n: int) -> list[str]:
    reward = "null" if args.reward_examples == 0 else args.reward_examples
    return [
        *args.tasks, f"cache_dir={tmp / 'cache'}", f"hardware.device={args.device}",
        "model.embeddings.dim=300", "model.hidden_size=128", "trainer.progress=false",
        f"model.max_length={args.max_length}", "scheduler=qls_faithful",
        f"scheduler.episodes={n}", f"scheduler.parallel_episodes={n}",
        f"scheduler.episode_steps={args.steps}", "scheduler.hard_after_steps=0",
        f"scheduler.hard_examples={args.hard_examples}", f"scheduler.reward_examples={reward}",
        "scheduler.learning_starts=1",  # DQN updates from the first transition, as in 1M
        f"trainer.eval_batch_size={args.eval_batch_size}", f"hardware.num_threads={args.threads}",
    ]  # fmt: skip


def fix_hard_rows(scheduler, n: int) -> None:
    """H_k as the first group leaves it: the steady state, without the one-off pass over every
    dev row that fixes H_k (so every step of every episode is a decision)."""
    scheduler.hard = [np.arange(n) for _ in scheduler.tasks]


def measure(args, tmp: Path, n: int, serial: bool) -> dict[str, float]:
    """One group of n episodes of args.steps steps: transitions per second and the time split."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        c = validate(compose("config", overrides=settings(args, tmp, n)))
    p = prepare(c)
    fix_hard_rows(p.scheduler, args.hard_examples)
    run_dir = tmp / f"{'serial' if serial else 'replicas'}_{n}"
    timing = (learn(c, p, run_dir, resume=False) if serial
              else learn_policy_parallel(c, p, run_dir, progress=False))  # fmt: skip
    transitions = n * args.steps  # D = 1 and H_k fixed: one per step and episode
    seconds = timing["learn_seconds"]
    return {"transitions": transitions, "seconds": seconds, "rate": transitions / seconds,
            "signals": timing["learn_signal_seconds"] / seconds,
            "policy": timing["learn_policy_seconds"] / seconds}  # fmt: skip


HEADER = (f"{'path':<14} {'transitions':>11} {'seconds':>8} {'trans/s':>8} {'vs serial':>9} "
          f"{'signals':>8} {'policy':>7}")  # fmt: skip


def row(name: str, r: dict[str, float], baseline: float) -> str:
    return (f"{name:<14} {r['transitions']:>11} {r['seconds']:8.1f} {r['rate']:8.2f} "
            f"{r['rate'] / baseline:8.2f}x {r['signals']:8.0%} {r['policy']:7.0%}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--data_dir", default=None, help="holding fdu_mtl_16domain/ (optional)")
    parser.add_argument("--ns", type=int, nargs="+", default=[1, 4, 16, 64])
    for flag, (meaning, cpu, cuda) in FLAGS.items():
        parser.add_argument(f"--{flag}", type=int, default=None,
                            help=f"{meaning}; default {cpu} on cpu, {cuda} on cuda")  # fmt: skip
    args = parser.parse_args()
    for flag, (_, cpu, cuda) in FLAGS.items():
        if getattr(args, flag) is None:
            setattr(args, flag, cpu if args.device == "cpu" else cuda)
    logging.basicConfig(level=logging.ERROR)
    register_configs()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        args.tasks = task_overrides(args.data_dir, tmp)
        print(f"device {args.device}, {args.tasks[1]}, D = 1, H_k {args.hard_examples} rows, "
              f"reward rows {args.reward_examples or 'all'} per task, reviews cut at "
              f"{args.max_length} tokens, {args.steps} steps per episode")  # fmt: skip
        for serial in (True, False):  # first calls pay one-off costs (allocator, kernels)
            measure(args, tmp, 1, serial)
        rows = {"serial N=1": measure(args, tmp, 1, serial=True)}
        baseline = rows["serial N=1"]["rate"]
        print(HEADER, row("serial N=1", rows["serial N=1"], baseline), sep="\n", flush=True)
        for n in args.ns:
            rows[f"replicas N={n}"] = measure(args, tmp, n, serial=False)
            print(row(f"replicas N={n}", rows[f"replicas N={n}"], baseline), flush=True)
    name, best = max(rows.items(), key=lambda item: item[1]["rate"])
    hours = PAPER_TRANSITIONS / best["rate"] / 3600
    serial = PAPER_TRANSITIONS / baseline / 3600
    print(f"1M transitions at {name} ({best['rate']:.2f}/s): {hours:.1f} h; serial {serial:.1f} h")


if __name__ == "__main__":
    main()
