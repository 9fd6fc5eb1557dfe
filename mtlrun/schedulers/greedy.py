"""Greedy loss sampler (docs/schedulers.md §3.1, QLS "Greedy", the QLS paper §5.1).

Losses on different scales (e.g. regression next to classification, or token-level tagging
next to sentence classification) make the comparison meaningless: greedy then trains whichever
task has the naturally largest loss. A task whose loss is naturally low can starve; that is
the intended behaviour of the method (§3.1(e)).
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


@register
class GreedyLoss(Scheduler):
    """§3.1 `greedy_loss`: train k_t = argmax_k ℓ_k next (ties to the lowest index).

    ℓ_k starts at +∞, so tasks 0…K−1 are visited once in index order first. After task k trains
    on its minibatch, ℓ_k ← EMA_old(ℓ_k, L_k(t); ρ) = ρ·ℓ_k + (1 − ρ)·L_k(t) (§1.4.7), and
    ℓ_k ← L_k(t) on its first observation. ρ = 0 [D] keeps only the latest loss.

    `signal="val"` [D] uses the dev losses V_k of each evaluation instead (same EMA); until the
    first evaluation the tasks go round robin, the analogue of the +∞ warm-up.
    `refresh_every=R` [D, off]: every R steps the trainer measures one forward-only minibatch
    loss of every task and all ℓ_k are overwritten, so untrained tasks' losses do not go stale.
    """

    name = "greedy_loss"
    category = Category.SAMPLER
    step_modes = (StepMode.SINGLE,)
    observes_train_loss = True

    @dataclass
    class Config(SchedulerConfig):
        name: str = "greedy_loss"
        rho: float = 0.0  # [D] §3.1: EMA_old weight on the past; 0 = the latest loss only
        signal: str = "train"  # [D] §3.1: train (minibatch losses) | val (dev losses V_k)
        refresh_every: int | None = None  # [D] §3.1: every R steps re-measure every task's loss

        def __post_init__(self) -> None:
            if not 0 <= self.rho < 1:
                raise ConfigError(f"scheduler.rho must be in [0, 1) (got {self.rho})")
            if self.refresh_every is not None and self.refresh_every <= 0:
                raise ConfigError(
                    f"scheduler.refresh_every must be > 0 or null (got {self.refresh_every})"
                )
            if self.signal not in ("train", "val"):
                raise ConfigError(
                    f"scheduler.signal must be 'train' or 'val' (got {self.signal!r})"
                )

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        # the val signal needs no training losses: spare the trainer a device sync per step
        self.observes_train_loss = cfg.signal == "train"
        self.ell = np.full(self.K, np.inf)
        self.evaluated = False

    def _greedy(self) -> int:
        return int(np.argmax(self.ell))  # argmax returns the first maximum: ties to lowest index

    def next_task(self, t: int) -> int:
        if self.cfg.signal == "val" and not self.evaluated:
            return t % self.K
        return self._greedy()

    def task_distribution(self, t: int) -> np.ndarray:
        p = np.zeros(self.K)
        p[self.next_task(t)] = 1.0  # deterministic: the choice the next step will make
        return p

    def _update(self, losses: dict[int, float]) -> None:
        for k, loss in losses.items():
            if not math.isfinite(loss):  # §1.4.5: ignore, keep the previous state
                log.warning("greedy_loss: ignoring non-finite loss %s of task %d", loss, k)
                continue
            if math.isinf(self.ell[k]):
                self.ell[k] = loss
            else:
                self.ell[k] = self.cfg.rho * self.ell[k] + (1 - self.cfg.rho) * loss

    def wants_loss_probe(self, t: int) -> bool:
        r = self.cfg.refresh_every
        return r is not None and t > 0 and t % r == 0

    def observe_loss_probe(self, t: int, task_losses: dict[int, float]) -> None:
        for k, loss in task_losses.items():
            if math.isfinite(loss):
                self.ell[k] = loss  # overwrite: the fresh measurement replaces the stale one

    def observe_train(self, t: int, task_losses: dict[int, float]) -> None:
        if self.cfg.signal == "train":
            self._update(task_losses)

    def observe_eval(self, step: int, scores: dict[int, float], losses: dict[int, float]) -> None:
        if self.cfg.signal == "val":
            self._update(losses)
            self.evaluated = True

    def log_state(self) -> dict[str, Any]:
        return {"ell": [None if math.isinf(x) else float(x) for x in self.ell]}  # JSON-safe

    def extra_state(self) -> dict[str, Any]:
        return {"ell": self.ell.tolist(), "evaluated": self.evaluated}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.ell = np.asarray(state["ell"], dtype=np.float64)
        self.evaluated = state["evaluated"]
