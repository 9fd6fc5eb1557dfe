"""Homoscedastic-uncertainty loss weighting (§3.6; Kendall, Gal & Cipolla 2018)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import Category, Scheduler, SchedulerConfig, StepMode
from mtlrun.schedulers.registry import register

VARIANTS = ("faithful", "simple", "libmtl")
DEFAULT_INIT = {"faithful": 0.0, "simple": 0.0, "libmtl": -0.5}  # [D]; libmtl [R, LIBMTL UW.py]


def kendall_coefficients(variant: str, loss_kind: str) -> tuple[float, float]:
    """(c, d) in ℓ = c·exp(−s)·L + d·s for one task (§3.6 (c)).

    faithful: classification (softmax with temperature σ², also token tagging) c = 1, d = ½;
    regression (Gaussian likelihood) c = ½, d = ½. simple: c = 1, d = 1. libmtl: c = ½, d = ½
    for every task."""
    if variant == "simple":
        return 1.0, 1.0
    if variant == "libmtl" or loss_kind == "regression":
        return 0.5, 0.5
    return 1.0, 0.5


@register
class KendallUncertainty(Scheduler):
    """§3.6: one learned log-variance s_k = log σ_k² per task, trained with the model.

        ℓ_k   = c_k·exp(−s_k)·L_k + d_k·s_k          total = Σ_k ℓ_k   (over the trained tasks)
        faithful: classification/tagging c = 1, d = ½  (= L/σ² + log σ)
                  regression             c = ½, d = ½  (= L/(2σ²) + log σ)
        simple:   c = 1, d = 1;   libmtl: c = ½, d = ½ for every task, s initialised at −0.5

    The s_k are K scalar `torch.nn.Parameter`s (`extra_parameters`), stepped by the model's
    optimiser without weight decay and saved with the scheduler's state. Separate scalars, not
    one vector: in SINGLE mode only the drawn task's term is in the total, so only its s_k gets a
    gradient, and the others (grad None) are not moved by Adam's momentum either.

    At a stationary point of s_k (L_k fixed) the effective weight c·exp(−s_k) is 1/(2L_k) for
    both faithful rows and libmtl, and 1/L_k for simple: large-loss tasks are down-weighted.
    `loss_weights` reports the effective weights c_k·exp(−s_k) (for logging; `combine` is the
    loss). Default init s = 0 [D]; `init: null` = 0, or −0.5 for libmtl.
    """

    name = "kendall_uncertainty"
    category = Category.LOSS_WEIGHTER
    step_modes = (StepMode.ALL, StepMode.SINGLE)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "kendall_uncertainty"
        variant: str = "faithful"  # or "simple", "libmtl"
        init: float | None = None  # initial s_k; null: 0 (libmtl: −0.5)

        def __post_init__(self) -> None:
            if self.variant not in VARIANTS:
                raise ConfigError(
                    f"scheduler.variant must be one of {', '.join(VARIANTS)} (got {self.variant!r})"
                )
            if self.init is not None and not math.isfinite(self.init):
                raise ConfigError(f"scheduler.init must be finite or null (got {self.init})")

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        init = cfg.init if cfg.init is not None else DEFAULT_INIT[cfg.variant]
        self.s = [torch.nn.Parameter(torch.tensor(float(init))) for _ in tasks]
        cd = [kendall_coefficients(cfg.variant, t.loss_kind) for t in tasks]
        self.c = [c for c, _ in cd]
        self.d = [d for _, d in cd]

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.s)

    def combine(self, t: int, task_losses: dict[int, torch.Tensor]) -> torch.Tensor:
        terms = []
        for k, loss in task_losses.items():
            s = self.s[k].to(loss.device)  # differentiable: the gradient reaches s_k
            terms.append(self.c[k] * torch.exp(-s) * loss + self.d[k] * s)
        return torch.stack(terms).sum()

    def loss_weights(self, t: int) -> np.ndarray:
        s = np.array([p.item() for p in self.s])
        return np.asarray(self.c) * np.exp(-s)

    def log_state(self) -> dict[str, Any]:
        return {"s": [p.item() for p in self.s], "weights": self.loss_weights(0).tolist()}
