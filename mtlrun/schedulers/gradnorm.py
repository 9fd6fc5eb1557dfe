"""GradNorm (Chen et al. 2018), docs/schedulers.md §4.1: learned loss weights that balance the
per-task gradient norms on the last shared layer W."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import EPS_DIV, Category, Scheduler, SchedulerConfig, StepMode
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)

W_MIN = 1e-4  # §4.1 step 8 [D]: weights are clipped here before renormalising


def gradnorm_targets(
    w: np.ndarray, g: np.ndarray, l0: np.ndarray, lt: np.ndarray, alpha: float
) -> dict[str, Any]:
    """One GradNorm objective evaluation (§4.1 (c) steps 2–5), as a pure function.

    G_k = w_k·g_k, Ḡ = mean G, L̃_k = L_k(t)/L_k(0) (1 if L_k(0) <= ε_div), r_k = L̃_k / mean L̃,
    target_k = Ḡ·r_k^α (a constant), L_grad = Σ|G_k − target_k| and its closed-form gradient
    ∂L_grad/∂w_k = sign(G_k − target_k)·g_k (no gradient through Ḡ or r, so no double backprop).
    """
    w, g = np.asarray(w, np.float64), np.asarray(g, np.float64)
    l0, lt = np.asarray(l0, np.float64), np.asarray(lt, np.float64)
    G = w * g
    G_bar = G.mean()
    ratio = np.where(l0 > EPS_DIV, lt / np.where(l0 > EPS_DIV, l0, 1.0), 1.0)
    r = ratio / max(ratio.mean(), EPS_DIV)
    target = G_bar * r**alpha
    diff = G - target
    return {
        "G": G,
        "G_bar": G_bar,
        "r": r,
        "target": target,
        "L_grad": float(np.abs(diff).sum()),
        "grad_w": np.sign(diff) * g,
    }


def renormalise(w: np.ndarray) -> np.ndarray:
    """§4.1 step 8: clip at 1e-4, then rescale so the weights sum to K [P]."""
    w = np.maximum(np.asarray(w, np.float64), W_MIN)
    return len(w) * w / w.sum()


@register
class GradNorm(Scheduler):
    """§4.1 GradNorm: learn w so that every task's gradient norm on W tracks Ḡ·r_k^α.

    Per step (ALL mode): g_k = ‖∇_W L_k‖₂ for every task (one backward restricted to W each,
    `torch.autograd.grad(..., retain_graph=True)`); the network is trained on Σ_k w_k(t)·L_k with
    the weights *before* this step's update (w are detached constants for the network, §1.4.8);
    then w takes one step of its own optimizer (Adam, lr 0.025 [D]) on the closed-form
    ∂L_grad/∂w (see `gradnorm_targets`), is clipped at 1e-4 and renormalised to sum to K.

    `parameterization=softmax` is the LIBMTL variant w = K·softmax(φ): φ is stepped through
    autograd on L_grad (with g, Ḡ and the targets constant); normalisation is then implicit.

    L_k(0): `first_step` (default [D]) takes the first step's losses; `log_num_classes` uses
    ln C_k, the loss of a uniform prediction over task k's C_k labels; `first_epoch_mean` (LIBMTL)
    keeps w = 1 for the first epoch (max_k n_train_batches steps, the steps after which every task
    has seen its whole training set once) and uses the mean loss over it.
    """

    name = "gradnorm"
    category = Category.GRAD_MANIPULATOR
    step_modes = (StepMode.ALL,)  # GradNorm needs every task's gradient every step (§1.2)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "gradnorm"
        alpha: float = 1.5
        w_optimizer: str = "adam"
        w_lr: float = 0.025
        parameterization: str = "direct"
        l0_mode: str = "first_step"
        loss_ema: float = 0.0

        def __post_init__(self) -> None:
            if not self.alpha >= 0:
                raise ConfigError(f"scheduler.alpha must be >= 0 (got {self.alpha})")
            if self.w_optimizer not in ("adam", "sgd"):
                raise ConfigError(
                    f"scheduler.w_optimizer must be adam or sgd (got {self.w_optimizer!r})"
                )
            if not self.w_lr > 0:
                raise ConfigError(f"scheduler.w_lr must be > 0 (got {self.w_lr})")
            if self.parameterization not in ("direct", "softmax"):
                raise ConfigError(
                    "scheduler.parameterization must be direct or softmax "
                    f"(got {self.parameterization!r})"
                )
            if self.l0_mode not in ("first_step", "first_epoch_mean", "log_num_classes"):
                raise ConfigError(
                    "scheduler.l0_mode must be first_step, first_epoch_mean or log_num_classes "
                    f"(got {self.l0_mode!r})"
                )
            if not 0 <= self.loss_ema < 1:
                raise ConfigError(f"scheduler.loss_ema must be in [0, 1) (got {self.loss_ema})")

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        # float64 on the CPU: w is K numbers; its optimizer is independent of the network's
        self._param = torch.zeros(self.K, dtype=torch.float64, requires_grad=True)
        if cfg.parameterization == "direct":
            with torch.no_grad():
                self._param.fill_(1.0)  # w = 1 [P]; softmax: φ = 0 also gives w = 1
        make = torch.optim.Adam if cfg.w_optimizer == "adam" else torch.optim.SGD
        self._opt = make([self._param], lr=cfg.w_lr)
        self._l0: np.ndarray | None = None
        if cfg.l0_mode == "log_num_classes":  # the cross-entropy of a uniform guess, ln C_k
            self._l0 = np.log([max(t.num_labels, 2) for t in tasks]).astype(np.float64)
        self._ema: np.ndarray | None = None  # EMA_old of the losses (mitigation [D], off)
        self._epoch_sum = np.zeros(self.K)
        self._epoch_n = 0
        self._epoch_steps = max(1, max(t.n_train_batches for t in tasks))
        self._last: dict[str, Any] = {}
        self._warned_partial = False

    # --- weights -------------------------------------------------------------------------------
    def _weights(self) -> np.ndarray:
        p = self._param.detach()
        if self.cfg.parameterization == "softmax":
            p = self.K * torch.softmax(p, 0)
        return p.numpy().copy()

    def loss_weights(self, t: int) -> np.ndarray:
        return self._weights()

    def combine(self, t: int, task_losses: dict[int, torch.Tensor]) -> torch.Tensor:
        w = self._weights()
        return sum(loss * float(w[k]) for k, loss in task_losses.items())

    # --- the step ------------------------------------------------------------------------------
    def custom_backward(
        self, t: int, task_losses: dict[int, torch.Tensor], shared: list[torch.nn.Parameter]
    ) -> bool:
        w_before = self._weights()
        W = [p for p in shared if p.requires_grad]
        g = np.zeros(self.K)
        if len(task_losses) == self.K:
            for k, loss in task_losses.items():
                grads = [None] * len(W)
                if loss.requires_grad:  # data parallel: a rank may have none of task k's rows
                    grads = torch.autograd.grad(loss, W, retain_graph=True, allow_unused=True)
                # the whole batch's gradient on W: the mean over the ranks' (runtime.py)
                grads = self.runtime.average(
                    [gr.detach() if gr is not None else torch.zeros_like(w)
                     for gr, w in zip(grads, W, strict=True)]
                )  # fmt: skip
                g[k] = math.sqrt(float(sum((gr.double() ** 2).sum() for gr in grads)))
        elif not self._warned_partial:
            log.warning("gradnorm needs every task every step: w is not updated on this step")
            self._warned_partial = True
        # step 6: the network trains on Σ w_k(t)·L_k with the weights before the update
        total = sum(loss * float(w_before[k]) for k, loss in task_losses.items())
        if total.requires_grad:
            total.backward()
        if len(task_losses) == self.K:
            lt = np.array([float(task_losses[k].detach()) for k in range(self.K)])
            self._update(g, lt)
        return True

    def _update(self, g: np.ndarray, lt: np.ndarray) -> None:
        """Steps 3–8 from the norms g and losses L(t) (separated so the oracle can drive it)."""
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(lt))):
            log.warning("gradnorm: non-finite gradient norm or loss %s %s, w not updated", g, lt)
            return  # §4.1 (d) / §1.4.5: skip the observation, keep the state
        if self.cfg.loss_ema > 0:
            rho = self.cfg.loss_ema
            self._ema = lt if self._ema is None else rho * self._ema + (1 - rho) * lt
            lt = self._ema
        if self._l0 is None:
            if self.cfg.l0_mode == "first_step":
                self._l0 = lt.copy()
            else:  # first_epoch_mean: equal weights during epoch 0 (LIBMTL)
                self._epoch_sum += lt
                self._epoch_n += 1
                if self._epoch_n == self._epoch_steps:
                    self._l0 = self._epoch_sum / self._epoch_n
                return
        w = self._weights()
        out = gradnorm_targets(w, g, self._l0, lt, self.cfg.alpha)
        self._opt.zero_grad(set_to_none=True)
        if self.cfg.parameterization == "direct":
            self._param.grad = torch.as_tensor(out["grad_w"], dtype=torch.float64)
            frozen = self._param.detach().clone()
            self._opt.step()
            with torch.no_grad():
                still = torch.as_tensor(g == 0)
                self._param[still] = frozen[still]  # §4.1 (d): no gradient on W, no move
                self._param.copy_(torch.as_tensor(renormalise(self._param.numpy())))
        else:
            wk = self.K * torch.softmax(self._param, 0)
            G = wk * torch.as_tensor(g)
            torch.abs(G - torch.as_tensor(out["target"])).sum().backward()
            self._opt.step()
        self._last = {"L_grad": out["L_grad"], "g": g.tolist(), "r": out["r"].tolist()}

    # --- logging and checkpoints -------------------------------------------------------------
    def log_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"w": self._weights().tolist()}
        if self._l0 is not None:
            state["L0"] = self._l0.tolist()
        return {**state, **self._last}

    def extra_state(self) -> dict[str, Any]:
        return {
            "param": self._param.detach().clone(),
            "w_optimizer": copy.deepcopy(self._opt.state_dict()),  # no live references
            "l0": None if self._l0 is None else self._l0.tolist(),
            "ema": None if self._ema is None else self._ema.tolist(),
            "epoch_sum": self._epoch_sum.tolist(),
            "epoch_n": self._epoch_n,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self._param.copy_(state["param"])
        self._opt.load_state_dict(state["w_optimizer"])
        self._l0 = None if state["l0"] is None else np.asarray(state["l0"], np.float64)
        self._ema = None if state["ema"] is None else np.asarray(state["ema"], np.float64)
        self._epoch_sum = np.asarray(state["epoch_sum"], np.float64)
        self._epoch_n = state["epoch_n"]
