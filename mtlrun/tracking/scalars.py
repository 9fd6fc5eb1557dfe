"""What an experiment tracker receives: the metrics.jsonl records of one evaluation turned into
named scalars, and the run's config flattened into parameters.

Tags (TensorBoard groups a tag by its first `/` part; MLflow keys are the same strings):

    dev/score/<task>   dev/loss/<task>   dev/<metric>/<task> (tasks with several metrics)
    dev/score/average  (the mean of the defined scores: the aggregate the log line prints)
    test/...           the same, at the best step, once the run has tested its best model
    train/loss/<task>  the mean training loss since the previous evaluation
    schedule/{p,w,lr_scale,share,batches_seen}/<task>   schedule/{entropy,entropy_norm}
    scheduler/<state>[/<task or index>]                 the scheduler's own logged state
    time/{train,signal,policy}_seconds
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

PER_TASK = {  # a record's field -> its tag's stem; the task's name ends the tag
    "score": "{split}/score",
    "loss": "{split}/loss",
    "train_loss": "train/loss",
    "p": "schedule/p",
    "w": "schedule/w",
    "lr_scale": "schedule/lr_scale",
    "batches_seen": "schedule/batches_seen",
}
STRUCTURE = {"step", "task", "split", "metric", "metrics", "schedule", "scheduler"}
_UNSAFE = re.compile(r"[^\w./\- ]")  # MLflow's key alphabet, which TensorBoard also takes


def tag(*parts: Any) -> str:
    return _UNSAFE.sub("_", "/".join(str(p) for p in parts))


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _flatten(prefix: str, value: Any, tasks: list[str], out: dict[str, float]) -> None:
    """Numbers of a nested value; a list with one entry per task is indexed by task name."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(tag(prefix, k), v, tasks, out)
    elif isinstance(value, list | tuple):
        names = tasks if len(value) == len(tasks) else range(len(value))
        for k, v in zip(names, value, strict=True):
            _flatten(tag(prefix, k), v, tasks, out)
    elif (x := _number(value)) is not None:
        out[prefix] = x


def scalars(records: list[dict[str, Any]]) -> tuple[int, dict[str, float]]:
    """(step, {tag: value}) of one evaluation's records (every task, one split, one step)."""
    tasks = [r["task"] for r in records]
    out: dict[str, float] = {}
    split = records[0]["split"]
    for r in records:
        for field, stem in PER_TASK.items():
            if (x := _number(r.get(field))) is not None:
                out[tag(stem.format(split=split), r["task"])] = x
        if len(r.get("metrics", {})) > 1:
            for name, value in r["metrics"].items():
                if (x := _number(value)) is not None:
                    out[tag(split, name, r["task"])] = x
        if (x := _number(r.get("schedule", {}).get("share"))) is not None:
            out[tag("schedule/share", r["task"])] = x
    first = records[0]  # run-wide numbers: the same on every task's line
    for k, v in first.get("schedule", {}).items():
        if k != "share" and (x := _number(v)) is not None:
            out[tag("schedule", k)] = x
    _flatten("scheduler", first.get("scheduler", {}), tasks, out)
    for k, v in first.items():
        if k not in STRUCTURE and k not in PER_TASK and (x := _number(v)) is not None:
            out[tag("time", k)] = x
    defined = [x for r in records if (x := _number(r.get("score"))) is not None]
    if defined:
        out[tag(split, "score/average")] = sum(defined) / len(defined)
    return int(first["step"]), out


def params(config: Any) -> dict[str, bool | int | float | str]:
    """The typed run config as dotted keys -> values; a list or None as its text (the paper's
    reference numbers are left out: they are not a setting of the run)."""
    out: dict[str, bool | int | float | str] = {}

    def walk(prefix: str, value: Any) -> None:
        if dataclasses.is_dataclass(value):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value if isinstance(value, bool | int | float | str) else str(value)

    walk("", {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
              if f.name != "paper"})  # fmt: skip
    return out
