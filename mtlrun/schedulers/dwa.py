"""Dynamic Weight Average (docs/schedulers.md §3.4), plus the epoch-window helper that `self_paced`
shares: both methods act once per "epoch", and the trainer's notion of an epoch depends on the
step mode, which a scheduler does not see directly."""

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
    TaskInfo,
)
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)


def default_epoch_steps(tasks: list[TaskInfo], tasks_per_step: int) -> int:
    """One pass over the union of all tasks, in optimiser steps (§3.4 (d), [D]).

    A step that trains one task (SINGLE mode) consumes one minibatch, so a pass takes
    Σ_k n_train_batches steps; a step that trains every task (ALL mode) consumes one minibatch of
    each, so every task has made at least one pass after max_k n_train_batches steps. The caller
    tells which from the first step it observes (how many tasks it trained)."""
    batches = [t.n_train_batches for t in tasks]
    steps = max(batches) if tasks_per_step > 1 else sum(batches)
    return max(int(steps), 1)


def check_window(value: int | None, key: str) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"scheduler.{key} must be >= 1 or null (got {value})")


def finite(x: float) -> bool:
    """§1.4.5: NaN or inf observations are ignored (the caller logs them)."""
    return x is not None and math.isfinite(x)


def dwa_weights(last: np.ndarray, before: np.ndarray, T: float) -> np.ndarray:
    """λ_k = K·softmax_k(r/T) with r_k = last_k / before_k (§3.4 (c)).

    r_k = 1 where before_k ≤ ε_div or either mean is unknown (NaN: the task was never trained).
    The softmax subtracts the maximum first, so no exp overflows."""
    last, before = np.asarray(last, np.float64), np.asarray(before, np.float64)
    known = np.isfinite(last) & np.isfinite(before) & (before > EPS_DIV)
    r = np.ones(len(last))
    r[known] = last[known] / before[known]
    z = r / T
    e = np.exp(z - z.max())
    return len(last) * e / e.sum()


@register
class DWA(Scheduler):
    """§3.4 Dynamic Weight Average (Liu, Johns & Davison 2019; formula as in LibMTL `DWA.py`).

        r_k(e−1) = L̄_k(e−1) / L̄_k(e−2)
        λ_k(e)   = K · exp(r_k(e−1)/T) / Σ_j exp(r_j(e−1)/T)        (T = 2 [P])

    L̄_k(e) is task k's mean training loss over epoch e; λ = 1 during epochs 0 and 1; the weights
    sum to K and change only at epoch boundaries. A task that trained no batch in an epoch
    (SINGLE mode with a skewed sampler) carries its last mean forward; r_k = 1 while a mean is
    missing or L̄_k(e−2) ≤ ε_div.

    "Epoch" [D]: a window of `window_steps` optimiser steps (epoch e = steps [eW, (e+1)W)).
    `window_steps: null` is one pass over the union of all tasks, worked out from the first
    observed step: max_k n_train_batches steps if it trained every task (ALL mode), Σ_k
    n_train_batches if it trained one (SINGLE mode); see `default_epoch_steps`.

    `signal: val` [D] (Jean et al. §5) uses dev losses instead: each evaluation round plays the part
    of an epoch, so after rounds τ−1 and τ the weights use r_k = V_k(τ) / V_k(τ−1) (ones until two
    rounds have been seen) and no training loss is read.
    """

    name = "dwa"
    category = Category.LOSS_WEIGHTER
    step_modes = (StepMode.ALL, StepMode.SINGLE)
    observes_train_loss = True

    @dataclass
    class Config(SchedulerConfig):
        name: str = "dwa"
        T: float = 2.0
        signal: str = "train"  # or "val"
        window_steps: int | None = None  # null: one pass over the union of all tasks

        def __post_init__(self) -> None:
            if not self.T > 0:
                raise ConfigError(f"scheduler.T must be > 0 (got {self.T})")
            if self.signal not in ("train", "val"):
                raise ConfigError(
                    f"scheduler.signal must be 'train' or 'val' (got {self.signal!r})"
                )
            check_window(self.window_steps, "window_steps")

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        # an instance attribute: with dev losses the trainer need not sync each step's losses
        self.observes_train_loss = cfg.signal == "train"
        self.window: int | None = cfg.window_steps
        self._sum = np.zeros(self.K)  # the current window's loss sums and counts
        self._count = np.zeros(self.K, dtype=np.int64)
        self._means: list[np.ndarray] = []  # the last two completed epochs' means, oldest first
        self._w = np.ones(self.K)

    def loss_weights(self, t: int) -> np.ndarray:
        return self._w.copy()

    def _push(self, means: np.ndarray) -> None:
        """Close an epoch: carry missing means forward, then recompute the weights."""
        if self._means:
            means = np.where(np.isfinite(means), means, self._means[-1])
        self._means = [*self._means, means][-2:]
        if len(self._means) == 2:
            self._w = dwa_weights(self._means[1], self._means[0], self.cfg.T)

    def observe_train(self, t: int, task_losses: dict[int, float]) -> None:
        if self.window is None:
            self.window = default_epoch_steps(self.tasks, len(task_losses))
            log.info("dwa: an epoch is %d steps", self.window)
        for k, loss in task_losses.items():
            if finite(loss):
                self._sum[k] += loss
                self._count[k] += 1
            else:
                log.warning("dwa: ignoring non-finite loss %s of task %d at step %d", loss, k, t)
        if (t + 1) % self.window == 0:
            with np.errstate(invalid="ignore"):  # 0/0 = NaN marks a task with no batches
                self._push(self._sum / self._count)
            self._sum[:] = 0.0
            self._count[:] = 0

    def observe_eval(self, step: int, scores: dict[int, float], losses: dict[int, float]) -> None:
        if self.cfg.signal != "val":
            return
        v = np.array([losses.get(k, math.nan) for k in range(self.K)], dtype=np.float64)
        if not np.all(np.isfinite(v)):
            log.warning("dwa: non-finite dev losses %s at step %d: carried forward", v, step)
        self._push(np.where(np.isfinite(v), v, math.nan))  # NaN: carried forward

    def log_state(self) -> dict[str, Any]:
        means = [[x if math.isfinite(x) else None for x in m.tolist()] for m in self._means]
        return {"weights": self._w.tolist(), "epoch_means": means}

    def extra_state(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "sum": self._sum.copy(),
            "count": self._count.copy(),
            "means": [m.copy() for m in self._means],
            "w": self._w.copy(),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.window = state["window"]
        self._sum = np.array(state["sum"], dtype=np.float64)
        self._count = np.array(state["count"], dtype=np.int64)
        self._means = [np.array(m, dtype=np.float64) for m in state["means"]]
        self._w = np.array(state["w"], dtype=np.float64)
