"""Kiperwasser & Ballesteros schedules (docs/schedulers.md §2.10): `kb_constant`, `kb_exponential`,
`kb_sigmoid`, in LINGVO's generalised form [R, `lingvo/core/task_scheduler.py`].

Each task k has an initial value p0_k and a final value p1_k; its unnormalised score at step t
is u_k(t), and p_k(t) = u_k(t) / Σ_j u_j(t). With the K&B settings (main task m, auxiliary tasks
sharing the rest equally) the main-task probability has a closed form, given per class.

`mode="sampler"` (K&B's own use) samples tasks from p(t) and keeps every loss weight at 1.
`mode="weight"` (QLS's "one-task schedulers", the QLS paper §5.3) trains with loss weight
w_m(t) = p_m(t) on the main task and 1 on every auxiliary task [D]; tasks are then drawn
uniformly in SINGLE mode, and ALL mode is the preferred setting.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import Category, Scheduler, SchedulerConfig, StepMode
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)

MAX_EXPONENT = 700.0  # §2.10(d): clip αt so exp(−αt) never underflows with a warning
MODES = ("sampler", "weight")


@dataclass
class KBConfig(SchedulerConfig):
    name: str = "kb_exponential"
    main_task: str | None = None  # [D] None: the task marked primary, else the first task
    mode: str = "sampler"  # sampler (K&B) | weight (QLS one-task scheduler)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"scheduler.mode must be 'sampler' or 'weight' (got {self.mode!r})")


@dataclass
class KBRateConfig(KBConfig):
    alpha: float | None = None  # [U]/[D] §2.10: rate per time unit; None = 5 / run length
    time_unit: str = "step"  # [D] §2.10(b): step | epoch (one pass over all tasks' batches)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(f"scheduler.alpha must be > 0 or null (got {self.alpha})")
        if self.time_unit not in ("step", "epoch"):
            raise ConfigError(f"scheduler.time_unit must be step or epoch (got {self.time_unit!r})")


class KBSchedule(Scheduler):
    """§2.10 base: u_k(t) from the per-task initial/final values p0, p1 (a pure function of t)."""

    category = Category.SAMPLER
    step_modes = (StepMode.SINGLE, StepMode.ALL)

    @classmethod
    def default_step_mode(cls, cfg) -> StepMode:
        # as a sampler one task per step (K&B); as QLS's target-task weight, every task per step
        return StepMode.ALL if cfg.mode == "weight" else StepMode.SINGLE

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self.main = self._main_task()
        log.info("%s: main task %s (%s mode)", self.name, tasks[self.main].name, cfg.mode)

    def _main_task(self) -> int:
        names = [t.name for t in self.tasks]
        if self.cfg.main_task is None:
            primary = [k for k, t in enumerate(self.tasks) if t.is_primary]
            return primary[0] if primary else 0
        if self.cfg.main_task not in names:
            raise ConfigError(
                f"scheduler.main_task={self.cfg.main_task!r} is not a task of this run; "
                f"choose one of: {', '.join(names)}"
            )
        return names.index(self.cfg.main_task)

    def main_probability(self, t: int) -> float:
        """p_m(t), the K&B closed form (independent of K)."""
        raise NotImplementedError

    def scores(self, t: int) -> np.ndarray:
        """u(t) for K ≥ 2; the subclasses give p0, p1 or u directly."""
        raise NotImplementedError

    def task_distribution(self, t: int) -> np.ndarray:
        if self.cfg.mode == "weight":
            return np.full(self.K, 1.0 / self.K)
        if self.K == 1:
            return np.ones(1)  # no auxiliary task: u_m(0) = 0 would give 0/0
        u = self.scores(t)
        return u / u.sum()

    def loss_weights(self, t: int) -> np.ndarray:
        w = np.ones(self.K)
        if self.cfg.mode == "weight":
            w[self.main] = self.main_probability(t)
        return w

    def log_state(self) -> dict[str, Any]:
        return {"main_task": self.tasks[self.main].name}


class KBRateSchedule(KBSchedule):
    """Exponential and sigmoid: u_k(t) = p1_k + (c·p0_k − p1_k)·exp(−αt)."""

    p0_main: float  # initial main-task value; the auxiliary tasks share 1 − p0_main
    c: float  # 1 for exponential, 2 for sigmoid

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        # an epoch is one pass over the union of every task's batches (SINGLE-mode steps)
        self.unit = 1 if cfg.time_unit == "step" else max(1, sum(t.n_train_batches for t in tasks))
        length = max(total_steps // self.unit, 1)  # the run's length in time units
        self.alpha = cfg.alpha if cfg.alpha is not None else 5.0 / length
        p0 = np.full(self.K, (1.0 - self.p0_main) / max(self.K - 1, 1))
        p0[self.main] = self.p0_main
        p1 = np.zeros(self.K)
        p1[self.main] = 1.0
        self.p0, self.p1 = p0, p1

    def time(self, t: int) -> int:
        """Step t in the configured unit: the step itself, or the number of whole epochs."""
        return t // self.unit

    def decay(self, t: int) -> float:
        return math.exp(-min(self.alpha * self.time(t), MAX_EXPONENT))

    def scores(self, t: int) -> np.ndarray:
        return self.p1 + (self.c * self.p0 - self.p1) * self.decay(t)


@register
class KBConstant(KBSchedule):
    """§2.10 `kb_constant` (LINGVO `ConstantScheduler`): u_k(t) = p0_k with
    p0_m = p_main (0.5 [D]) and p0_j = (1 − p_main)/(K − 1) for each auxiliary task j."""

    name = "kb_constant"

    @dataclass
    class Config(KBConfig):
        name: str = "kb_constant"
        p_main: float = 0.5  # [U]/[D] §2.10: the K&B constant could not be read

        def __post_init__(self) -> None:
            super().__post_init__()
            if not 0 <= self.p_main <= 1:
                raise ConfigError(f"scheduler.p_main must be in [0, 1] (got {self.p_main})")

    def main_probability(self, t: int) -> float:
        return float(self.cfg.p_main)

    def scores(self, t: int) -> np.ndarray:
        u = np.full(self.K, (1.0 - self.cfg.p_main) / (self.K - 1))
        u[self.main] = self.cfg.p_main
        return u


@register
class KBExponential(KBRateSchedule):
    """§2.10 `kb_exponential` (LINGVO `ExponentialScheduler`): u_k(t) = p1_k + (p0_k − p1_k)·e^{−αt}
    with p0_m = 0, p1_m = 1, p0_j = 1/(K − 1), p1_j = 0, so p_m(t) = 1 − e^{−αt}."""

    name = "kb_exponential"
    p0_main = 0.0
    c = 1.0

    @dataclass
    class Config(KBRateConfig):
        name: str = "kb_exponential"

    def main_probability(self, t: int) -> float:
        return -math.expm1(-min(self.alpha * self.time(t), MAX_EXPONENT))


@register
class KBSigmoid(KBRateSchedule):
    """§2.10 `kb_sigmoid` (LINGVO `SigmoidScheduler`): u_k(t) = p1_k + (2·p0_k − p1_k)·e^{−αt}
    with p0_m = 1/2, p1_m = 1, p0_j = 1/(2(K − 1)), p1_j = 0, so p_m(t) = 1/(1 + e^{−αt})."""

    name = "kb_sigmoid"
    p0_main = 0.5
    c = 2.0

    @dataclass
    class Config(KBRateConfig):
        name: str = "kb_sigmoid"

    def main_probability(self, t: int) -> float:
        return 1.0 / (1.0 + self.decay(t))
