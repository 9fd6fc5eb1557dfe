"""Loss exponentiation and focal loss against SCHEDULERS.md §3.2–3.3 (Appendix B items 6, 7)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, Category, StepMode, TaskInfo
from mtlrun.schedulers.base import scheduler_rng


def make(name, k=4, seed=0, **hparams):
    cls = SCHEDULERS[name]
    tasks = [TaskInfo(f"t{i}", 100, 10, "accuracy") for i in range(k)]
    return cls(cls.Config(**hparams), tasks, 1000, scheduler_rng(seed, name))


def leaves(values):
    return {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in enumerate(values)
    }


# --- §3.2 loss_exponentiation --------------------------------------------------------------------
def test_exponentiation_oracle():
    s = make("loss_exponentiation")
    expected = [2.219139, 1.000000, 0.450625, 0.000000]
    for k, (value, want) in enumerate(zip([2.0, 1.0, 0.5, 0.0], expected, strict=True)):
        got = float(s.combine(0, {k: torch.tensor(value, requires_grad=True)}).detach())
        assert got == pytest.approx(want, abs=1e-6)
    assert float(s.combine(0, leaves([2.0, 1.0])).detach()) == pytest.approx(3.219139, abs=1e-6)


def test_zero_loss_gives_exactly_zero():
    s = make("loss_exponentiation")
    assert float(s.combine(0, leaves([0.0])).detach()) == 0.0


def test_exponentiation_gradient_is_q_L_to_the_q_minus_1():
    s = make("loss_exponentiation")
    losses = leaves([2.0, 1.0, 0.5, 0.0])
    s.combine(0, losses).backward()
    grads = [float(losses[k].grad) for k in range(4)]
    expected = [1.15 * v**0.15 for v in (2.0, 1.0, 0.5)] + [0.0]
    np.testing.assert_allclose(grads, expected, atol=1e-9)
    np.testing.assert_allclose(s.loss_weights(0), expected, atol=1e-9)  # logged dynamic weights


def test_exponentiation_gradient_through_a_real_model_loss():
    torch.manual_seed(0)
    logits = torch.randn(8, 3, requires_grad=True)
    labels = torch.randint(0, 3, (8,))
    s = make("loss_exponentiation", k=1, q=1.5)
    loss = F.cross_entropy(logits, labels)
    s.combine(0, {0: loss}).backward()
    got = logits.grad.clone()
    logits.grad = None
    (1.5 * loss.detach() ** 0.5 * F.cross_entropy(logits, labels)).backward()
    torch.testing.assert_close(got, logits.grad)


def test_negative_loss_is_an_error():
    with pytest.raises(ConfigError, match="losses >= 0"):
        make("loss_exponentiation").combine(0, leaves([1.0, -0.5]))


def test_exponentiation_config():
    with pytest.raises(ConfigError, match="q must be > 0"):
        SCHEDULERS["loss_exponentiation"].Config(q=0)
    cls = SCHEDULERS["loss_exponentiation"]
    assert cls.category == Category.LOSS_WEIGHTER
    assert cls.step_modes == (StepMode.ALL, StepMode.SINGLE)


# --- §3.3 focal_loss -----------------------------------------------------------------------------
FOCAL = [(0.9, 0.105361, 0.0010536, 0.00026340), (0.5, 0.693147, 0.173287, 0.043322),
         (0.1, 2.302585, 1.865094, 0.466273)]  # fmt: skip


def logits_for(p_true):
    """Binary logits whose softmax gives the true class (label 1) probability p_true."""
    return torch.tensor([[0.0, math.log(p / (1 - p))] for p in p_true], dtype=torch.float64)


def test_focal_oracle_from_real_cross_entropy():
    p_t = [row[0] for row in FOCAL]
    labels = torch.ones(3, dtype=torch.long)
    ce = F.cross_entropy(logits_for(p_t), labels, reduction="none")
    np.testing.assert_allclose(ce.numpy(), [row[1] for row in FOCAL], atol=1e-6)
    fl = make("focal_loss").example_losses(0, ce, labels)
    np.testing.assert_allclose(fl.numpy(), [row[2] for row in FOCAL], atol=1e-6)
    fl_alpha = make("focal_loss", alpha=0.25).example_losses(0, ce, labels)
    np.testing.assert_allclose(fl_alpha.numpy(), [row[3] for row in FOCAL], atol=1e-6)


def test_focal_alpha_uses_one_minus_alpha_for_label_zero():
    ce = torch.tensor([0.693147, 0.693147])
    fl = make("focal_loss", alpha=0.25).example_losses(0, ce, torch.tensor([0, 1]))
    np.testing.assert_allclose(fl.numpy(), [0.75 * 0.173287, 0.25 * 0.173287], atol=1e-6)


def test_focal_alpha_applies_to_binary_tasks_only():
    cls = SCHEDULERS["focal_loss"]
    tasks = [TaskInfo("binary", 100, 10, "accuracy"),
             TaskInfo("tags", 100, 10, "f1", num_labels=7)]  # fmt: skip
    s = cls(cls.Config(alpha=0.25), tasks, 100, scheduler_rng(0, "focal_loss"))
    ce, labels = torch.tensor([0.693147, 0.693147]), torch.tensor([0, 1])
    np.testing.assert_allclose(
        s.example_losses(0, ce, labels).numpy(), [0.75 * 0.173287, 0.25 * 0.173287], atol=1e-6
    )
    np.testing.assert_allclose(
        s.example_losses(1, ce, labels).numpy(), [0.173287, 0.173287], atol=1e-6
    )


def test_focal_gamma_zero_is_cross_entropy():
    torch.manual_seed(1)
    logits, labels = torch.randn(16, 5), torch.randint(0, 5, (16,))
    ce = F.cross_entropy(logits, labels, reduction="none")
    assert torch.equal(make("focal_loss", gamma=0.0).example_losses(0, ce, labels), ce)


def test_focal_matches_the_definition_on_real_logits_and_is_stable():
    torch.manual_seed(2)
    logits = torch.randn(32, 7, dtype=torch.float64) * 4
    labels = torch.randint(0, 7, (32,))
    ce = F.cross_entropy(logits, labels, reduction="none")
    p_t = torch.softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
    expected = -((1 - p_t) ** 2) * torch.log(p_t)
    torch.testing.assert_close(make("focal_loss").example_losses(0, ce, labels), expected)
    # very confident correct predictions: CE and FL underflow to 0, no NaN in the gradient
    sure = torch.tensor([[60.0, 0.0], [0.0, 30.0]], requires_grad=True)
    ce = F.cross_entropy(sure, torch.tensor([0, 1]), reduction="none")
    for gamma in (2.0, 0.5):
        fl = make("focal_loss", gamma=gamma).example_losses(0, ce, torch.tensor([0, 1]))
        (grad,) = torch.autograd.grad(fl.mean(), sure, retain_graph=True)
        assert torch.isfinite(fl).all() and torch.isfinite(grad).all()


def test_focal_gradient_down_weights_easy_examples():
    logits = logits_for([0.9, 0.1]).requires_grad_(True)
    labels = torch.ones(2, dtype=torch.long)
    ce = F.cross_entropy(logits, labels, reduction="none")
    make("focal_loss").example_losses(0, ce, labels).sum().backward()
    easy, hard = logits.grad[:, 1].abs().tolist()
    assert easy < 0.01 * hard


def test_focal_other_hooks_are_neutral():
    s = make("focal_loss", k=3)
    assert s.task_distribution(0).tolist() == [1 / 3] * 3 and s.loss_weights(0).tolist() == [1] * 3
    cls = SCHEDULERS["focal_loss"]
    assert cls.category == Category.LOSS_WEIGHTER
    assert cls.step_modes == (StepMode.SINGLE, StepMode.ALL, StepMode.MIXED)


@pytest.mark.parametrize(
    "hparams, message",
    [({"gamma": -1.0}, "gamma must be >= 0"), ({"alpha": 1.5}, "alpha must be in")],
)
def test_focal_config(hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS["focal_loss"].Config(**hparams)


@pytest.mark.parametrize("name", ["loss_exponentiation", "focal_loss"])
def test_properties(name):
    s = make(name, k=3)
    p = s.task_distribution(0)
    assert np.all(p >= 0) and p.sum() == pytest.approx(1.0)
    assert np.all(np.isfinite(s.loss_weights(0)))
    first = [s.next_task(t) for t in range(50)]
    state = s.state_dict()
    cont = [s.next_task(t) for t in range(50, 100)]
    fresh = make(name, k=3, seed=9)
    fresh.load_state_dict(state)
    assert [fresh.next_task(t) for t in range(50, 100)] == cont
    again = make(name, k=3)
    assert [again.next_task(t) for t in range(50)] == first
