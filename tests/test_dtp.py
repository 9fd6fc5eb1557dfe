"""DTP against the oracles of SCHEDULERS.md §3.5 (Appendix B item 9) and the focal table of §3.3."""

import math

import numpy as np
import pytest
import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, TaskInfo
from mtlrun.schedulers.base import scheduler_rng
from mtlrun.schedulers.dtp import focal_task_weights


def make(K=2, **hparams):
    cls = SCHEDULERS["dtp"]
    tasks = [TaskInfo(f"t{k}", 100, 10, "accuracy") for k in range(K)]
    return cls(cls.Config(**hparams), tasks, 1000, scheduler_rng(0, "dtp"))


def ce_of(p):
    return torch.tensor([-math.log(x) for x in p], dtype=torch.float64)


def train_kpi(s, t, k, kpi):
    """Feed one step whose batch of task k had accuracy `kpi`."""
    s.observe_train_kpis(t, {k: kpi})


@pytest.mark.parametrize("gamma, expected", [(1, [0.010536, 0.346574]), (2, [0.0010536, 0.173287])])
def test_task_weight_oracle(gamma, expected):
    w = focal_task_weights(np.array([0.9, 0.5]), np.full(2, gamma))
    np.testing.assert_allclose(w, expected, atol=1e-6)
    s = make(gamma_task=gamma, kpi_source="val")
    s.observe_eval(10, {0: 0.9, 1: 0.5}, {0: 1.0, 1: 1.0})
    np.testing.assert_allclose(s.loss_weights(10), expected, atol=1e-6)


def test_ema_oracle():
    s = make(kpi_source="val", alpha=0.5)
    s.observe_eval(10, {0: 0.6, 1: 0.4}, {})  # first KPI: taken as is
    np.testing.assert_allclose(s.kappa, [0.6, 0.4])
    s.observe_eval(20, {0: 0.8, 1: 0.5}, {})
    np.testing.assert_allclose(s.kappa, [0.70, 0.45], atol=1e-12)
    np.testing.assert_allclose(s.loss_weights(20), [0.107002, 0.439179], atol=1e-6)


def test_default_alpha_by_source():
    assert make().alpha == 0.1 and make(kpi_source="val").alpha == 0.5
    assert make(alpha=0.3).alpha == 0.3


def test_weight_one_until_first_kpi_then_train_batch_ema():
    s = make()
    assert s.loss_weights(0).tolist() == [1, 1]
    train_kpi(s, 0, 0, 0.5)  # only task 0 trained (SINGLE mode)
    w = s.loss_weights(1)
    assert w[1] == 1 and w[0] == pytest.approx(0.5 * math.log(2), abs=1e-6)
    train_kpi(s, 1, 0, 0.9)  # α = 0.1: κ̄ = 0.1·0.9 + 0.9·0.5 = 0.54
    assert s.kappa[0] == pytest.approx(0.54)
    assert math.isnan(s.kappa[1])


def test_train_batch_kpis_come_from_the_trainer():
    s = make()
    assert s.observes_train_kpi and not s.observes_train_loss
    s.observe_train_kpis(0, {0: 0.75, 1: 0.25})
    np.testing.assert_allclose(s.kappa, [0.75, 0.25])


def test_val_source_ignores_training_batches():
    s = make(kpi_source="val")
    assert not s.observes_train_kpi
    s.example_losses(0, ce_of([0.9]), torch.zeros(1))
    assert np.all(np.isnan(s.kappa))


def test_clamp_caps_weight_and_kappa_one_stops_task():
    w = focal_task_weights(np.array([0.0, 1e-9, 1.0]), np.ones(3))
    np.testing.assert_allclose(w[:2], [9.2094, 9.2094], atol=1e-4)
    assert w[2] == 0


def test_nonfinite_kpi_is_ignored():
    s = make(kpi_source="val")
    s.observe_eval(10, {0: 0.6, 1: 0.4}, {})
    s.observe_eval(20, {0: float("nan"), 1: None}, {})
    np.testing.assert_allclose(s.kappa, [0.6, 0.4])


def test_normalize_to_K():
    s = make(kpi_source="val", normalize_to_K=True)
    s.observe_eval(10, {0: 0.9, 1: 0.5}, {})
    w = s.loss_weights(10)
    assert w.sum() == pytest.approx(2.0)
    np.testing.assert_allclose(w[0] / w[1], 0.010536 / 0.346574, rtol=1e-4)


def test_per_task_gammas():
    s = make(kpi_source="val", gamma_tasks=[1.0, 2.0])
    s.observe_eval(10, {0: 0.9, 1: 0.5}, {})
    np.testing.assert_allclose(s.loss_weights(10), [0.010536, 0.173287], atol=1e-6)
    with pytest.raises(ConfigError, match="gamma_tasks has 3 entries"):
        make(gamma_tasks=[1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "p, fl", [(0.9, 0.0010536), (0.5, 0.173287), (0.1, 1.865094)]
)  # fmt: skip
def test_example_level_focal_table(p, fl):
    s = make()
    out = s.example_losses(0, ce_of([p]), torch.zeros(1))
    assert out.item() == pytest.approx(fl, abs=1e-6)


def test_example_level_focal_gradient_matches_logit_form():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    a = logits.clone().requires_grad_()
    ce = torch.nn.functional.cross_entropy(a, labels, reduction="none")
    make().example_losses(0, ce, labels).mean().backward()
    b = logits.clone().requires_grad_()
    logp = torch.log_softmax(b, -1).gather(1, labels[:, None]).squeeze(1)
    (-((1 - logp.exp()) ** 2) * logp).mean().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_gamma_0_zero_is_cross_entropy_and_small_gamma_has_finite_gradient():
    ce = ce_of([0.5, 0.25])
    assert torch.equal(make(gamma_0=0.0).example_losses(0, ce, torch.zeros(2)), ce)
    x = torch.tensor([0.0, 0.7], requires_grad=True)  # CE exactly 0 with γ_0 < 1
    make(gamma_0=0.5).example_losses(0, x, torch.zeros(2)).sum().backward()
    assert torch.all(torch.isfinite(x.grad))


@pytest.mark.parametrize(
    "hparams, message",
    [({"kpi_source": "dev"}, "kpi_source must be"), ({"alpha": 0.0}, "alpha must be in"),
     ({"gamma_0": -1.0}, "gamma_0 must be >= 0"), ({"gamma_task": -1.0}, "gamma_task")],
)  # fmt: skip
def test_bad_config(hparams, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULERS["dtp"].Config(**hparams)


def test_property_weights_finite_and_state_round_trip():
    rng = np.random.default_rng(2)
    kpis = rng.uniform(0, 1, size=(40, 3))
    kpis[5, 1] = 0.0  # the clamp keeps the weight finite
    s = make(K=3)
    for t in range(20):
        for k in range(3):
            train_kpi(s, t, k, max(kpis[t, k], 1e-30))
        w = s.loss_weights(t + 1)
        assert np.all(np.isfinite(w)) and np.all(w >= 0)
    clone = make(K=3)
    clone.load_state_dict(s.state_dict())
    for t in range(20, 40):
        for k in range(3):
            train_kpi(s, t, k, kpis[t, k])
            train_kpi(clone, t, k, kpis[t, k])
        assert clone.loss_weights(t + 1).tolist() == s.loss_weights(t + 1).tolist()
    assert clone.log_state() == s.log_state()
