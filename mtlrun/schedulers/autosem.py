"""AutoSeM (Guo, Pasunuru & Bansal 2019), docs/schedulers.md §6.1.

Stage 1 (`autosem`) estimates each auxiliary task's utility for the primary task with a
non-stationary Beta–Bernoulli Thompson-sampling bandit. Stage 2 (`autosem_mixing`) trains the
kept tasks with a fixed, cyclic integer mixing ratio η. AutoSeM chooses η by Gaussian-process
Bayesian optimisation *across full training runs*; one run cannot do that, so here η is a config
value and the search is a sweep over runs (recipe in conf/scheduler/autosem_mixing.yaml).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import Category, Scheduler, SchedulerConfig, StepMode, TaskInfo
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)


def bandit_update(
    alpha: np.ndarray, beta: np.ndarray, arm: int, reward: int, decay: float, prior=(1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """§6.1 stage 1 update: every arm decays toward the prior at rate γ,
    α_j ← (1−γ)·α_j + γ·α₀, β_j ← (1−γ)·β_j + γ·β₀; then the played arm counts the reward,
    α_a += r, β_a += 1 − r. γ = 0 is the stationary update of Zhou 2019."""
    alpha = (1 - decay) * np.asarray(alpha, np.float64) + decay * prior[0]
    beta = (1 - decay) * np.asarray(beta, np.float64) + decay * prior[1]
    alpha[arm] += reward
    beta[arm] += 1 - reward
    return alpha, beta


def reward(score: float, previous: float) -> int:
    """§6.1: r = 1 if the primary task's dev score did not drop (a tie is a success) [R]."""
    return int(score >= previous)


def cyclic_schedule(ratio: list[int]) -> np.ndarray:
    """§6.1 stage 2 [R, `_task_selector`]: task k repeated η_k times, in task order."""
    return np.repeat(np.arange(len(ratio)), ratio)


def primary_index(primary: str | None, tasks: list[TaskInfo], scheduler: str) -> int:
    """The primary task: `scheduler.primary` by name, else the task flagged is_primary, else
    the first task (the reference code's index 0)."""
    names = [t.name for t in tasks]
    if primary is not None:
        if primary not in names:
            raise ConfigError(
                f"scheduler.primary={primary} is not a task; choose one of: {', '.join(names)}"
            )
        return names.index(primary)
    flagged = [k for k, t in enumerate(tasks) if t.is_primary]
    if flagged:
        return flagged[0]
    log.info("%s: no scheduler.primary given, the primary task is %s", scheduler, names[0])
    return 0


@register
class AutoSeM(Scheduler):
    """§6.1 stage 1: Thompson sampling over tasks, rewarded by the primary task's dev score.

    State (α_k, β_k), prior (1, 1) [R]; the current arm starts at the primary task. After every
    evaluation (every `trainer.eval_every` steps, the code's steps_per_eval):
        r = 1 if s_primary >= previous s_primary (initially 0.0) else 0
        α_j ← (1−γ)α_j + γ·1, β_j ← (1−γ)β_j + γ·1 for every arm (γ = decay = 0.3 [R])
        α_a += r, β_a += 1 − r
        θ_j ~ Beta(α_j, β_j); a ← argmax_j θ_j, ties broken at random [R]
    Between evaluations every step trains arm a. utility_j = α_j / (α_j + β_j).
    Stage 1's output (logged each evaluation): the utilities and the kept tasks — the primary,
    plus each auxiliary task with utility > 0.5 (the prior mean), or the `top_m` best auxiliary
    tasks if top_m is set [D].
    """

    name = "autosem"
    learned = True
    category = Category.POLICY
    step_modes = (StepMode.SINGLE,)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "autosem"
        decay: float = 0.3
        prior_alpha: float = 1.0
        prior_beta: float = 1.0
        primary: str | None = None
        top_m: int | None = None

        def __post_init__(self) -> None:
            if not 0 <= self.decay <= 1:
                raise ConfigError(f"scheduler.decay must be in [0, 1] (got {self.decay})")
            if not (self.prior_alpha > 0 and self.prior_beta > 0):
                raise ConfigError(
                    "scheduler.prior_alpha and scheduler.prior_beta must be > 0 "
                    f"(got {self.prior_alpha}, {self.prior_beta})"
                )
            if self.top_m is not None and self.top_m < 0:
                raise ConfigError(f"scheduler.top_m must be >= 0 (got {self.top_m})")

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self.primary = primary_index(cfg.primary, tasks, self.name)
        self.alpha = np.full(self.K, float(cfg.prior_alpha))
        self.beta = np.full(self.K, float(cfg.prior_beta))
        self.arm = self.primary
        self.previous = 0.0  # [R]: the first reward compares against 0.0
        self.last_reward: int | None = None

    def task_distribution(self, t: int) -> np.ndarray:
        """The arm in play is trained at every step until the next evaluation."""
        p = np.zeros(self.K)
        p[self.arm] = 1.0
        return p

    def next_task(self, t: int) -> int:
        return self.arm

    def utilities(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)

    def kept_tasks(self) -> list[int]:
        u = self.utilities()
        aux = [k for k in range(self.K) if k != self.primary]
        if self.cfg.top_m is not None:
            # stable sort: equal utilities keep task order
            aux = sorted(aux, key=lambda k: -u[k])[: self.cfg.top_m]
        else:
            aux = [k for k in aux if u[k] > 0.5]
        return sorted([self.primary, *aux])

    def observe_eval(self, step: int, scores: dict[int, float], losses: dict[int, float]) -> None:
        score = scores.get(self.primary)
        if score is None or not math.isfinite(score):
            log.warning("autosem: no usable primary dev score (%s): bandit unchanged", score)
            return  # §1.4.5
        r = reward(score, self.previous)
        self.previous = float(score)
        self.last_reward = r
        prior = (self.cfg.prior_alpha, self.cfg.prior_beta)
        self.alpha, self.beta = bandit_update(
            self.alpha, self.beta, self.arm, r, self.cfg.decay, prior
        )
        theta = self.rng.beta(self.alpha, self.beta)
        best = np.flatnonzero(theta == theta.max())
        self.arm = int(best[0] if len(best) == 1 else self.rng.choice(best))

    def log_state(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha.tolist(),
            "beta": self.beta.tolist(),
            "utility": self.utilities().tolist(),
            "arm": self.tasks[self.arm].name,
            "reward": self.last_reward,
            "kept": [self.tasks[k].name for k in self.kept_tasks()],
        }

    def extra_state(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha.tolist(),
            "beta": self.beta.tolist(),
            "arm": self.arm,
            "previous": self.previous,
            "last_reward": self.last_reward,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.alpha = np.asarray(state["alpha"], np.float64)
        self.beta = np.asarray(state["beta"], np.float64)
        self.arm = int(state["arm"])
        self.previous = float(state["previous"])
        self.last_reward = state["last_reward"]


@register
class AutoSeMMixing(Scheduler):
    """§6.1 stage 2: a fixed integer mixing ratio η, deterministic and cyclic [R].

    flat = [k repeated η_k times, in task order]; step t trains flat[t mod Σ η]. η_k = 0 leaves
    task k out (a task stage 1 did not keep); an empty `ratio` means η = 1 for every task.
    The GP Bayesian optimisation of η over full runs (objective: primary dev score) is a sweep
    of runs, not part of one run.
    """

    name = "autosem_mixing"
    learned = True
    category = Category.SAMPLER
    step_modes = (StepMode.SINGLE,)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "autosem_mixing"
        ratio: list[int] = field(default_factory=list)  # one integer per task, in task order

        def __post_init__(self) -> None:
            if any(r < 0 for r in self.ratio) or (self.ratio and sum(self.ratio) == 0):
                raise ConfigError(
                    f"scheduler.ratio must be integers >= 0, not all 0 (got {list(self.ratio)})"
                )

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        ratio = list(cfg.ratio) or [1] * self.K
        if len(ratio) != self.K:
            raise ConfigError(
                f"scheduler.ratio has {len(ratio)} entries but there are {self.K} tasks "
                f"({', '.join(t.name for t in tasks)}); give one integer per task"
            )
        self.ratio = np.asarray(ratio, dtype=np.int64)
        self.flat = cyclic_schedule(ratio)

    def task_distribution(self, t: int) -> np.ndarray:
        return self.ratio / self.ratio.sum()

    def next_task(self, t: int) -> int:
        return int(self.flat[t % len(self.flat)])  # a pure function of t: resumes exactly
