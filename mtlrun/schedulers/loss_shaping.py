"""Loss shaping (docs/schedulers.md §3.2–3.3): QLS's "Loss Exponentiation" (a nonlinear transform of
each task's minibatch loss) and "Focal Loss" (a per-example reweighting inside each task).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import Category, Scheduler, SchedulerConfig, StepMode
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)

POWER_FLOOR = 1e-12  # §3.2(d): keeps the power's gradient finite near L = 0


@register
class LossExponentiation(Scheduler):
    """§3.2 `loss_exponentiation` (the QLS paper §5.1): total = Σ_k L_k^q with q = 1.15 [P], applied
    to each task's minibatch-mean loss L_k [D: after averaging].

    Its gradient Σ_k q·L_k^{q−1}·∇L_k amounts to the dynamic weights w_k = q·L_k^{q−1}, which
    `loss_weights` reports (for logging) as of the last step. L_k < 0 is an error; L_k = 0
    contributes 0 with gradient factor 0, the power taken of max(L_k, 1e-12).
    """

    name = "loss_exponentiation"
    category = Category.LOSS_WEIGHTER
    step_modes = (StepMode.ALL, StepMode.SINGLE)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "loss_exponentiation"
        q: float = 1.15  # [P] the QLS paper §5.1, found by grid search

        def __post_init__(self) -> None:
            if not (math.isfinite(self.q) and self.q > 0):
                raise ConfigError(f"scheduler.q must be > 0 (got {self.q})")

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self._w = np.ones(self.K)

    def combine(self, t: int, task_losses: dict[int, torch.Tensor]) -> torch.Tensor:
        q = float(self.cfg.q)
        values = torch.stack([loss.detach() for loss in task_losses.values()]).double().cpu()
        if bool((values < 0).any()):
            bad = {self.tasks[k].name: float(v) for k, v in zip(task_losses, values, strict=True)}
            raise ConfigError(
                f"loss_exponentiation needs losses >= 0 (got {bad}); L^q is undefined otherwise"
            )
        total = None
        for loss in task_losses.values():
            # where(): L = 0 gives exactly 0 (not 1e-12^q); the clamp keeps both branches finite
            powered = torch.where(
                loss > 0, loss.clamp(min=POWER_FLOOR) ** q, torch.zeros_like(loss)
            )
            total = powered if total is None else total + powered
        for k, v in zip(task_losses, values.tolist(), strict=True):
            self._w[k] = q * v ** (q - 1) if v > 0 else 0.0
        return total

    def loss_weights(self, t: int) -> np.ndarray:
        return self._w.copy()


@register
class FocalLoss(Scheduler):
    """§3.3 `focal_loss` (the QLS paper §5.1; Lin et al. 2017): each example's (or token's) loss is

        FL = α_t · (1 − p_t)^γ · CE,   CE = −log p_t,   p_t = exp(−CE),

    γ = 2 [P for Lin et al.; D here]. α_t = 1 by default [D]; with `alpha` set (binary tasks),
    α_t = α for label 1 and 1 − α for label 0 (torchvision uses α = 0.25). The task loss is the
    minibatch mean of FL and every task weight is 1; tasks are sampled uniformly.

    p_t comes from CE (the model's log_softmax) in log space: 1 − p_t = −expm1(−CE), which stays
    accurate when p_t is close to 1. γ = 0 gives cross-entropy back.
    """

    name = "focal_loss"
    category = Category.LOSS_WEIGHTER
    step_modes = (StepMode.SINGLE, StepMode.ALL, StepMode.MIXED)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "focal_loss"
        gamma: float = 2.0  # [P] Lin et al. 2017 / [R] TV-FOCAL
        alpha: float | None = None  # [D] off; binary tasks only (TV-FOCAL default 0.25)

        def __post_init__(self) -> None:
            if not (math.isfinite(self.gamma) and self.gamma >= 0):
                raise ConfigError(f"scheduler.gamma must be >= 0 (got {self.gamma})")
            if self.alpha is not None and not 0 <= self.alpha <= 1:
                raise ConfigError(f"scheduler.alpha must be in [0, 1] or null (got {self.alpha})")

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        multi = [t.name for t in tasks if t.num_labels != 2]
        if cfg.alpha is not None and multi:
            log.warning("scheduler.alpha applies to binary tasks only; not to %s", ", ".join(multi))

    def example_losses(self, k: int, losses: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gamma = float(self.cfg.gamma)
        # the floor keeps d/dx x^γ finite at p_t = 1 (CE = 0) when γ < 1; FL there is 0 anyway
        one_minus_pt = (-torch.expm1(-losses)).clamp(min=POWER_FLOOR)
        focal = losses if gamma == 0 else one_minus_pt**gamma * losses
        if self.cfg.alpha is None or self.tasks[k].num_labels != 2:
            return focal
        alpha = float(self.cfg.alpha)
        alpha_t = torch.where(labels == 1, alpha, 1.0 - alpha).to(focal.dtype)
        return alpha_t * focal
