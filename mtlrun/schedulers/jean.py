"""Jean, Firat & Johnson 2019 validation-based adaptive schedules (§5): an explicit
sampler (§5.1) and an implicit learning-rate scaler (§5.2), both driven by the latest dev score
s_k of each task relative to a per-task baseline b_k."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import (
    EPS_DIV,
    Category,
    Scheduler,
    SchedulerConfig,
    StepMode,
    to_probabilities,
)
from mtlrun.schedulers.baselines import check_baselines_value, resolve_baselines
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)


def explicit_distribution(
    s: np.ndarray, b: np.ndarray, alpha: float, epsilon: float, form: str = "inverse"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """§5.1 eq. 1: S_k = min(1, s_k/b_k); u_k = 1/(S_k^α + ε) ("inverse", LINGVO
    InverseRatioAdaptiveScheduler) or u_k = 1 + ε − S_k^α ("linear", SimpleAdaptiveScheduler);
    p = u / Σu. Returns (S, u, p)."""
    S = np.clip(np.asarray(s, np.float64) / np.asarray(b, np.float64), 0.0, 1.0)  # S >= 0 [D]
    Sa = S**alpha
    u = 1.0 / (Sa + epsilon) if form == "inverse" else 1.0 + epsilon - Sa
    return S, u, to_probabilities(u)


def implicit_weights(
    s: np.ndarray, b: np.ndarray, alpha: float, beta: float, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """§5.2 eq. 2: S_k = s_k/b_k (not capped); S̄ = mean S;
    w_k = 1 + sign(S̄ − S_k)·min(γ, (max_j S_j)^α·|S_k − S̄|^β); if K > 2, w ← K·w/Σw.
    Returns (S, w)."""
    S = np.asarray(s, np.float64) / np.asarray(b, np.float64)
    dev = S.mean() - S
    # a task at the mean gets sign(0) = 0; rounding in the mean must not fake a deviation,
    # since |1e-17|^0.1 is already 0.02
    dev[np.abs(dev) <= EPS_DIV * max(1.0, float(np.abs(S).max()))] = 0.0
    magnitude = np.minimum(gamma, max(float(S.max()), 0.0) ** alpha * np.abs(dev) ** beta)
    w = 1.0 + np.sign(dev) * magnitude
    if len(w) > 2:
        w = len(w) * w / w.sum()
    return S, w


class _ValidationBased(Scheduler):
    """The shared state of §5.1/§5.2: the latest dev score s_k (0 before any evaluation)."""

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self.b = np.asarray(resolve_baselines(self.name, cfg.baselines, tasks), dtype=np.float64)
        self.s = np.zeros(self.K)  # LINGVO: 0 until a task has a score
        self._refresh()

    def _refresh(self) -> None:
        """Recompute what depends on s (after each evaluation and on resume)."""

    def observe_eval(self, step: int, scores: dict[int, float], losses: dict[int, float]) -> None:
        for k, score in scores.items():
            if score is None or not math.isfinite(score):
                log.warning("%s: ignoring dev score %s of %s", self.name, score, self.tasks[k].name)
                continue  # §1.4.5: keep the previous state
            self.s[k] = score
        self._refresh()

    def extra_state(self) -> dict[str, Any]:
        return {"s": self.s.tolist()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.s = np.asarray(state["s"], dtype=np.float64)
        self._refresh()


@register
class JeanExplicit(_ValidationBased):
    """§5.1 explicit validation-based sampler (Jean et al. 2019 eq. 1; QLS "Adaptive").

    S_k = min(1, s_k/b_k), u_k = 1/(S_k^α + ε), p_k = u_k/Σ_j u_j: tasks furthest below their
    baseline are over-sampled; α sets how aggressively, ε flattens p and guards the division.
    Defaults α = 1, ε = 0.05 [R, LINGVO]. `form=linear` is LINGVO's u_k = 1 + ε − S_k^α.
    s_k is the latest dev score (0 before the first evaluation, so p starts uniform).
    """

    name = "jean_explicit"
    category = Category.SAMPLER
    step_modes = (StepMode.SINGLE, StepMode.MIXED)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "jean_explicit"
        alpha: float = 1.0
        epsilon: float = 0.05
        form: str = "inverse"

        def __post_init__(self) -> None:
            if not self.alpha > 0:
                raise ConfigError(f"scheduler.alpha must be > 0 (got {self.alpha})")
            if not self.epsilon > 0:
                raise ConfigError(f"scheduler.epsilon must be > 0 (got {self.epsilon})")
            if self.form not in ("inverse", "linear"):
                raise ConfigError(f"scheduler.form must be inverse or linear (got {self.form!r})")
            check_baselines_value(self.baselines)

    def _refresh(self) -> None:
        self._S, self._u, self._p = explicit_distribution(
            self.s, self.b, self.cfg.alpha, self.cfg.epsilon, self.cfg.form
        )
        self._cdf = np.cumsum(self._p)  # next_task draws from it until the next evaluation

    def task_distribution(self, t: int) -> np.ndarray:
        return self._p.copy()

    def log_state(self) -> dict[str, Any]:
        # Jean et al. 2019 App. C: p can oscillate if evaluation is too rare, so log it every time
        return {"p": self._p.tolist(), "S": self._S.tolist()}


@register
class JeanImplicit(_ValidationBased):
    """§5.2 implicit validation-based schedule (Jean et al. eq. 2): per-task learning-rate scales.

    S_k = s_k/b_k (not capped), S̄ = mean_j S_j,
    w_k = 1 + sign(S̄ − S_k)·min(γ, (max_j S_j)^α·|S_k − S̄|^β), renormalised to sum K if K > 2.
    Paper values α = 16, β = 0.1, γ = 0.05 [P]: (max S)^α keeps w ≈ 1 while every task still
    scores low; γ keeps w in [1−γ, 1+γ]. Tasks are sampled uniformly [D].

    `lr_scales(t)` returns w. How it applies is the optimizer's business (§5.3): by default an
    LR scaler in SINGLE mode gets one optimizer per task stepping at base_lr·w_k (the paper's
    setting); `optimizer.scale_mode=grad optimizer.layout=shared` is the gradient-scaler variant.
    """

    name = "jean_implicit"
    category = Category.LR_SCALER
    step_modes = (StepMode.SINGLE,)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "jean_implicit"
        alpha: float = 16.0
        beta: float = 0.1
        gamma: float = 0.05

        def __post_init__(self) -> None:
            if not self.alpha >= 0:
                raise ConfigError(f"scheduler.alpha must be >= 0 (got {self.alpha})")
            if not self.beta > 0:
                raise ConfigError(f"scheduler.beta must be > 0 (got {self.beta})")
            if not 0 <= self.gamma < 1:
                raise ConfigError(f"scheduler.gamma must be in [0, 1) (got {self.gamma})")
            check_baselines_value(self.baselines)

    def _refresh(self) -> None:
        self._S, self._w = implicit_weights(
            self.s, self.b, self.cfg.alpha, self.cfg.beta, self.cfg.gamma
        )

    def lr_scales(self, t: int) -> np.ndarray:
        return self._w.copy()

    def log_state(self) -> dict[str, Any]:
        return {"w": self._w.tolist(), "S": self._S.tolist()}
