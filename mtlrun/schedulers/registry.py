"""Scheduler registry: `@register` a class under its spec id; `build_scheduler` makes one."""

from __future__ import annotations

from typing import Any

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import Scheduler, StepMode, TaskInfo, scheduler_rng

SCHEDULERS: dict[str, type[Scheduler]] = {}


def register(cls: type[Scheduler]) -> type[Scheduler]:
    if cls.name in SCHEDULERS:
        raise RuntimeError(f"scheduler {cls.name!r} registered twice")
    SCHEDULERS[cls.name] = cls
    return cls


def scheduler_class(name: str) -> type[Scheduler]:
    try:
        return SCHEDULERS[name]
    except KeyError:
        known = ", ".join(sorted(SCHEDULERS))
        raise ConfigError(f"unknown scheduler {name!r}; choose one of: {known}") from None


def build_scheduler(cfg: Any, tasks: list[TaskInfo], total_steps: int, seed: int) -> Scheduler:
    cls = scheduler_class(cfg.name)
    scheduler = cls(cfg, tasks, total_steps, scheduler_rng(seed, cls.name))
    if StepMode.SINGLE not in cls.step_modes:
        # Until the trainer grows MIXED and ALL modes, say so plainly instead of guessing.
        raise ConfigError(f"scheduler {cls.name!r} needs step mode {cls.step_modes[0].value}")
    return scheduler
