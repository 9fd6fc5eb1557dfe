"""Schedulers: the interface in `base`, the registry in `registry`, one module per family."""

# importing a family module registers its schedulers
from mtlrun.schedulers import (  # noqa: F401
    active_uncertainty,
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
    qls,
    reinforce,
    self_paced,
    static,
)
from mtlrun.schedulers.base import (
    Category,
    Scheduler,
    SchedulerConfig,
    SignalRequest,
    Signals,
    StepMode,
    TaskInfo,
    TaskOutputs,
)
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
    "SignalRequest",
    "Signals",
    "StepMode",
    "TaskInfo",
    "TaskOutputs",
    "build_scheduler",
    "resolve_step_mode",
    "scheduler_class",
]
