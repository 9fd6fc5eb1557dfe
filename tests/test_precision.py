"""hardware.precision: autocast really runs the model in bf16 / fp16, fp16's loss scaling
drops overflowed steps and adapts the scale instead of calling them divergence, and what it
cannot cover is refused before training. (Speed-ups are measured on a GPU by
scripts/bench_throughput.py, not here.)"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_trainer

from mtlrun.errors import ConfigError
from mtlrun.training import precision
from mtlrun.training.precision import GROWTH_INTERVAL, Precision


def trainer_for(tmp_path, cache_dir, *overrides):
    return tiny_trainer(tmp_path, cache_dir, *overrides)


def linear_output_dtypes(trainer) -> set[torch.dtype]:
    """The dtypes the model's linear layers produce during one training step."""
    seen: set[torch.dtype] = set()
    hooks = [m.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
             for m in trainer.model.modules() if isinstance(m, torch.nn.Linear)]  # fmt: skip
    trainer._train_step(0)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_autocast_runs_the_model_in_the_chosen_precision(tmp_path, cache_dir, name, dtype):
    trainer = trainer_for(tmp_path, cache_dir, f"hardware.precision={name}")
    assert linear_output_dtypes(trainer) == {dtype}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # fp32 master


def test_bf16_trains_like_fp32(tmp_path, cache_dir):
    results = {}
    for name in ("fp32", "bf16"):
        (tmp_path / name).mkdir()
        trainer = trainer_for(tmp_path / name, cache_dir, f"hardware.precision={name}",
                              "trainer.max_steps=120")  # fmt: skip
        results[name] = trainer.fit()
    for task, r in results["fp32"]["tasks"].items():
        assert abs(results["bf16"]["tasks"][task]["dev"] - r["dev"]) <= 0.1, task


def test_fp16_overflow_is_dropped_and_the_scale_backs_off(tmp_path, cache_dir, monkeypatch):
    """A loss scale of 2^140 overflows the gradients: those steps are dropped and the scale
    halves until it fits; the run does not stop as diverged and counts the overflows. (fp16
    autocast needs a GPU, so here the loss scaling runs around fp32 arithmetic, which
    overflows the same way at this scale.)"""
    monkeypatch.setattr(precision, "INIT_SCALE", 2.0**140)
    trainer = trainer_for(tmp_path, cache_dir)
    trainer.precision = Precision("fp16", trainer.device)
    trainer.precision.dtype = None  # no fp16 autocast on a CPU
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer._train_step(0)
    assert trainer.precision.overflows == 1 and trainer.precision.scale == 2.0**139
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    results = trainer.fit()
    overflows = results["fp16_overflows"]
    assert 1 < overflows < 60 and results["skipped_steps"] == 0
    assert trainer.precision.scale <= 2.0 ** (140 - overflows)
    assert math.isfinite(results["aggregate"]["dev"])


def test_loss_scaling_arithmetic():
    p = Precision("fp16", torch.device("cpu"))
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    (p.scaled((w * 3).sum())).backward()
    assert torch.equal(w.grad, torch.full((2,), 3.0 * p.scale))
    p.unscale([w])
    assert torch.equal(w.grad, torch.full((2,), 3.0))
    start = p.scale
    for _ in range(GROWTH_INTERVAL):
        p.stepped()
    assert p.scale == 2 * start
    p.overflowed()
    assert p.scale == start and p.overflows == 1
    q = Precision("fp16", torch.device("cpu"))
    q.load_state_dict(p.state_dict())
    assert (q.scale, q.overflows) == (p.scale, p.overflows)
    assert Precision("bf16", torch.device("cpu")).scaled(torch.tensor(2.0)).item() == 2.0


def test_fp16_is_refused_where_it_cannot_work(tmp_path, cache_dir):
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        trainer_for(tmp_path, cache_dir, "hardware.precision=fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_fp16_with_a_custom_backward_is_refused_on_a_gpu(tmp_path, cache_dir):
    with pytest.raises(ConfigError, match="hardware.precision=bf16"):
        trainer_for(tmp_path, cache_dir, "hardware=gpu", "hardware.precision=fp16",
                    "scheduler=gradnorm")  # fmt: skip
