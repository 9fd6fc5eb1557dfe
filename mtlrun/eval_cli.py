"""The `mtlrun-eval` command: rebuild a finished run's best model from its run directory alone
(config.yaml and run.json, vocab/, checkpoints/best.pt) and score it again.

    mtlrun-eval RUN_DIR [--split test|dev] [--tasks a,b] [--data-dir DIR]
    mtlrun-eval RUN_DIR --predict FILE --tasks a [--data-dir DIR]

--predict labels every line of FILE with task a's best-model prediction, one output line per
input line: a class name (a pair task's line holds the two texts separated by a tab), or one
tag per token of the line (tagging). Tokens are the line's space-separated words, as in the
task files.

The tasks are read as the run read them (its own data_dir unless --data-dir says where the
data is now), encoded with the run's saved vocabulary, and scored with each task's metrics.
The table shows each score beside the one results.json recorded; they are equal for a run of
this version of mtlrun on the same data. Failures are one line, `mtlrun-eval: error: ...`
(exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mtlrun.errors import MtlrunError

PROG = "mtlrun-eval"


def saved_config(run_dir: Path, data_dir: str | None) -> Any:
    """The run's typed config: its overrides composed, its saved values laid over them."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mtlrun import run_dir as rundir
    from mtlrun.config import register_configs, validate
    from mtlrun.paths import config_dir

    if not (run_dir / rundir.MANIFEST).is_file():
        raise MtlrunError(f"{run_dir}: not an mtlrun run directory (no {rundir.MANIFEST})")
    overrides, saved = rundir.saved_run(run_dir)
    register_configs()
    rundir.register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = OmegaConf.merge(compose("config", overrides=overrides), saved)
    if data_dir is not None:
        cfg.data_dir = data_dir
    return validate(cfg)


def load_run(run_dir: Path, data_dir: str | None):
    """(config, encoded tasks, model with best.pt loaded) of a run, from its directory."""
    import torch

    from mtlrun.experiment import run_tasks, text_encoder
    from mtlrun.models import build_model
    from mtlrun.tasks.encode import SPLITS, EncodedTask
    from mtlrun.training import checkpoint

    c = saved_config(run_dir, data_dir)
    best, vocab_dir = run_dir / "checkpoints" / "best.pt", run_dir / "vocab"
    for needed in (best, vocab_dir):
        if not needed.exists():
            raise MtlrunError(f"{needed} is missing: only a run with checkpoints (made by this "
                              "version of mtlrun) can be evaluated")  # fmt: skip
    tasks, _ = run_tasks(c)
    encoder = text_encoder(c, tasks)
    encoder.load(vocab_dir)
    encoded = [EncodedTask(t, {s: encoder.encode(t.split(s), t.kind) for s in SPLITS}, encoder)
               for t in tasks]  # fmt: skip
    torch.set_num_threads(max(1, c.hardware.num_threads))
    model = build_model(c.model, getattr(encoder, "vocab", None), tasks, c.seed)
    model.load_state_dict(checkpoint.load(best)["model"])
    model.eval()
    return c, encoded, model


def check_tasks(encoded, only: list[str] | None) -> None:
    names = [t.task.name for t in encoded]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise MtlrunError(f"--tasks: {', '.join(unknown)} not in this run ({', '.join(names)})")


def evaluate_run(run_dir: Path, split: str, only: list[str] | None, data_dir: str | None):
    """[(task, metric, score, recorded score)] of the run's best model on `split`."""
    import torch

    from mtlrun.training.evaluate import evaluate

    c, encoded, model = load_run(run_dir, data_dir)
    check_tasks(encoded, only)
    recorded = {}
    if (run_dir / "results.json").is_file():
        recorded = json.loads((run_dir / "results.json").read_text())["tasks"]
    rows = []
    for k, task in enumerate(encoded):
        if only and task.task.name not in only:
            continue
        e = evaluate(model, k, task, split, c.trainer.eval_batch_size, torch.device("cpu"))
        before = recorded.get(task.task.name, {}).get(split)
        rows.append((task.task.name, task.task.metric.value, e.score, before))
    return rows


def predict_file(run_dir: Path, path: Path, task_name: str, data_dir: str | None) -> list[str]:
    """One output line per line of `path`: task `task_name`'s predictions."""
    import torch

    from mtlrun.kinds import kind_of
    from mtlrun.tasks import Kind, Split
    from mtlrun.tasks.text_files import read_lines, split_tokens
    from mtlrun.training.batches import length_sorted_batches

    c, encoded, model = load_run(run_dir, data_dir)
    check_tasks(encoded, [task_name])
    k = [t.task.name for t in encoded].index(task_name)
    task = encoded[k].task
    if task.kind == Kind.SEQ2SEQ:
        raise MtlrunError(f"--predict: {task_name} is a seq2seq task; prediction on a file "
                          "covers classification, pair and tagging tasks")  # fmt: skip
    pair = task.kind == Kind.PAIR_CLASSIFICATION
    firsts, seconds = [], []
    for number, line in read_lines(path):
        first, tab, second = line.partition("\t")
        if pair and not tab:
            raise MtlrunError(f"{path}:{number}: {task_name} compares two texts: give them on "
                              "one line, separated by a tab")  # fmt: skip
        firsts.append(split_tokens(first) if pair else split_tokens(line))
        seconds.append(split_tokens(second))
    dummy = [[0] * len(t) for t in firsts] if task.kind == Kind.TAGGING else [0] * len(firsts)
    split = encoded[k].encoder.encode(Split(firsts, dummy, seconds if pair else None), task.kind)
    kind, out = kind_of(task), [""] * len(firsts)
    with torch.no_grad():
        for index in length_sorted_batches(split.lengths, c.trainer.eval_batch_size):
            predictions = model(k, kind.collate(split, index, torch.device("cpu"))).predictions()
            for i, p in zip(index, predictions.tolist(), strict=True):
                if task.kind == Kind.TAGGING:  # a tag per word (the line's first max_length)
                    out[i] = " ".join(task.label_names[t] for t in p[: len(firsts[i])])
                else:
                    out[i] = task.label_names[p]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split", choices=("test", "dev"), default="test")
    p.add_argument("--tasks", help="comma-separated task names (default: every task)")
    p.add_argument("--data-dir", help="where the run's data is now (default: its data_dir)")
    p.add_argument("--predict", type=Path, help="label every line of this file (one task)")
    args = p.parse_args(argv)
    only = args.tasks.split(",") if args.tasks else None
    run_dir = args.run_dir.expanduser()
    try:
        if args.predict is not None:
            if not only or len(only) != 1:
                raise MtlrunError("--predict needs one task: --tasks NAME")
            print("\n".join(predict_file(run_dir, args.predict, only[0], args.data_dir)))
            return
        rows = evaluate_run(run_dir, args.split, only, args.data_dir)
    except (MtlrunError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(2)
    table = Table(title=f"{args.run_dir}: best checkpoint, {args.split}")
    for header in ("task", "metric", f"{args.split} (%)", "results.json (%)"):
        table.add_column(header, justify="left" if header in ("task", "metric") else "right")
    for name, metric, score, before in rows:
        table.add_row(name, metric, f"{100 * score:.2f}",
                      "–" if before is None else f"{100 * before:.2f}")  # fmt: skip
    Console().print(table)
