"""Dynamic Task Prioritization (docs/schedulers.md §3.5, Guo et al. 2018)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import Category, Scheduler, SchedulerConfig, StepMode
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)

KAPPA_MIN = 1e-4  # §3.5 (d): caps the γ = 1 weight at −ln(1e-4)·(1 − 1e-4) = 9.2094
DEFAULT_ALPHA = {"train_batch": 0.1, "val": 0.5}  # §3.5 [D]


def focal_task_weights(kappa: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """FL(κ̄; γ) = −(1 − κ̄)^γ · log κ̄, with κ̄ clamped to [1e-4, 1] (§3.5 (c), (d))."""
    k = np.clip(np.asarray(kappa, dtype=np.float64), KAPPA_MIN, 1.0)
    return -((1.0 - k) ** gamma) * np.log(k)


def focal_example_losses(ce: torch.Tensor, gamma: float) -> torch.Tensor:
    """FL(p; γ) = (1 − p)^γ · CE with p = exp(−CE), the gold label's probability (§3.3, no α).

    CE comes from log_softmax, so p = exp(−CE) never goes through log(softmax); 1 − p is
    computed as −expm1(−CE) to keep its precision when p is close to 1; it is kept above the
    smallest normal float so that γ < 1 never meets 0^(γ−1) = inf (and inf·0 = NaN) in backward."""
    if gamma == 0:
        return ce
    return (-torch.expm1(-ce)).clamp_min(torch.finfo(ce.dtype).tiny) ** gamma * ce


@register
class DTP(Scheduler):
    """§3.5 Dynamic Task Prioritization: a task-level focal weight on an example-level focal loss.

        κ̄_k ← EMA_new(κ̄_k, κ_k; α) = α·κ_k + (1 − α)·κ̄_k     (the first KPI sets κ̄_k = κ_k)
        w_k  = FL(κ̄_k; γ_k) = −(1 − κ̄_k)^γ_k · log κ̄_k         (κ̄ clamped to [1e-4, 1])
        L*_k = mean_i (1 − p_i)^γ_0 · CE_i                    (example level, `example_losses`)
        total = Σ_k w_k · L*_k                                 (w detached; 1 until κ̄_k exists)

    Defaults [D]: γ_0 = 2, γ_k = 1, α = 0.1 for `kpi_source: train_batch` and 0.5 for `val`;
    `normalize_to_K` (off) rescales w to sum to K. κ̄ = 1 gives weight 0 (the task stops).

    KPI sources. `train_batch` (default [D]): the accuracy of each training minibatch (per token
    for tagging), which the trainer reports through `observe_train_kpis`. `val`: the dev primary
    metric of each evaluation (accuracy, F1; a fraction in [0, 1]), at the evaluation cadence.
    """

    name = "dtp"
    category = Category.LOSS_WEIGHTER
    step_modes = (StepMode.ALL, StepMode.SINGLE)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "dtp"
        kpi_source: str = "train_batch"  # or "val"
        alpha: float | None = None  # EMA weight on the new KPI; null: 0.1 train_batch, 0.5 val
        gamma_0: float = 2.0  # example-level focusing parameter
        gamma_task: float = 1.0  # task-level γ_k of every task ...
        gamma_tasks: list[float] = field(default_factory=list)  # ... or one per task
        normalize_to_K: bool = False

        def __post_init__(self) -> None:
            if self.kpi_source not in DEFAULT_ALPHA:
                raise ConfigError(
                    f"scheduler.kpi_source must be 'train_batch' or 'val' (got {self.kpi_source!r})"
                )
            if self.alpha is not None and not 0 < self.alpha <= 1:
                raise ConfigError(f"scheduler.alpha must be in (0, 1] or null (got {self.alpha})")
            if not self.gamma_0 >= 0:
                raise ConfigError(f"scheduler.gamma_0 must be >= 0 (got {self.gamma_0})")
            if not self.gamma_task >= 0 or not all(g >= 0 for g in self.gamma_tasks):
                raise ConfigError(
                    f"scheduler.gamma_task and gamma_tasks must be >= 0 "
                    f"(got {self.gamma_task}, {list(self.gamma_tasks)})"
                )

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        gammas = list(cfg.gamma_tasks) or [cfg.gamma_task] * self.K
        if len(gammas) != self.K:
            raise ConfigError(
                f"scheduler.gamma_tasks has {len(gammas)} entries but there are {self.K} tasks "
                f"({', '.join(t.name for t in tasks)}); give one per task or leave it empty"
            )
        self.gamma = np.asarray(gammas, dtype=np.float64)
        self.alpha = cfg.alpha if cfg.alpha is not None else DEFAULT_ALPHA[cfg.kpi_source]
        # instance attribute: with dev KPIs the trainer need not compute batch accuracies
        self.observes_train_kpi = cfg.kpi_source == "train_batch"
        self.kappa = np.full(self.K, np.nan)  # κ̄_k; NaN until the first KPI of task k

    # --- the weights ---------------------------------------------------------------------------
    def loss_weights(self, t: int) -> np.ndarray:
        seen = np.isfinite(self.kappa)
        w = np.ones(self.K)
        w[seen] = focal_task_weights(self.kappa[seen], self.gamma[seen])
        if self.cfg.normalize_to_K and w.sum() > 0:
            w = self.K * w / w.sum()
        return w

    def example_losses(self, k: int, losses: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return focal_example_losses(losses, self.cfg.gamma_0)

    # --- the KPIs --------------------------------------------------------------------------------
    def observe_kpi(self, k: int, kpi: float | None) -> None:
        """κ̄_k ← α·κ + (1 − α)·κ̄_k; the first KPI is taken as is. Non-finite KPIs are ignored."""
        if kpi is None or not math.isfinite(kpi):
            log.warning("dtp: ignoring non-finite KPI %s of task %d", kpi, k)
            return
        if kpi < 0 or kpi > 1:
            log.warning("dtp: KPI %s of task %d is outside [0, 1]; clipped", kpi, k)
            kpi = min(max(kpi, 0.0), 1.0)
        prev = self.kappa[k]
        self.kappa[k] = kpi if math.isnan(prev) else self.alpha * kpi + (1 - self.alpha) * prev

    def observe_train_kpis(self, t: int, task_kpis: dict[int, float]) -> None:
        for k, kpi in task_kpis.items():
            self.observe_kpi(k, kpi)

    def observe_eval(self, step: int, scores: dict[int, float], losses: dict[int, float]) -> None:
        if self.cfg.kpi_source == "val":
            for k, score in scores.items():
                self.observe_kpi(k, score)

    def log_state(self) -> dict[str, Any]:
        kappa = [x if math.isfinite(x) else None for x in self.kappa.tolist()]
        return {"kappa": kappa, "weights": self.loss_weights(0).tolist()}

    def extra_state(self) -> dict[str, Any]:
        return {"kappa": self.kappa.copy()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.kappa = np.array(state["kappa"], dtype=np.float64)
