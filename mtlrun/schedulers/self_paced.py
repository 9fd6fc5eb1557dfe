"""Self-paced multi-task learning (docs/schedulers.md §3.7, our adaptation of Li et al. 2017)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import Category, Scheduler, SchedulerConfig, StepMode
from mtlrun.schedulers.dwa import check_window, default_epoch_steps, finite
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)


def self_paced_weights(losses: np.ndarray, lam: float, mode: str) -> np.ndarray:
    """The closed-form minimiser of Σ_k v_k·L̂_k − λ·Σ_k v_k over v ∈ [0, 1]^K (§3.7 (c)).

    hard: v_k = 1[L̂_k < λ]; linear: v_k = max(0, 1 − L̂_k/λ). Safeguard (§3.7 (d)): if every
    v_k is 0, the easiest task (smallest L̂, lowest index on ties) gets v = 1. Under `hard` that
    is exactly "the easiest task always has v = 1"; under `linear` the easiest task's v is already
    the largest, and the spec's oracle keeps it below 1 (0.8 for L̂ = 0.2, λ = 1). Tasks with no
    loss yet (NaN) get v = 1, so that they are measured."""
    L = np.asarray(losses, dtype=np.float64)
    known = np.isfinite(L)
    v = np.ones(len(L))
    if mode == "hard":
        v[known] = (L[known] < lam).astype(np.float64)
    else:
        v[known] = np.clip(1.0 - L[known] / lam, 0.0, 1.0)
    if known.any() and not v.any():
        v[int(np.argmin(np.where(known, L, np.inf)))] = 1.0
    return v


@register
class SelfPaced(Scheduler):
    """§3.7 self-paced task weighting (easy tasks first; the opposite of DTP) [D adaptation].

        L̂_k ← EMA_old(L̂_k, L_k; ρ) = ρ·L̂_k + (1 − ρ)·L_k     (ρ = 0.9; first L_k taken as is)
        hard (default): v_k = 1[L̂_k < λ]      linear: v_k = max(0, 1 − L̂_k/λ)
        total = Σ_k v_k·L_k                                   (v detached; via `loss_weights`)

    Pace: v = 1 during a warm-up epoch (epoch 0); at its end λ = λ_0 = the median of the L̂_k
    (or `lambda_0` if given); after every later epoch λ ← μ·λ (μ = 1.1), so harder tasks are
    admitted over time. If every v_k is 0 the easiest task gets v = 1 (safeguard). The weights
    are recomputed from the current L̂ at every step.

    "Epoch" [D]: `pace_steps` optimiser steps; `pace_steps: null` is one pass over the union of
    all tasks, as for DWA (max_k n_train_batches steps in ALL mode, Σ_k in SINGLE mode, told
    apart by the first observed step).

    Not implemented: the instance-level option (§3.7 `instance_level`) and Li et al.'s ℓ2,1
    task-selection term (not verifiable, per the spec).
    """

    name = "self_paced"
    category = Category.LOSS_WEIGHTER
    step_modes = (StepMode.ALL, StepMode.SINGLE)
    observes_train_loss = True

    @dataclass
    class Config(SchedulerConfig):
        name: str = "self_paced"
        mode: str = "hard"  # or "linear"
        rho: float = 0.9  # EMA_old weight on the past running loss
        mu: float = 1.1  # pace growth per epoch
        lambda_0: float | None = None  # null: median running loss after the warm-up epoch
        pace_steps: int | None = None  # null: one pass over the union of all tasks

        def __post_init__(self) -> None:
            if self.mode not in ("hard", "linear"):
                raise ConfigError(f"scheduler.mode must be 'hard' or 'linear' (got {self.mode!r})")
            if not 0 <= self.rho < 1:
                raise ConfigError(f"scheduler.rho must be in [0, 1) (got {self.rho})")
            if not self.mu >= 1:
                raise ConfigError(f"scheduler.mu must be >= 1 (got {self.mu})")
            if self.lambda_0 is not None and not self.lambda_0 > 0:
                raise ConfigError(f"scheduler.lambda_0 must be > 0 or null (got {self.lambda_0})")
            check_window(self.pace_steps, "pace_steps")

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self.window: int | None = cfg.pace_steps
        self.L = np.full(self.K, np.nan)  # running losses L̂_k; NaN until task k is trained
        self.lam: float | None = None  # None during the warm-up

    def loss_weights(self, t: int) -> np.ndarray:
        if self.lam is None:
            return np.ones(self.K)
        return self_paced_weights(self.L, self.lam, self.cfg.mode)

    def observe_train(self, t: int, task_losses: dict[int, float]) -> None:
        if self.window is None:
            self.window = default_epoch_steps(self.tasks, len(task_losses))
            log.info("self_paced: an epoch is %d steps", self.window)
        rho = self.cfg.rho
        for k, loss in task_losses.items():
            if not finite(loss):
                log.warning("self_paced: ignoring non-finite loss %s of task %d", loss, k)
            elif math.isnan(self.L[k]):
                self.L[k] = loss
            else:
                self.L[k] = rho * self.L[k] + (1 - rho) * loss
        if (t + 1) % self.window == 0:
            self._end_epoch()

    def _end_epoch(self) -> None:
        if self.lam is not None:
            self.lam *= self.cfg.mu
        elif self.cfg.lambda_0 is not None:
            self.lam = float(self.cfg.lambda_0)
        elif np.isfinite(self.L).any():  # else: nothing measured yet, warm up one more epoch
            self.lam = float(np.median(self.L[np.isfinite(self.L)]))

    def log_state(self) -> dict[str, Any]:
        return {
            "lambda": self.lam,
            "running_loss": [x if math.isfinite(x) else None for x in self.L.tolist()],
            "v": self.loss_weights(0).tolist(),
        }

    def extra_state(self) -> dict[str, Any]:
        return {"window": self.window, "L": self.L.copy(), "lam": self.lam}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.window = state["window"]
        self.L = np.array(state["L"], dtype=np.float64)
        self.lam = state["lam"]
