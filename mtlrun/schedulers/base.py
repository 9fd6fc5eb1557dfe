"""The scheduler interface (SCHEDULERS.md §1.3) and the conventions every scheduler shares (§1.4).

A scheduler owns the four levers of multi-task training: which task trains next
(`task_distribution` / `next_task`), how much each task's loss counts (`loss_weights`), how
gradients are combined (`custom_backward`, later) and each task's learning-rate scale
(`lr_scales`). Every method has a neutral default, so a static sampler is a few lines.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

import numpy as np
from omegaconf import MISSING

log = logging.getLogger(__name__)

EPS_DIV = 1e-12  # §1.4.4: guard in every ratio of losses or scores


class Category(Enum):
    SAMPLER = "sampler"
    LOSS_WEIGHTER = "loss_weighter"
    GRAD_MANIPULATOR = "grad_manipulator"
    LR_SCALER = "lr_scaler"
    POLICY = "policy"


class StepMode(Enum):
    SINGLE = "single"  # one task per step (the papers' default)
    MIXED = "mixed"  # each example of a batch draws its task
    ALL = "all"  # one minibatch of every task per step


@dataclass(frozen=True)
class TaskInfo:
    """What a scheduler may know about a task (never its data)."""

    name: str
    n_train: int
    n_train_batches: int
    metric_name: str
    higher_is_better: bool = True
    baseline_score: float | None = None
    is_primary: bool = False
    difficulty_rank: int | None = None
    loss_kind: str = "classification"


@dataclass
class SchedulerConfig:
    """Base schema of `conf/scheduler/*.yaml`; each scheduler adds its hyperparameters."""

    name: str = MISSING


def scheduler_rng(seed: int, scheduler_name: str) -> np.random.Generator:
    """§1.4.1: a generator seeded from (global seed, scheduler id); never the global RNG."""
    return np.random.default_rng([seed, zlib.crc32(scheduler_name.encode())])


def to_probabilities(weights: np.ndarray) -> np.ndarray:
    """§1.4.2: clip negatives to 0 and normalise; uniform on non-finite weights or zero mass."""
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        log.warning("non-finite task weights %s: falling back to uniform sampling", w)
        return np.full(len(w), 1.0 / len(w))
    w = np.clip(w, 0.0, None)
    total = w.sum()
    if total <= 0:
        log.warning("task weights sum to %s: falling back to uniform sampling", total)
        return np.full(len(w), 1.0 / len(w))
    return w / total


class Scheduler:
    """Neutral defaults for every lever; subclasses set name, Config, category, step_modes."""

    name: ClassVar[str]
    Config: ClassVar[type[SchedulerConfig]] = SchedulerConfig
    category: ClassVar[Category] = Category.SAMPLER
    step_modes: ClassVar[tuple[StepMode, ...]] = (StepMode.SINGLE,)  # the first is the default
    observes_train_loss: ClassVar[bool] = False  # True: the trainer calls observe_train each step

    def __init__(
        self, cfg: Any, tasks: list[TaskInfo], total_steps: int, rng: np.random.Generator
    ) -> None:
        self.cfg = cfg
        self.tasks = tasks
        self.K = len(tasks)
        self.total_steps = total_steps
        self.rng = rng
        self._cdf: np.ndarray | None = None  # cached CDF of a static distribution

    @classmethod
    def task_subset(cls, cfg: Any) -> list[str] | None:
        """Names of the only tasks this scheduler trains (None = all). Used by `single`."""
        return None

    # --- lever 1: which task ---------------------------------------------------------------
    def task_distribution(self, t: int) -> np.ndarray:
        return np.full(self.K, 1.0 / self.K)

    def next_task(self, t: int) -> int:
        """Draw from `task_distribution(t)` by inverse CDF (one uniform draw per step)."""
        cdf = self._cdf if self._cdf is not None else np.cumsum(self.task_distribution(t))
        # side="right" skips zero-probability tasks; min() guards cdf[-1] < 1 by rounding.
        return min(int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right")), self.K - 1)

    # --- lever 2 and 4: loss weights and learning-rate scales ------------------------------
    def loss_weights(self, t: int) -> np.ndarray:
        return np.ones(self.K)

    def lr_scales(self, t: int) -> np.ndarray:
        return np.ones(self.K)

    # --- what the trainer tells the scheduler ----------------------------------------------
    def observe_train(self, t: int, task_losses: dict[int, float]) -> None:
        """Called after every optimiser step with the mean minibatch loss of each trained task."""

    def observe_eval(self, step: int, scores: dict[int, float], losses: dict[int, float]) -> None:
        """Called after every evaluation with each task's dev primary metric and mean loss."""

    # --- checkpointing (§9.4: the RNG state is part of the state) ---------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.load_extra_state({k: v for k, v in state.items() if k != "rng"})

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
