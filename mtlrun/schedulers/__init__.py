"""Schedulers: the interface in `base`, the registry in `registry`, one module per family."""

# importing a family module registers its schedulers
from mtlrun.schedulers import (  # noqa: F401
    autosem,
    dtp,
    dwa,
    fixed_weights,
    gradnorm,
    greedy,
    jean,
    kb_schedules,
    kendall,
    loss_shaping,
    self_paced,
    static,
)
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
