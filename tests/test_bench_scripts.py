"""The benchmark scripts' own logic: what they count, compare and attribute (never timings)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY, model_for, tiny_trainer
from torch import nn

from mtlrun.models import Batch
from mtlrun.models.lstm import LSTMEncoder
from mtlrun.tasks.spec import Kind

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


throughput = script("bench_throughput")
ddp = script("bench_ddp")
peers = script("bench_peers")


def trainer_for(tmp_path: Path, *overrides: str):
    return tiny_trainer(tmp_path / "run", f"cache_dir={tmp_path}", *overrides)


# --- bench_throughput -------------------------------------------------------------------------
def test_peaks_by_device_name():
    assert throughput.peak_tflops("NVIDIA H200", "bf16") == 989.4
    assert throughput.peak_tflops("NVIDIA H200 NVL", "bf16") == 835.5  # before plain H200
    assert throughput.peak_tflops("NVIDIA H100 80GB HBM3", "fp32") == 66.9  # SXM
    assert throughput.peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.5
    assert throughput.peak_tflops("NVIDIA A100-SXM4-80GB", "fp16") == 312.0
    assert throughput.peak_tflops("cpu", "fp32") is None


def test_flop_count_sees_the_lstm_matrix_products():
    """oneDNN's fused LSTM (taken for equal lengths) is invisible to FlopCounterMode; the count
    must still hold the LSTM's matmuls: forward 2·4H(I+H) per token and direction, backward
    about twice that (the input needs a gradient: it comes from trainable embeddings)."""
    hidden, dim, n, length = 16, 8, 4, 6
    cfg = SimpleNamespace(dropout=0.0, hidden_size=hidden, num_layers=1, bidirectional=True,
                          pooling="last")  # fmt: skip
    model = model_for(LSTMEncoder(nn.Embedding(30, dim), cfg), [Kind.CLASSIFICATION], [3])
    batch = Batch(ids=torch.randint(1, 30, (n, length)), lengths=torch.full((n,), length),
                  labels=torch.randint(0, 3, (n,)))  # fmt: skip
    flops = throughput.count_flops(model, [[(0, batch, 1.0)]])
    lstm_forward = 2 * 2 * 4 * hidden * (dim + hidden) * n * length
    assert 2.5 * lstm_forward < flops < 3.2 * lstm_forward
    assert torch.backends.mkldnn.enabled  # switched back on


def test_bare_loop_trains_on_the_trainers_batches(tmp_path):
    """Same weights, same draws, no dropout: after 3 steps the bare loop's model equals the
    trainer's (SINGLE and ALL step modes)."""
    for mode, overrides in (("single", ["scheduler=uniform"]),
                            ("all", ["scheduler=uniform_weights"])):  # fmt: skip
        tr = trainer_for(tmp_path / mode, *overrides, "model.dropout=0")
        model = throughput.bare_copy(tr.model, compile_encoder=False)
        ref = tr.optimizers.optimizers[0]
        optimizer = type(ref)(model.parameters(), **ref.defaults)
        steps = [[(k, tr.kinds[k].collate(tr.tasks[k].splits["train"], i, tr.device), f)
                  for k, i, f in plan]
                 for plan in throughput.draw_steps(tr, 3)]  # fmt: skip
        assert len(steps[0]) == (1 if mode == "single" else len(tr.tasks))
        for t in range(3):
            tr._train_step(t)
        throughput.bare_loop(model, optimizer, steps, tr.grad_clip)
        for (name, a), b in zip(tr.model.named_parameters(), model.parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-6), (mode, name)


def test_bare_copy_of_a_compiled_encoder_is_its_own_model(tmp_path):
    tr = trainer_for(tmp_path)
    tr.model.encoder.compile()  # as hardware.compile=true does (lazy: nothing compiles here)
    assert throughput.is_compiled(tr.model)
    plain = throughput.bare_copy(tr.model, compile_encoder=False)
    assert not throughput.is_compiled(plain)
    assert throughput.is_compiled(tr.model)  # the trainer's model is left compiled
    again = throughput.bare_copy(tr.model, compile_encoder=True)
    assert throughput.is_compiled(again.encoder)
    with torch.no_grad():
        next(plain.parameters()).add_(1.0)  # its own weights, not shared with the trainer's
    assert not torch.equal(next(plain.parameters()), next(tr.model.parameters()))


def test_profile_attributes_the_step_and_restores_the_trainer(tmp_path):
    tr = trainer_for(tmp_path, "scheduler=uniform")
    per_step, lines = throughput.profile(tr, 0, 3)
    for part in ("forward", "backward", "optimizer", "data", "scheduler+logging"):
        assert per_step[part] > 0, part
    assert len(lines) == 1 + len(throughput.CATEGORIES)
    assert "_train_step" not in vars(tr) and "forward" not in vars(tr.model)
    assert all("collate" not in vars(kind) for kind in tr.kinds)


def test_category_is_the_nearest_labelled_caller():
    def event(name, parent=None):
        return SimpleNamespace(name=name, cpu_parent=parent)

    step = event("mtlrun:other")
    backward = event("autograd::engine::evaluate_function: MmBackward0", step)
    assert throughput.category_of(event("aten::mm", backward)) == "backward"
    forward = event("mtlrun:forward", step)
    assert throughput.category_of(event("aten::addmm", event("aten::linear", forward))) == (
        "forward"
    )
    adam = event("Optimizer.step#Adam.step", event("mtlrun:optimizer", step))
    assert throughput.category_of(event("aten::_foreach_add_", adam)) == "optimizer"
    assert throughput.category_of(event("aten::item", step)) == "other"
    assert throughput.category_of(event("aten::empty")) == "other"


# --- bench_ddp --------------------------------------------------------------------------------
def test_ddp_settings_and_scaling():
    one, two, threads = ddp.settings([1, 2], gpu=False, threads_baseline=True)
    assert one.overrides == ("hardware=cpu", "hardware.num_threads=1") and one.units == 1
    assert "hardware=ddp" in two.overrides and "hardware.devices=2" in two.overrides
    assert "hardware.num_threads=1" in two.overrides and two.units == 2
    assert threads.processes == 1 and threads.units == 2
    gpu = ddp.settings([1, 4], gpu=True, threads_baseline=True)
    assert [s.overrides[0] for s in gpu] == ["hardware=gpu", "hardware=ddp"]
    assert "hardware.device=cuda" in gpu[1].overrides and gpu[1].units == 4

    rows = ddp.scaling([
        {"label": "1", "units": 1, "steps": 100, "train_seconds": [10.0, 12.0, 50.0]},
        {"label": "2", "units": 2, "steps": 100, "train_seconds": [8.0]},
    ])  # fmt: skip
    assert rows[0]["rate"] == pytest.approx(100 / 12)  # the median of the repeats
    assert rows[1]["speedup"] == pytest.approx(12 / 8)
    assert rows[1]["efficiency"] == pytest.approx(12 / 8 / 2)


@pytest.mark.slow
def test_bench_ddp_runs_one_process(tmp_path):
    tiny = [o for o in TINY if not o.startswith(("trainer.", "hardware."))]
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_ddp.py"), "--devices", "1", "--steps", "8",
         "--batch-size", "16", *tiny, f"cache_dir={tmp_path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    row = next(line for line in out.splitlines() if line.startswith("1 process x 1 thread"))
    seconds, rate, speedup, efficiency, _wall = (float(x) for x in row.split()[5:10])
    # seconds is printed to 0.1 s, the rate from the unrounded time: 8 steps in [s ± 0.05]
    assert seconds > 0 and 8 / (seconds + 0.05) <= rate * 1.001
    assert seconds <= 0.05 or rate <= 8 / (seconds - 0.05) * 1.001
    assert speedup == efficiency == 1.0


# --- bench_peers ------------------------------------------------------------------------------
def test_missing_libmtl_is_one_line():
    with pytest.raises(SystemExit) as stop:
        peers.load_libmtl("EW", package="libmtl_that_is_not_installed")
    assert "pip install --no-deps LibMTL==1.1.5" in str(stop.value)
    assert "\n" not in str(stop.value)


needs_libmtl = pytest.mark.skipif(
    importlib.util.find_spec("LibMTL") is None, reason="LibMTL not installed (optional)"
)


@needs_libmtl
@pytest.mark.parametrize("label", list(peers.METHODS))
def test_libmtl_and_mtlrun_take_the_same_first_step(tmp_path, label):
    pair = peers.setup(peers.METHODS[label], [*TINY, f"cache_dir={tmp_path}"], tmp_path, 3)
    check = peers.first_step(pair.trainer, pair.loop, pair.batches[0], pair.c.seed)
    assert peers.agrees(check), check
    pair.loop.step(pair.batches[1])  # and LibMTL's steady state runs (GradNorm: K backwards)
    pair.loop.steady_state()
    weights = pair.loop.step(pair.batches[2])[1]
    assert weights.shape == (len(pair.trainer.tasks),)


@needs_libmtl
def test_first_step_check_tells_different_models_apart(tmp_path):
    pair = peers.setup(peers.METHODS["EW"], [*TINY, f"cache_dir={tmp_path}"], tmp_path, 1)
    with torch.no_grad():
        for p in pair.loop.h.model.encoder.lstm.parameters():
            p.add_(0.05)
    check = peers.first_step(pair.trainer, pair.loop, pair.batches[0], pair.c.seed)
    assert not peers.agrees(check) and check["grad"] > 1e-3
