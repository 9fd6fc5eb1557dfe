"""Per-task baseline scores b_k (e.g. single-task dev scores) for Jean et al.'s schedules,
prioritize_easy/hard and QLS: `scheduler.baselines=<file or mapping>`.

A baselines file is JSON or YAML mapping task name -> score, on the same scale as mtlrun's
scores (fractions: 0.85 = 85 %). `mtlrun-report <sweep of scheduler=single runs> --baselines F`
writes one from single-task runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mtlrun.errors import ConfigError


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
    if missing:
        raise ConfigError(f"scheduler.baselines has no score for {', '.join(missing)}")
    scores = [float(mapping[n]) for n in task_names]
    bad = [n for n, b in zip(task_names, scores, strict=True) if not b > 0]
    if bad:
        raise ConfigError(f"scheduler.baselines must be > 0 (not for {', '.join(bad)})")
    return scores
