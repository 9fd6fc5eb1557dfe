"""Scheduler registry: `@register` a class under its spec id; `build_scheduler` makes one."""

from __future__ import annotations

import logging
from typing import Any

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import Scheduler, StepMode, TaskInfo, scheduler_rng

log = logging.getLogger(__name__)

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
    return cls(cfg, tasks, total_steps, scheduler_rng(seed, cls.name))


def resolve_step_mode(scheduler: Scheduler, requested: str | None) -> StepMode:
    """The scheduler's own step mode for its config, or the requested one if it supports it."""
    own = scheduler.default_step_mode(scheduler.cfg)
    if requested is None:
        return own
    mode = StepMode(requested)
    if mode not in scheduler.step_modes:
        allowed = " or ".join(m.value for m in scheduler.step_modes)
        raise ConfigError(
            f"scheduler {scheduler.name!r} cannot run with trainer.step_mode={mode.value}: "
            f"it needs {allowed} (docs/schedulers.md §1.2)"
        )
    if mode == StepMode.SINGLE and own == StepMode.ALL:
        log.warning(
            "%s is a loss weighter run with one task per step (trainer.step_mode=single): the "
            "drawn task's loss is multiplied by its weight; the published setting trains every "
            "task every step (trainer.step_mode=all)",
            scheduler.name,
        )
    return mode
