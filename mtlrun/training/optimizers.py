"""Lever 4: the optimizer layout and how per-task scales apply (docs/schedulers.md §5.3).

`shared`: one optimizer over every parameter. `per_task`: K optimizers, optimizer k over the
shared parameters plus task k's head; only the drawn task's optimizer steps, so its Adam moments
and bias-correction count see only its own gradients (the layout of all Jean et al. experiments).
A task's scale is applied either to its learning rate (`scale_mode=lr`) or to its gradient
(`scale_mode=grad`, i.e. to its loss before backward). With Adam, a gradient scale under a
per-task optimizer cancels out (m̂/√v̂ is scale-free), so that combination is refused unless
forced; a learning-rate scale on a shared optimizer leaks into other tasks through momentum,
so it is allowed with a warning.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers import Category, StepMode

log = logging.getLogger(__name__)


def resolve_layout(cfg, category: Category, mode: StepMode) -> tuple[str, str]:
    """(layout, scale_mode) from config, defaulting by scheduler category (§5.3 table)."""
    lr_scaler = category == Category.LR_SCALER
    layout = cfg.layout or ("per_task" if lr_scaler and mode == StepMode.SINGLE else "shared")
    scale_mode = cfg.scale_mode or ("lr" if layout == "per_task" else "grad")
    if layout == "per_task" and mode != StepMode.SINGLE:
        raise ConfigError(
            f"optimizer.layout=per_task needs one task per step, but step mode is {mode.value}; "
            "use optimizer.layout=shared"
        )
    if layout == "per_task" and scale_mode == "grad" and cfg.name != "sgd" and not cfg.force:
        raise ConfigError(
            "optimizer.layout=per_task with optimizer.scale_mode=grad: Adam-type optimizers "
            "divide out a constant gradient scale, so the scales would do nothing (Jean et al. "
            "§3.1). Use scale_mode=lr, or set optimizer.force=true to run it anyway"
        )
    if layout == "shared" and scale_mode == "lr":
        log.warning(
            "learning-rate scales on a shared optimizer leak into other tasks through its "
            "momentum (Jean et al. §3.1); per-task optimizers (optimizer.layout=per_task) avoid it"
        )
    return layout, scale_mode


def base_lr(cfg, t: int, d_model: int | None = None, total_steps: int | None = None) -> float:
    """The learning rate at global step t (t + 1 = s steps taken):
    - `constant`: optimizer.lr;
    - `rsqrt`, the inverse square root of Vaswani et al. 2017 §5.3 that Jean et al. 2019 use:
      lr · d^-0.5 · min(s^-0.5, s · w^-1.5), peaking at lr · d^-0.5 · w^-0.5 when s = w, with
      d = optimizer.d_model (null: the encoder's output size) and w = optimizer.warmup_steps;
      so Jean et al.'s "lr 1.5, 40K warm-up" with d = 512 peaks at 3.3e-4;
    - `rsqrt_peak`: the same shape rescaled so that its peak is optimizer.lr;
    - `linear`: linear warm-up to optimizer.lr over w steps, then linear decay to 0 at the last
      step (fine-tuning)."""
    if cfg.schedule == "constant":
        return cfg.lr
    s, w = t + 1, cfg.warmup_steps
    if cfg.schedule == "linear":
        if w and s <= w:
            return cfg.lr * s / w
        return cfg.lr * max(0.0, (total_steps - t) / max(1, total_steps - w))
    shape = min(s**-0.5, s * w**-1.5)
    if cfg.schedule == "rsqrt_peak":
        return cfg.lr * math.sqrt(w) * shape
    return cfg.lr * (cfg.d_model or d_model) ** -0.5 * shape


def make_optimizer(cfg, params: list[dict[str, Any]]) -> torch.optim.Optimizer:
    # fused kernels (one launch updates every parameter) when all parameters are on a GPU
    tensors = [p for group in params for p in group["params"]]
    fused = {"fused": True} if tensors and all(p.is_cuda for p in tensors) else {}
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, **fused)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **fused)


class TaskOptimizers:
    def __init__(
        self,
        cfg,
        shared: list[torch.nn.Parameter],
        heads: list[list[torch.nn.Parameter]],
        extra: list[torch.nn.Parameter],
        layout: str,
        scale_mode: str,
        d_model: int | None = None,
        total_steps: int | None = None,
    ) -> None:
        """`d_model`, `total_steps`: the encoder's width and the run's steps, for the rsqrt
        and linear learning-rate schedules (`base_lr`)."""
        self.cfg = cfg
        self.d_model, self.total_steps = d_model, total_steps
        if cfg.schedule == "rsqrt" and not (cfg.d_model or d_model):
            raise ConfigError("optimizer.schedule=rsqrt needs optimizer.d_model (the model width)")
        if cfg.schedule == "linear" and total_steps is None:
            raise ConfigError("optimizer.schedule=linear needs the run's number of steps")
        self.layout = layout
        self.scale_mode = scale_mode

        def groups(params: list[torch.nn.Parameter]) -> list[dict[str, Any]]:
            params = [p for p in params if p.requires_grad]
            out = [{"params": params, "weight_decay": cfg.weight_decay}]
            return out + ([{"params": extra, "weight_decay": 0.0}] if extra else [])

        if layout == "shared":
            self.optimizers = [make_optimizer(cfg, groups(shared + sum(heads, [])))]
        else:
            self.optimizers = [make_optimizer(cfg, groups(shared + head)) for head in heads]
        # every trained parameter once: per-task optimizers share the encoder's, and a parameter
        # listed twice would count twice in the gradient norm and be clipped twice
        every = [p for o in self.optimizers for g in o.param_groups for p in g["params"]]
        self.parameters = list({id(p): p for p in every}.values())

    def zero_grad(self) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)

    def step(self, t: int, tasks: list[int], lr_scales) -> None:
        """Step the optimizer of the trained task(s) at learning rate base_lr(t) · scale."""
        lr = base_lr(self.cfg, t, self.d_model, self.total_steps)
        if self.layout == "per_task":
            (k,) = tasks
            # scale_mode=grad: the trainer already scaled this task's loss; never twice
            optimizer = self.optimizers[k]
            scale = lr_scales[k] if self.scale_mode == "lr" else 1.0
        else:  # one shared step: a per-task lr scale only makes sense for a single task
            optimizer = self.optimizers[0]
            scale = lr_scales[tasks[0]] if self.scale_mode == "lr" and len(tasks) == 1 else 1.0
        for group in optimizer.param_groups:
            group["lr"] = lr * float(scale)
        optimizer.step()

    def state_dict(self) -> list[dict[str, Any]]:
        return [o.state_dict() for o in self.optimizers]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for o, s in zip(self.optimizers, states, strict=True):
            o.load_state_dict(s)
