"""GradNorm against SCHEDULERS.md §4.1 (Appendix B item 12) and its autograd contract."""

import copy
import math

import numpy as np
import pytest
import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, StepMode, TaskInfo, resolve_step_mode
from mtlrun.schedulers.base import scheduler_rng
from mtlrun.schedulers.gradnorm import gradnorm_targets, renormalise


def make(K=2, batches=5, seed=0, **hparams):
    cls = SCHEDULERS["gradnorm"]
    tasks = [TaskInfo(f"t{k}", 10 * batches, batches, "accuracy") for k in range(K)]
    return cls(cls.Config(**hparams), tasks, 100, scheduler_rng(seed, "gradnorm"))


def test_oracle_pure_function():
    out = gradnorm_targets([1, 1], [2, 1], [1, 1], [0.5, 0.8], 1.5)
    np.testing.assert_allclose(out["G"], [2, 1], atol=1e-6)
    assert out["G_bar"] == pytest.approx(1.5, abs=1e-6)
    np.testing.assert_allclose(out["r"], [0.769231, 1.230769], atol=1e-6)
    np.testing.assert_allclose(out["target"], [1.011990, 2.048124], atol=1e-6)
    assert out["L_grad"] == pytest.approx(2.036134, abs=1e-6)
    np.testing.assert_allclose(out["grad_w"], [2, -1], atol=1e-6)
    w = np.array([1.0, 1.0]) - 0.1 * out["grad_w"]
    np.testing.assert_allclose(w, [0.8, 1.1], atol=1e-6)
    np.testing.assert_allclose(renormalise(w), [0.842105, 1.157895], atol=1e-6)


def test_oracle_alpha_zero_targets_equal_norms():
    out = gradnorm_targets([1, 1], [2, 1], [1, 1], [0.5, 0.8], 0.0)
    np.testing.assert_allclose(out["target"], [1.5, 1.5], atol=1e-6)


def test_oracle_through_the_scheduler_with_sgd():
    s = make(w_optimizer="sgd", w_lr=0.1)
    s._update(np.array([0.0, 0.0]), np.array([1.0, 1.0]))  # first step: L(0) = [1, 1]; g = 0
    np.testing.assert_array_equal(s.loss_weights(1), [1, 1])  # no gradient on W: w stays
    s._update(np.array([2.0, 1.0]), np.array([0.5, 0.8]))
    np.testing.assert_allclose(s.loss_weights(2), [0.842105, 1.157895], atol=1e-6)
    assert s.log_state()["w"] == pytest.approx([0.842105, 1.157895], abs=1e-6)


def test_zero_initial_loss_counts_as_ratio_one():
    out = gradnorm_targets([1, 1], [1, 1], [0.0, 1.0], [0.3, 1.0], 1.0)
    np.testing.assert_allclose(out["r"], [1.0, 1.0])


def test_non_finite_norm_skips_the_update():
    s = make()
    s._update(np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    before = s.loss_weights(0)
    s._update(np.array([np.nan, 2.0]), np.array([0.5, 1.0]))
    s._update(np.array([1.0, 2.0]), np.array([np.inf, 1.0]))
    np.testing.assert_array_equal(s.loss_weights(0), before)


class Net(torch.nn.Module):
    """A shared trunk whose top layer is W, and one head per task."""

    def __init__(self, K):
        super().__init__()
        torch.manual_seed(0)
        self.bottom = torch.nn.Linear(4, 6)
        self.top = torch.nn.Linear(6, 5)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(5, 3) for _ in range(K))

    def losses(self, x, y):
        h = torch.tanh(self.top(torch.tanh(self.bottom(x))))
        return {
            k: torch.nn.functional.cross_entropy(head(h), y) for k, head in enumerate(self.heads)
        }


@pytest.mark.parametrize("parameterization", ["direct", "softmax"])
def test_custom_backward_leaves_gradient_of_weighted_sum(parameterization):
    K = 3
    net = Net(K)
    s = make(K=K, parameterization=parameterization)
    x, y = torch.randn(8, 4, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 3
    for step in range(4):  # a few steps so w has moved away from 1
        w = s.loss_weights(step)
        losses = net.losses(x, y)
        top = list(net.top.parameters())
        expected_g = []
        for k in range(K):
            grads = torch.autograd.grad(losses[k], top, retain_graph=True)
            expected_g.append(torch.cat([g.flatten() for g in grads]).norm().item())
        reference = torch.autograd.grad(
            sum(float(w[k]) * losses[k] for k in range(K)),
            list(net.parameters()),
            retain_graph=True,
        )
        net.zero_grad()
        assert s.custom_backward(step, losses, top) is True
        for p, ref in zip(net.parameters(), reference, strict=True):
            torch.testing.assert_close(p.grad, ref, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(s.log_state()["g"], expected_g, rtol=1e-6)
        with torch.no_grad():  # move the network so the losses change
            for p in net.parameters():
                p -= 0.5 * p.grad
    w = s.loss_weights(5)
    assert not np.allclose(w, 1.0)  # the weights learned something
    assert w.sum() == pytest.approx(K)


@pytest.mark.parametrize("parameterization", ["direct", "softmax"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weights_stay_finite_positive_and_sum_to_K(parameterization, optimizer):
    rng = np.random.default_rng(0)
    s = make(K=4, parameterization=parameterization, w_optimizer=optimizer, w_lr=0.5)
    for _ in range(200):
        s._update(rng.uniform(0, 5, 4), rng.uniform(0.01, 3, 4))
        w = s.loss_weights(0)
        assert np.all(np.isfinite(w)) and np.all(w > 0)  # clip, then renormalise
        assert w.sum() == pytest.approx(4)


def test_first_epoch_mean_keeps_equal_weights_then_uses_the_mean():
    s = make(batches=3, l0_mode="first_epoch_mean", w_optimizer="sgd", w_lr=0.1)
    for lt in ([1.0, 2.0], [2.0, 2.0], [3.0, 2.0]):
        s._update(np.array([2.0, 1.0]), np.array(lt))
        np.testing.assert_array_equal(s.loss_weights(0), [1, 1])
    np.testing.assert_allclose(s.log_state()["L0"], [2.0, 2.0])
    s._update(np.array([2.0, 1.0]), np.array([1.0, 1.6]))  # L~ = [0.5, 0.8]: the oracle again
    np.testing.assert_allclose(s.loss_weights(0), [0.842105, 1.157895], atol=1e-6)


def test_log_num_classes_uses_the_uniform_guess_loss():
    cls = SCHEDULERS["gradnorm"]
    tasks = [TaskInfo("bin", 50, 5, "accuracy", num_labels=2),
             TaskInfo("tags", 50, 5, "f1", num_labels=7)]  # fmt: skip
    s = cls(cls.Config(l0_mode="log_num_classes", w_optimizer="sgd", w_lr=0.1), tasks, 100,
            scheduler_rng(0, "gradnorm"))  # fmt: skip
    np.testing.assert_allclose(s.log_state()["L0"], [math.log(2), math.log(7)])
    # L(t) = 0.5·L(0) and 0.8·L(0) give L~ = [0.5, 0.8]: the §4.1 oracle again
    s._update(np.array([2.0, 1.0]), np.array([0.5 * math.log(2), 0.8 * math.log(7)]))
    np.testing.assert_allclose(s.loss_weights(0), [0.842105, 1.157895], atol=1e-6)


@pytest.mark.parametrize(
    "hparams", [{}, {"parameterization": "softmax"}, {"l0_mode": "first_epoch_mean"},
                {"loss_ema": 0.5}],
)  # fmt: skip
def test_state_round_trip_continues_identically(hparams):
    rng = np.random.default_rng(1)
    inputs = [(rng.uniform(0, 3, 3), rng.uniform(0.1, 2, 3)) for _ in range(40)]
    a = make(K=3, batches=4, **hparams)
    for g, lt in inputs[:15]:
        a._update(g, lt)
    state = copy.deepcopy(a.state_dict())
    tail = []
    for g, lt in inputs[15:]:
        a._update(g, lt)
        tail.append(a.loss_weights(0))
    b = make(K=3, batches=4, seed=9, **hparams)
    b.load_state_dict(state)
    for (g, lt), expected in zip(inputs[15:], tail, strict=True):
        b._update(g, lt)
        np.testing.assert_array_equal(b.loss_weights(0), expected)


def test_same_inputs_same_weights():
    rng = np.random.default_rng(2)
    inputs = [(rng.uniform(0, 3, 2), rng.uniform(0.1, 2, 2)) for _ in range(20)]
    a, b = make(), make()
    for g, lt in inputs:
        a._update(g, lt)
        b._update(g, lt)
    np.testing.assert_array_equal(a.loss_weights(0), b.loss_weights(0))


def test_needs_all_mode():
    cls = SCHEDULERS["gradnorm"]
    tasks = [TaskInfo(f"t{k}", 100, 10, "accuracy") for k in range(2)]
    scheduler = cls(cls.Config(), tasks, 100, scheduler_rng(0, "gradnorm"))
    assert cls.step_modes == (StepMode.ALL,)
    assert resolve_step_mode(scheduler, None) == StepMode.ALL
    with pytest.raises(ConfigError, match="step_mode=single"):
        resolve_step_mode(scheduler, "single")


@pytest.mark.parametrize(
    "hparams, message",
    [({"alpha": -1}, "alpha"), ({"w_optimizer": "rmsprop"}, "w_optimizer"), ({"w_lr": 0}, "w_lr"),
     ({"parameterization": "log"}, "parameterization"), ({"l0_mode": "x"}, "l0_mode"),
     ({"loss_ema": 1.0}, "loss_ema")],
)  # fmt: skip
def test_bad_config(hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS["gradnorm"].Config(**hparams)
