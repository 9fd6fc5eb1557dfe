"""Schedulers: the interface in `base`, the registry in `registry`, one module per family."""

from mtlrun.schedulers import static  # noqa: F401  (registers the static samplers)
from mtlrun.schedulers.base import Category, Scheduler, SchedulerConfig, StepMode, TaskInfo
from mtlrun.schedulers.registry import (
    SCHEDULERS,
    build_scheduler,
    resolve_step_mode,
    scheduler_class,
)

__all__ = [
    "SCHEDULERS",
    "Category",
    "Scheduler",
    "SchedulerConfig",
    "StepMode",
    "TaskInfo",
    "build_scheduler",
    "resolve_step_mode",
    "scheduler_class",
]
