"""Static samplers (docs/schedulers.md §2.1–2.6) and the single-task baseline.

Each fixes the task distribution up front (union fixes it per epoch) and never looks at
losses or scores.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import MISSING

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import (
    Scheduler,
    SchedulerConfig,
    StepMode,
    TaskInfo,
    to_probabilities,
)
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)


class StaticSampler(Scheduler):
    """A sampler whose distribution is computed once, in `distribution()`."""

    step_modes = (StepMode.SINGLE, StepMode.MIXED)

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self._p = self.distribution()
        self._cdf = np.cumsum(self._p)

    def distribution(self) -> np.ndarray:
        raise NotImplementedError

    def task_distribution(self, t: int) -> np.ndarray:
        return self._p.copy()


@register
class Uniform(StaticSampler):
    """§2.1 `uniform_sampling` (QLS "Random"): p_k = 1/K."""

    name = "uniform"

    @dataclass
    class Config(SchedulerConfig):
        name: str = "uniform"

    def distribution(self) -> np.ndarray:
        return np.full(self.K, 1.0 / self.K)


@register
class RoundRobin(Scheduler):
    """§2.2: tasks in order 0, 1, …, K−1, 0, 1, … (deterministic uniform)."""

    name = "round_robin"

    @dataclass
    class Config(SchedulerConfig):
        name: str = "round_robin"

    def next_task(self, t: int) -> int:
        return t % self.K  # a pure function of the step: resumes exactly with no state


@dataclass
class ProportionalConfig(SchedulerConfig):
    name: str = "proportional"
    count_unit: str = "examples"  # or "batches" (§2.3)

    def __post_init__(self) -> None:
        if self.count_unit not in ("examples", "batches"):
            raise ConfigError(
                f"scheduler.count_unit must be 'examples' or 'batches' (got {self.count_unit!r})"
            )


def task_sizes(tasks: list[TaskInfo], count_unit: str) -> np.ndarray:
    n = [t.n_train if count_unit == "examples" else t.n_train_batches for t in tasks]
    sizes = np.asarray(n, dtype=np.float64)
    if sizes.sum() <= 0:
        raise ConfigError("every task has an empty training set: nothing to sample")
    return sizes


@register
class Proportional(StaticSampler):
    """§2.3: p_k = n_k / Σ_j n_j, counting examples (default) or minibatches."""

    name = "proportional"
    Config = ProportionalConfig

    def distribution(self) -> np.ndarray:
        n = task_sizes(self.tasks, self.cfg.count_unit)
        return n / n.sum()


@register
class Temperature(StaticSampler):
    """§2.4: p_k ∝ (n_k / Σ_j n_j)^(1/T). T = 1 is proportional; T = inf is exactly uniform."""

    name = "temperature"

    @dataclass
    class Config(ProportionalConfig):
        name: str = "temperature"
        T: float = 5.0

        def __post_init__(self) -> None:
            super().__post_init__()
            if not self.T > 0:
                raise ConfigError(f"scheduler.T must be > 0 (got {self.T})")

    def distribution(self) -> np.ndarray:
        if math.isinf(self.cfg.T):
            return np.full(self.K, 1.0 / self.K)  # special case: never compute 0^0
        n = task_sizes(self.tasks, self.cfg.count_unit)
        return to_probabilities((n / n.sum()) ** (1.0 / self.cfg.T))


@register
class Union(Scheduler):
    """§2.5 MT-DNN union sampling: pool every task's minibatches, shuffle, walk once per epoch.

    Sampling without replacement: over one epoch task k is drawn exactly n_train_batches times.
    `mixed=true` is the variant `union_mixed` [D]: the pool holds every training *example*'s
    task, and each (MIXED-mode) batch takes the next B of them, so batches mix tasks.
    """

    name = "union"
    step_modes = (StepMode.SINGLE, StepMode.MIXED)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "union"
        mixed: bool = False  # [D] §2.5 union_mixed: examples of several tasks in one batch

    @classmethod
    def default_step_mode(cls, cfg: Any) -> StepMode:
        return StepMode.MIXED if cfg.mixed else StepMode.SINGLE

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        counts = [t.n_train if cfg.mixed else t.n_train_batches for t in tasks]
        if sum(counts) == 0:
            raise ConfigError("every task has an empty training set: nothing to sample")
        self._pool = np.repeat(np.arange(self.K), counts)
        self._epoch: np.ndarray = self._pool[:0]
        self._cursor = 0

    def task_distribution(self, t: int) -> np.ndarray:
        return to_probabilities(np.bincount(self._pool, minlength=self.K))

    def _take(self, n: int) -> np.ndarray:
        """The next n entries of the shuffled pool; a new permutation at each epoch's end."""
        parts = []
        while n > 0:
            if self._cursor == len(self._epoch):
                self._epoch = self.rng.permutation(self._pool)
                self._cursor = 0
            part = self._epoch[self._cursor : self._cursor + n]
            self._cursor += len(part)
            n -= len(part)
            parts.append(part)
        return np.concatenate(parts)

    def next_task(self, t: int) -> int:
        return int(self._take(1)[0])

    def mixed_counts(self, t: int, batch_size: int) -> np.ndarray:
        return np.bincount(self._take(batch_size), minlength=self.K)

    def extra_state(self) -> dict[str, Any]:
        return {"epoch": self._epoch.tolist(), "cursor": self._cursor}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._epoch = np.asarray(state["epoch"], dtype=np.int64)
        self._cursor = state["cursor"]


@register
class Constant(StaticSampler):
    """§2.6 explicit constant schedule (Jean et al. "Explicit – Constant"): given p, normalised."""

    name = "constant"

    @dataclass
    class Config(SchedulerConfig):
        name: str = "constant"
        p: list[float] = field(default_factory=list)  # one entry per task, in task order

    def distribution(self) -> np.ndarray:
        p = np.asarray(self.cfg.p, dtype=np.float64)
        if len(p) != self.K:
            raise ConfigError(
                f"scheduler.p has {len(p)} entries but there are {self.K} tasks "
                f"({', '.join(t.name for t in self.tasks)}); give one probability per task"
            )
        if np.any(p < 0) or not np.all(np.isfinite(p)) or p.sum() <= 0:
            raise ConfigError(f"scheduler.p must be finite, >= 0 and not all 0 (got {list(p)})")
        for task, pk in zip(self.tasks, p, strict=True):
            if pk == 0:
                log.warning(
                    "scheduler.p gives task %s probability 0: it is never trained", task.name
                )
        return p / p.sum()


@register
class Single(StaticSampler):
    """The single-task baseline: train (and evaluate) only `scheduler.task`."""

    name = "single"

    @dataclass
    class Config(SchedulerConfig):
        name: str = "single"
        task: str = MISSING

    @classmethod
    def task_subset(cls, cfg: Any) -> list[str] | None:
        return [cfg.task]

    def distribution(self) -> np.ndarray:
        return np.ones(1)
