"""Per-task baseline scores b_k (e.g. single-task dev scores) for Jean et al.'s schedules,
prioritize_easy/hard and QLS: `scheduler.baselines=<file or mapping>`.

A baselines file is JSON or YAML mapping task name -> score, on the same scale as mtlrun's
scores (fractions: 0.85 = 85 %). `mtlrun-report <sweep of scheduler=single runs> --baselines F`
writes one from single-task runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import TaskInfo

log = logging.getLogger("mtlrun")

HOW_TO_BASELINES = (
    "pass scheduler.baselines=<file> (JSON/YAML task -> dev score as a fraction) or a mapping, "
    "e.g. 'scheduler.baselines={{{example}}}'. To make the file from single-task runs: "
    "mtlrun -m scheduler=single scheduler.task={names} ..., then "
    "mtlrun-report <that sweep dir> --baselines baselines.json"
)


def check_baselines_value(value: Any) -> None:
    """Config-time check of a `baselines` field: None, a path, or a mapping."""
    if value is not None and not isinstance(value, str | Mapping):
        raise ConfigError(
            f"scheduler.baselines must be a file path or a task -> score mapping (got {value!r})"
        )


def resolve_baselines(scheduler: str, value: Any, tasks: list[TaskInfo]) -> list[float]:
    """b_k from `scheduler.baselines`, else from TaskInfo.baseline_score; an error that says
    how to make a baselines file otherwise."""
    names = [t.name for t in tasks]
    if value is not None:
        return load_baselines(value, names)
    given = [t.baseline_score for t in tasks]
    if all(b is not None for b in given):
        return load_baselines(dict(zip(names, given, strict=True)), names)
    example = ", ".join(f"{n}: 0.8" for n in names)
    raise ConfigError(
        f"scheduler {scheduler} needs a baseline dev score per task: "
        + HOW_TO_BASELINES.format(example=example, names=",".join(names))
    )


def load_baselines(value: Any, task_names: list[str]) -> list[float]:
    """b_k for each task, from a file path or a mapping; every task must have one."""
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"scheduler.baselines: no file {path}")
        text = path.read_text()
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError:
            mapping = OmegaConf.to_container(OmegaConf.create(text))
    elif isinstance(value, Mapping):
        mapping = dict(value)
    else:
        raise ConfigError(
            "scheduler.baselines must be a file (JSON/YAML task -> score) or a mapping, e.g. "
            "'scheduler.baselines={sent0: 0.9, sent1: 0.8}'"
        )
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"scheduler.baselines: expected a task -> score mapping in {value}")
    missing = [n for n in task_names if n not in mapping]
    extra = [str(n) for n in mapping if n not in task_names]
    if missing:
        also = f" (it has scores for {', '.join(extra)}, not tasks of this run)" if extra else ""
        raise ConfigError(f"scheduler.baselines has no score for {', '.join(missing)}{also}")
    if extra:  # a file made from a wider sweep of single-task runs covers more tasks: fine
        log.info(
            "scheduler.baselines: the scores of %s ignored (not tasks of this run)",
            ", ".join(extra),
        )
    scores = [float(mapping[n]) for n in task_names]
    bad = [n for n, b in zip(task_names, scores, strict=True) if not b > 0]
    if bad:
        raise ConfigError(f"scheduler.baselines must be > 0 (not for {', '.join(bad)})")
    return scores
