"""Kendall uncertainty weighting against the oracles of SCHEDULERS.md §3.6 (Appendix B item 10):
totals and gradients through real autograd on the scheduler's own Parameters."""

import copy
import math

import numpy as np
import pytest
import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, TaskInfo
from mtlrun.schedulers.base import scheduler_rng

L = [2.0, 1.0]


def make(kinds=("classification", "classification"), **hparams):
    cls = SCHEDULERS["kendall_uncertainty"]
    tasks = [TaskInfo(f"t{k}", 100, 10, "accuracy", loss_kind=kind) for k, kind in enumerate(kinds)]
    return cls(cls.Config(**hparams), tasks, 1000, scheduler_rng(0, "kendall_uncertainty"))


def losses(values=L):
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in enumerate(values)}


def total_and_grad(s, values=L):
    for p in s.extra_parameters():
        p.grad = None
    total = s.combine(0, losses(values))
    total.backward()
    return total.item(), [p.grad.item() for p in s.extra_parameters()]


def set_s(s, values):
    with torch.no_grad():
        for p, v in zip(s.extra_parameters(), values, strict=True):
            p.fill_(v)


CASES = {  # variant, loss kinds -> total, ∂total/∂s, stationary s*, effective weight
    "classification": (
        dict(variant="faithful"), ("classification", "tagging"),
        3.0, [-1.5, -0.5], [1.386294, 0.693147], [0.25, 0.5],
    ),
    "regression": (
        dict(variant="faithful"), ("regression", "regression"),
        1.5, [-0.5, 0.0], [0.693147, 0.0], [0.25, 0.5],
    ),
    "simple": (
        dict(variant="simple"), ("classification", "classification"),
        3.0, [-1.0, 0.0], [0.693147, 0.0], [0.5, 1.0],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_total_and_gradient_oracle(case):
    hparams, kinds, total, grad, _, _ = CASES[case]
    s = make(kinds, **hparams)
    assert [p.item() for p in s.extra_parameters()] == [0.0, 0.0]
    got_total, got_grad = total_and_grad(s)
    assert got_total == pytest.approx(total, abs=1e-6)
    np.testing.assert_allclose(got_grad, grad, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_stationary_point_oracle(case):
    hparams, kinds, _, _, s_star, weight = CASES[case]
    s = make(kinds, **hparams)
    set_s(s, s_star)
    _, grad = total_and_grad(s)
    np.testing.assert_allclose(grad, [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(s.loss_weights(0), weight, atol=1e-6)
    # and the model's optimiser finds it from s = 0
    s = make(kinds, **hparams)
    opt = torch.optim.SGD(s.extra_parameters(), lr=0.1)
    for _ in range(2000):
        opt.zero_grad()
        s.combine(0, losses()).backward()
        opt.step()
    np.testing.assert_allclose([p.item() for p in s.extra_parameters()], s_star, atol=1e-5)
    np.testing.assert_allclose(s.loss_weights(0), weight, atol=1e-5)


def test_libmtl_variant():
    s = make(variant="libmtl")
    assert [p.item() for p in s.extra_parameters()] == [-0.5, -0.5]
    np.testing.assert_allclose(s.loss_weights(0), [0.824361, 0.824361], atol=1e-6)
    total, grad = total_and_grad(s)
    expected = [v / (2 * math.exp(-0.5)) - 0.25 for v in L]  # L/(2 exp s) + s/2
    assert total == pytest.approx(sum(expected), abs=1e-6)
    np.testing.assert_allclose(grad, [-v / (2 * math.exp(-0.5)) + 0.5 for v in L], atol=1e-6)


def test_explicit_init_and_model_gradient():
    s = make(init=1.0)
    assert [p.item() for p in s.extra_parameters()] == [1.0, 1.0]
    w = torch.tensor(3.0, requires_grad=True)  # a "model" parameter: L_0 = w², L_1 = w
    s.combine(0, {0: w**2, 1: w}).backward()
    assert w.grad.item() == pytest.approx(math.exp(-1.0) * (2 * 3.0 + 1), abs=1e-6)


def test_single_mode_only_the_drawn_task_gets_a_gradient():
    s = make(("classification", "classification", "regression"))
    total = s.combine(0, {1: torch.tensor(2.0)})
    assert total.item() == pytest.approx(2.0)
    total.backward()
    p = s.extra_parameters()
    assert p[0].grad is None and p[2].grad is None
    assert p[1].grad.item() == pytest.approx(-1.5)
    # Adam then moves s_1 only
    opt = torch.optim.Adam(p, lr=0.1)
    opt.step()
    assert p[0].item() == 0.0 and p[2].item() == 0.0 and p[1].item() > 0


def test_total_can_be_negative():
    s = make(init=-5.0, variant="faithful")
    total, _ = total_and_grad(s, [0.0, 0.0])
    assert total == pytest.approx(-5.0)


def test_log_state_reports_s_and_weights():
    s = make(("classification", "regression"))
    set_s(s, [math.log(2.0), 0.0])
    state = s.log_state()
    np.testing.assert_allclose(state["s"], [math.log(2.0), 0.0], atol=1e-6)
    np.testing.assert_allclose(state["weights"], [0.5, 0.5], atol=1e-6)


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"variant": "uw"}, "variant must be one of"),
        ({"init": float("nan")}, "init must be finite"),
    ],
)
def test_bad_config(hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS["kendall_uncertainty"].Config(**hparams)


def test_property_finite_and_state_round_trip_continues_identically():
    rng = np.random.default_rng(3)
    stream = rng.lognormal(0, 1, size=(60, 2))

    def step(s, opt, t):
        opt.zero_grad()
        s.combine(t, losses(stream[t])).backward()
        opt.step()

    s = make(("classification", "regression"))
    opt = torch.optim.Adam(s.extra_parameters(), lr=0.05)
    for t in range(30):
        step(s, opt, t)
        assert np.all(np.isfinite(s.loss_weights(t)))
    clone = make(("classification", "regression"))
    clone.load_state_dict(copy.deepcopy(s.state_dict()))
    assert [p.item() for p in clone.extra_parameters()] == [p.item() for p in s.extra_parameters()]
    clone_opt = torch.optim.Adam(clone.extra_parameters(), lr=0.05)
    clone_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # no shared tensors
    for t in range(30, 60):
        step(s, opt, t)
        step(clone, clone_opt, t)
        assert [p.item() for p in clone.extra_parameters()] == [
            p.item() for p in s.extra_parameters()
        ]
    assert clone.log_state() == s.log_state()
