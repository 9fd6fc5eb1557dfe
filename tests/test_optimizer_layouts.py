"""Lever 4 (docs/schedulers.md §5.3): optimizer layouts, the Adam interaction oracles and the
learning-rate schedules."""

import math

import numpy as np
import pytest
import torch

from mtlrun.config import OptimizerConfig
from mtlrun.errors import ConfigError
from mtlrun.schedulers import Category, StepMode
from mtlrun.training.optimizers import TaskOptimizers, base_lr, resolve_layout

ADAM = OptimizerConfig(name="adam", lr=1e-3, grad_clip=None)


def updates(grads, layout="shared", scale_mode="grad", scales=(1.0, 1.0), tasks=None, cfg=ADAM):
    """Apply the gradient sequence to one scalar parameter; return each step's update. With
    scale_mode=grad the gradient is scaled first, as the trainer scales the task's loss."""
    x = torch.nn.Parameter(torch.zeros(()))
    heads = [[], []]
    opt = TaskOptimizers(cfg, [x], heads, [], layout, scale_mode)
    tasks = tasks or [0] * len(grads)
    out = []
    for t, (g, k) in enumerate(zip(grads, tasks, strict=True)):
        before = x.item()
        opt.zero_grad()
        x.grad = torch.tensor(float(g) * (scales[k] if scale_mode == "grad" else 1.0))
        opt.step(t, [k], np.asarray(scales))
        out.append(x.item() - before)
    return out


@pytest.mark.parametrize("c", [0.1, 10.0])
def test_per_task_adam_divides_out_a_gradient_scale(c):
    """layout=per_task, scale_mode=grad (optimizer.force=true): Adam's m̂/√v̂ cancels a constant
    gradient scale, so task 0's updates are those of scale 1 (why resolve_layout asks for
    force)."""
    plain = updates([0.5, 0.4, 0.6], layout="per_task", scales=(1.0, 1.0))
    np.testing.assert_allclose(plain, [-0.0010000000, -0.0009881258, -0.0009941400], atol=2e-9)
    scaled = updates([0.5, 0.4, 0.6], layout="per_task", scales=(c, 1.0))
    np.testing.assert_allclose(scaled, plain, rtol=1e-5)


@pytest.mark.parametrize("layout", ["shared", "per_task"])
def test_a_gradient_scale_reaches_sgd_once(layout):
    """scale_mode=grad with plain SGD: a task scale of 0.5 halves that task's update, not
    quarters it, and leaves the other task's alone."""
    sgd = OptimizerConfig(name="sgd", lr=0.1, grad_clip=None)
    got = updates([1.0, 1.0], layout, "grad", scales=(0.5, 1.0), tasks=[0, 1], cfg=sgd)
    np.testing.assert_allclose(got, [-0.05, -0.1], atol=1e-7)


def test_learning_rate_scale_halves_the_updates():
    got = updates([0.5, 0.4, 0.6], layout="per_task", scale_mode="lr", scales=(0.5, 1.0))
    np.testing.assert_allclose(got, [-0.0005, -0.0004940629, -0.0004970700], atol=1e-9)


def test_shared_adam_blurs_tasks():
    # task A gradient +1, task B (scaled by 0.1) -0.1, alternating on one shared Adam
    got = updates([1.0, -1.0, 1.0, -1.0], "shared", "grad", scales=(1.0, 0.1), tasks=[0, 1, 0, 1])
    np.testing.assert_allclose(got, [-0.001000, -0.000593, -0.000775, -0.000593], atol=1e-6)


def test_separate_adams_keep_tasks_apart():
    got = updates([1.0, -1.0, 1.0, -1.0], "per_task", "lr", scales=(1.0, 1.0), tasks=[0, 1, 0, 1])
    np.testing.assert_allclose(got, [-0.001, 0.001, -0.001, 0.001], atol=1e-9)


def test_layout_defaults_follow_the_scheduler_category():
    assert resolve_layout(ADAM, Category.LR_SCALER, StepMode.SINGLE) == ("per_task", "lr")
    assert resolve_layout(ADAM, Category.LOSS_WEIGHTER, StepMode.ALL) == ("shared", "grad")
    assert resolve_layout(ADAM, Category.SAMPLER, StepMode.SINGLE) == ("shared", "grad")


def test_per_task_gradient_scaling_with_adam_needs_force():
    cfg = OptimizerConfig(layout="per_task", scale_mode="grad")
    with pytest.raises(ConfigError, match="force"):
        resolve_layout(cfg, Category.LR_SCALER, StepMode.SINGLE)
    forced = OptimizerConfig(layout="per_task", scale_mode="grad", force=True)
    assert resolve_layout(forced, Category.LR_SCALER, StepMode.SINGLE) == ("per_task", "grad")


def test_per_task_layout_needs_one_task_per_step():
    with pytest.raises(ConfigError, match="one task per step"):
        resolve_layout(OptimizerConfig(layout="per_task"), Category.LR_SCALER, StepMode.ALL)


def test_per_task_optimizers_only_step_the_drawn_task():
    shared = torch.nn.Parameter(torch.zeros(()))
    heads = [[torch.nn.Parameter(torch.zeros(()))] for _ in range(2)]
    opt = TaskOptimizers(ADAM, [shared], heads, [], "per_task", "lr")
    for p in (shared, *heads[0], *heads[1]):
        p.grad = torch.ones(())
    opt.step(0, [1], np.ones(2))
    assert heads[0][0].item() == 0 and heads[1][0].item() != 0 and shared.item() != 0
    assert opt.optimizers[0].state_dict()["state"] == {}  # task 0's Adam never stepped


def test_rsqrt_is_vaswani_et_al_inverse_square_root():
    """lr · d^-0.5 · min(s^-0.5, s · w^-1.5): Jean et al. 2019's best model (lr 1.5, 40K
    warm-up, d 512) peaks at 1.5 / sqrt(512 · 40000) = 3.3e-4 when warm-up ends."""
    cfg = OptimizerConfig(lr=1.5, schedule="rsqrt", warmup_steps=40_000)
    peak = 1.5 / math.sqrt(512 * 40_000)
    assert base_lr(cfg, 39_999, d_model=512) == pytest.approx(peak)
    assert peak == pytest.approx(3.3e-4, rel=0.01)
    assert base_lr(cfg, 19_999, d_model=512) == pytest.approx(peak / 2)  # linear warm-up
    assert base_lr(cfg, 159_999, d_model=512) == pytest.approx(peak / 2)  # then 1 / sqrt(s)
    fixed = OptimizerConfig(lr=1.5, schedule="rsqrt", warmup_steps=40_000, d_model=1024)
    assert base_lr(fixed, 39_999, d_model=512) == pytest.approx(1.5 / math.sqrt(1024 * 40_000))


def test_rsqrt_peak_is_the_same_shape_peaking_at_lr():
    cfg = OptimizerConfig(lr=1.5, schedule="rsqrt_peak", warmup_steps=100)
    assert base_lr(cfg, 99) == pytest.approx(1.5)
    assert base_lr(cfg, 49) == pytest.approx(0.75)
    assert base_lr(cfg, 399) == pytest.approx(0.75)
    assert base_lr(OptimizerConfig(lr=0.1), 1000) == 0.1


def test_linear_warms_up_then_decays_to_zero():
    cfg = OptimizerConfig(lr=2e-5, schedule="linear", warmup_steps=10)
    assert base_lr(cfg, 4, total_steps=110) == pytest.approx(1e-5)
    assert base_lr(cfg, 9, total_steps=110) == pytest.approx(2e-5)
    assert base_lr(cfg, 60, total_steps=110) == pytest.approx(1e-5)
    assert base_lr(cfg, 109, total_steps=110) == pytest.approx(2e-5 / 100)
    assert base_lr(OptimizerConfig(lr=1.0, schedule="linear"), 0, total_steps=4) == 1.0


def test_schedules_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match="warmup_steps > 0"):
        OptimizerConfig(schedule="rsqrt")


def test_per_task_optimizers_list_the_shared_parameters_once():
    """The gradient norm and clipping run over `parameters`: a shared parameter listed once per
    task would count K times in the norm and be clipped K times."""
    shared = torch.nn.Parameter(torch.ones(3))
    heads = [[torch.nn.Parameter(torch.ones(2))] for _ in range(3)]
    opt = TaskOptimizers(ADAM, [shared], heads, [], "per_task", "lr")
    assert len(opt.parameters) == 4 and len({id(p) for p in opt.parameters}) == 4
    shared.grad = torch.full((3,), 10.0)
    norm = torch.nn.utils.clip_grad_norm_(opt.parameters, 5.0)
    assert norm.item() == pytest.approx(math.sqrt(300))
    assert shared.grad.norm().item() == pytest.approx(5.0, rel=1e-4)
