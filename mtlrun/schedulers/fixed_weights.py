"""Fixed loss weightings (docs/schedulers.md §2.7–2.9): QLS's "Uniform (baseline)", "Hand Crafted"
and the Table 6 "prioritise easy / hard" schedules.

Each fixes w once at construction and never looks at losses or scores. Their published
setting trains every task every step (ALL mode); in SINGLE mode the drawn task's loss is
multiplied by its weight (the registry warns that this is not the published setting).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import (
    Category,
    Scheduler,
    SchedulerConfig,
    StepMode,
    TaskInfo,
    to_probabilities,
)
from mtlrun.schedulers.baselines import check_baselines_value, resolve_baselines
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)


def task_list(tasks: list[TaskInfo]) -> str:
    return ", ".join(t.name for t in tasks)


@register
class UniformWeights(Scheduler):
    """§2.7 `uniform_weights` (QLS "Uniform (baseline)", the QLS paper §5.1 and eq. 3 with α_k = 1).

    w_k = 1 for every task; in ALL mode the step loss is Σ_k L_k. In SINGLE mode (the §2.7
    interpretation note) tasks come in round-robin order k_t = t mod K.
    """

    name = "uniform_weights"
    category = Category.LOSS_WEIGHTER
    step_modes = (StepMode.ALL, StepMode.SINGLE)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "uniform_weights"

    def next_task(self, t: int) -> int:
        return t % self.K  # round robin (§2.2): a pure function of t, so resuming needs no state


@register
class HandCrafted(Scheduler):
    """§2.8 `hand_crafted` (QLS "Hand Crafted", the QLS paper §5.1): a user-given fixed
    w ∈ R_{≥0}^K for the whole run; the step loss is Σ_k w_k·L_k.

    The paper found its weights by grid search and does not report them [U]; the grid search is
    a Hydra multirun over `scheduler.w` (see conf/scheduler/hand_crafted.yaml).
    """

    name = "hand_crafted"
    category = Category.LOSS_WEIGHTER
    step_modes = (StepMode.ALL, StepMode.SINGLE)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "hand_crafted"
        w: list[float] = field(default_factory=list)  # one weight per task, in task order

        def __post_init__(self) -> None:
            w = [float(x) for x in self.w]
            if any(not math.isfinite(x) or x < 0 for x in w):
                raise ConfigError(f"scheduler.w must be finite and >= 0 (got {w})")
            if w and not any(w):
                raise ConfigError("scheduler.w is all zeros: no task would be trained")

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        w = np.asarray(cfg.w, dtype=np.float64)
        if len(w) != self.K:
            example = ",".join(["1"] * self.K)
            raise ConfigError(
                f"scheduler.w has {len(w)} entries but there are {self.K} tasks "
                f"({task_list(tasks)}); give one weight per task, e.g. 'scheduler.w=[{example}]'"
            )
        for task, wk in zip(tasks, w, strict=True):
            if wk == 0:
                log.warning("scheduler.w gives task %s weight 0: it learns nothing", task.name)
        self._w = w

    def loss_weights(self, t: int) -> np.ndarray:
        return self._w.copy()


@dataclass
class PrioritizeConfig(SchedulerConfig):
    name: str = "prioritize_hard"
    w_target: float = 0.98  # [P] the QLS paper §5.3: weight of the easiest / hardest task
    w_other: float = 0.01  # [P] the QLS paper §5.3: weight of every other task
    as_sampler: bool = False  # [D] §2.9(a): sample from the normalised weights instead

    def __post_init__(self) -> None:
        for key in ("w_target", "w_other"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"scheduler.{key} must be finite and >= 0 (got {value})")
        if self.w_target + self.w_other <= 0:
            raise ConfigError("scheduler.w_target and scheduler.w_other are both 0")
        check_baselines_value(self.baselines)


class Prioritize(Scheduler):
    """§2.9 (the QLS paper §5.3, Table 6): w_h = 0.98 for the target task h, w_k = 0.01 otherwise.

    Weighter mode keeps w un-normalised, as the paper states (K = 2 sums to 0.99). With
    `as_sampler` the scheduler samples p = w / Σw and every loss weight is 1.

    Difficulty [D]: `TaskInfo.difficulty_rank` (0 = easiest) when every task has one; otherwise
    the baselines b_k (`scheduler.baselines`, else `TaskInfo.baseline_score`), lowest score =
    hardest. Ties go to the lowest index.
    """

    category = Category.LOSS_WEIGHTER
    step_modes = (StepMode.ALL, StepMode.SINGLE, StepMode.MIXED)
    hardest: bool  # which end of the difficulty order gets w_target

    @classmethod
    def default_step_mode(cls, cfg) -> StepMode:
        return StepMode.SINGLE if cfg.as_sampler else StepMode.ALL

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self.target = self._target_task()
        w = np.full(self.K, float(cfg.w_other))
        w[self.target] = cfg.w_target
        self._w = w
        self._p = to_probabilities(w)
        if cfg.as_sampler:
            self._cdf = np.cumsum(self._p)
        log.info("%s: target task %s, weights %s", self.name, tasks[self.target].name, w.tolist())

    def _target_task(self) -> int:
        ranks = [t.difficulty_rank for t in self.tasks]
        if all(r is not None for r in ranks):
            if self.cfg.baselines is not None:
                log.warning("%s: the tasks' difficulty_rank is used; scheduler.baselines is "
                            "ignored", self.name)  # fmt: skip
            # rank 0 = easiest; argmax/argmin return the lowest index on ties
            return int(np.argmax(ranks) if self.hardest else np.argmin(ranks))
        # no ranks: the lowest single-task dev score is the hardest task
        b = resolve_baselines(self.name, self.cfg.baselines, self.tasks)
        return int(np.argmin(b) if self.hardest else np.argmax(b))

    def task_distribution(self, t: int) -> np.ndarray:
        return self._p.copy() if self.cfg.as_sampler else np.full(self.K, 1.0 / self.K)

    def loss_weights(self, t: int) -> np.ndarray:
        return np.ones(self.K) if self.cfg.as_sampler else self._w.copy()

    def log_state(self) -> dict[str, Any]:
        return {"target_task": self.tasks[self.target].name}


@register
class PrioritizeHard(Prioritize):
    """§2.9 `prioritize_hard`: w_h = 0.98 for the hardest task h (lowest b_k), 0.01 otherwise."""

    name = "prioritize_hard"
    hardest = True

    @dataclass
    class Config(PrioritizeConfig):
        name: str = "prioritize_hard"


@register
class PrioritizeEasy(Prioritize):
    """§2.9 `prioritize_easy`: w_e = 0.98 for the easiest task e (highest b_k), 0.01 otherwise."""

    name = "prioritize_easy"
    hardest = False

    @dataclass
    class Config(PrioritizeConfig):
        name: str = "prioritize_easy"
