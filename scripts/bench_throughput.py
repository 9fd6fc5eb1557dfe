"""Training throughput of mtlrun's trainer against a bare hand-written PyTorch loop.

Both train the same model (same initial weights) on the same minibatches (the same scheduler
draws), in one process, alternating A/B rounds to cancel drift. Both see the same batches
in the same rounds; the bare loop gets them pre-collated, so the ratio charges mtlrun for
everything it adds per step: the scheduler
decision, batch assembly, loss weighting, logging and the progress display. Target: >= 0.95.

    python scripts/bench_throughput.py [--steps 100] [--rounds 12] [--warmup 20] [override ...]
    python scripts/bench_throughput.py tasks=multidomain16 data_dir=/path/to/data
    python scripts/bench_throughput.py model=lstm --profile        # where the time goes
    python scripts/bench_throughput.py hardware=gpu hardware.precision=bf16 hardware.compile=true

On a small CPU machine, `hardware.num_threads=1` gives steadier figures (and, for the default
LSTM, faster ones): two intra-op threads on two cores slow down by several times whenever
another process runs.

Every override goes to the trainer's config; the bare loop follows `hardware.precision` (the
same autocast; fp16 with torch.amp.GradScaler) and `hardware.compile` (its copy's encoder
compiled in place too) where the trainer implements them, and says so when it does not. In
ALL step mode the bare loop trains Σ_k L_k over the step's minibatches (MIXED: Σ_k n_k/B · L_k).

Model FLOPs utilisation, printed after the ratio: FLOPs per training step are counted with
torch.utils.flop_counter.FlopCounterMode over forward + backward of the first timed steps'
batches (the mean per step), on a CPU fp32 copy of the model with oneDNN off: the fused RNN
kernels that train the LSTM (oneDNN's aten::mkldnn_rnn_layer on CPU, cuDNN on CUDA) are
invisible to the counter, while torch's native LSTM runs the same matrix products as ops it
counts, over the packed (unpadded) tokens. It counts matrix products (and attention) only, not
element-wise work or the optimizer: model FLOPs, not the hardware's (padding excluded).
Achieved FLOP/s = FLOPs per step × steps/s; MFU = achieved / peak, with the peak from
`--peak-tflops` or, on a known GPU, the dense datasheet peak for the run's precision (PEAKS);
on CPU without --peak-tflops MFU is n/a.

`--profile`: after the timed rounds, torch.profiler over `--profile-steps` more trainer steps;
every op's self time is put in the category of its nearest labelled caller and the top ops of
each are printed: forward (the model's forward, losses included), backward (autograd), optimizer
(zero_grad, gradient clipping, step), data (drawing the example indices, collation, the
host-to-device copy), scheduler+logging (the scheduler's calls, run log, progress display) and
other (the trainer's own code outside these: the divergence guard's checks, bookkeeping).
The profiler slows every op down, so read the shares, not the milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from torch.utils.flop_counter import FlopCounterMode

from mtlrun.config import register_configs, validate
from mtlrun.experiment import build_trainer
from mtlrun.paths import config_dir
from mtlrun.schedulers import StepMode

# Dense (no sparsity) peak TFLOP/s by device name (matched as a substring, first match wins):
# bf16/fp16 on tensor cores, fp32 on the CUDA cores (non-tensor). Sources: NVIDIA H200 product
# page (SXM and NVL), NVIDIA H100 Tensor Core GPU datasheet (SXM, PCIe, NVL), NVIDIA A100
# Tensor Core GPU datasheet; the datasheets' tensor figures are "with sparsity", halved here.
# fp32 runs may use TF32 tensor cores (cuDNN allows TF32 by default), whose peaks are higher
# (H100/H200 SXM 494.7, A100 156): an fp32 MFU against the CUDA-core peak can exceed 100 %.
PEAKS = {
    "H200 NVL": {"bf16": 835.5, "fp16": 835.5, "fp32": 60.0},
    "H200": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
    "H100 NVL": {"bf16": 835.5, "fp16": 835.5, "fp32": 60.0},
    "H100 PCIe": {"bf16": 756.5, "fp16": 756.5, "fp32": 51.2},
    "H100": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},  # SXM5
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
}
FLOP_STEPS = 10  # steps whose FLOPs are counted (the mean is the figure)


def peak_tflops(device_name: str, precision: str) -> float | None:
    for key, peaks in PEAKS.items():
        if key.lower() in device_name.lower():
            return peaks[precision]
    return None


# --- the bare loop ----------------------------------------------------------------------------
def uncompiled(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "_orig_mod", module)  # torch.compile(module) wraps it


def _compiled_here(m: torch.nn.Module) -> bool:
    """torch.compile(m) (an OptimizedModule) or m.compile() (in place: _compiled_call_impl)."""
    return hasattr(m, "_orig_mod") or getattr(m, "_compiled_call_impl", None) is not None


def is_compiled(module: torch.nn.Module) -> bool:
    return any(_compiled_here(m) for m in module.modules())


def bare_copy(model: torch.nn.Module, compile_encoder: bool) -> torch.nn.Module:
    """A deep copy with the same weights, uncompiled (a copied compiled call would run the
    original's forward); its encoder compiled in place if asked, as experiment.py does."""
    base = uncompiled(model)
    encoder = base.encoder
    base.encoder = uncompiled(encoder)
    in_place = {m: m._compiled_call_impl for m in base.modules()
                if getattr(m, "_compiled_call_impl", None) is not None}  # fmt: skip
    for m in in_place:
        m._compiled_call_impl = None
    try:
        out = copy.deepcopy(base)
    finally:
        base.encoder = encoder
        for m, impl in in_place.items():
            m._compiled_call_impl = impl
    if compile_encoder:
        out.encoder.compile()
    return out


@dataclasses.dataclass
class BareAmp:
    """The bare loop's mixed precision: plain torch.autocast, and GradScaler for fp16."""

    device_type: str
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def bare_loop(model, optimizer, steps, grad_clip, amp: BareAmp | None = None) -> None:
    """`steps`: one list of (task, batch, loss factor) per step."""
    amp = amp or BareAmp("cpu")
    for plan in steps:
        with amp.autocast():
            losses = [model(k, batch).example_losses.float().mean() for k, batch, _ in plan]
        factors = [f for _, _, f in plan]
        loss = (
            losses[0]
            if factors == [1.0]
            else sum(f * x for f, x in zip(factors, losses, strict=True))
        )
        optimizer.zero_grad(set_to_none=True)
        if amp.scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        else:
            amp.scaler.scale(loss).backward()
            amp.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            amp.scaler.step(optimizer)
            amp.scaler.update()


def draw_steps(trainer, n: int) -> list[list[tuple[int, np.ndarray, float]]]:
    """The (task, example indices, loss factor) lists of the trainer's next n steps, drawn by
    copies of its scheduler and streams as Trainer._draw draws them."""
    sched, streams = copy.deepcopy(trainer.scheduler), copy.deepcopy(trainer.streams)
    mode, size = trainer.step_mode, trainer.cfg.batch_size
    out = []
    for t in range(n):
        if mode == StepMode.SINGLE:
            k = sched.next_task(t)
            out.append([(k, streams[k].next(), 1.0)])
        elif mode == StepMode.ALL:
            out.append([(k, s.next(), 1.0) for k, s in enumerate(streams)])
        else:
            counts = sched.mixed_counts(t, size)
            out.append([(k, streams[k].take(int(c)), int(c) / size)
                        for k, c in enumerate(counts) if c > 0])  # fmt: skip
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- FLOPs ------------------------------------------------------------------------------------
def batch_to(batch, device: torch.device):
    moved = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    return dataclasses.replace(batch, **{k: v.to(device) for k, v in moved.items()
                                         if isinstance(v, torch.Tensor)})  # fmt: skip


@contextlib.contextmanager
def without_onednn():
    """CPU LSTMs without oneDNN's fused RNN kernels (aten::mkldnn_rnn_layer), which the FLOP
    counter cannot see; the native LSTM runs the same matrix products as visible ops."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def count_flops(model: torch.nn.Module, steps) -> float:
    """Mean FLOPs of forward + backward per step, on a CPU fp32 copy of `model` (see the module
    docstring); `steps` as bare_loop takes them."""
    cpu = copy.deepcopy(uncompiled_model(model)).cpu().float().train()
    cpu_device = torch.device("cpu")
    total = 0
    for plan in steps:
        with without_onednn(), FlopCounterMode(display=False) as counter:
            loss = sum(f * cpu(k, batch_to(b, cpu_device)).loss for k, b, f in plan)
            loss.backward()
        total += counter.get_total_flops()
        cpu.zero_grad(set_to_none=True)
    return total / max(len(steps), 1)


def uncompiled_model(model: torch.nn.Module) -> torch.nn.Module:
    base = uncompiled(model)
    if not is_compiled(base):
        return base
    return bare_copy(base, compile_encoder=False)


def si(x: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


# --- profile ----------------------------------------------------------------------------------
CATEGORIES = ("forward", "backward", "optimizer", "data", "scheduler+logging", "other")
LABEL = "mtlrun:"  # record_function ranges this script opens around the trainer's parts


def category_of(event) -> str:
    """The category of a profiler event: that of its nearest labelled caller (itself included):
    an autograd engine call is backward, torch's Optimizer.* ranges are optimizer, this script's
    `mtlrun:<category>` ranges are theirs; anything else is other."""
    e = event
    while e is not None:
        name = e.name
        if name.startswith("autograd::engine::evaluate_function"):
            return "backward"
        if name.startswith("Optimizer."):
            return "optimizer"
        if name.startswith(LABEL):
            return name[len(LABEL) :]
        e = e.cpu_parent
    return "other"


def labelled(category: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.profiler.record_function(LABEL + category):
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def labels(trainer):
    """Open a `mtlrun:<category>` range around each part of the trainer's step (instance
    attributes and one module global, all restored on exit)."""
    s = trainer.scheduler
    parts = [
        (trainer, "_train_step", "other"),
        (trainer, "_draw", "data"),
        *[(kind, "collate", "data") for kind in {id(k): k for k in trainer.kinds}.values()],
        (trainer.model, "forward", "forward"),
        (trainer.optimizers, "step", "optimizer"),
        (trainer.optimizers, "zero_grad", "optimizer"),
        (trainer, "_grad_norm", "optimizer"),  # clipping (and the gradient norm it returns)
        *[(s, name, "scheduler+logging") for name in (
            "next_task", "mixed_counts", "loss_weights", "lr_scales", "example_losses",
            "combine", "custom_backward", "observe_train", "observe_train_kpis",
            "wants_signals", "wants_loss_probe", "observe_loss_probe", "observe_signals")],
        (trainer.display, "advance", "scheduler+logging"),
    ]  # fmt: skip
    if trainer.log is not None:
        parts.append((trainer.log, "step", "scheduler+logging"))
    saved = []
    for owner, name, category in parts:
        if not hasattr(owner, name):  # a part this trainer version does not have
            continue
        saved.append((owner, name, owner.__dict__.get(name, None), name in owner.__dict__))
        setattr(owner, name, labelled(category, getattr(owner, name)))
    try:
        yield
    finally:
        for owner, name, old, had in reversed(saved):
            if had:
                setattr(owner, name, old)
            else:
                delattr(owner, name)


def breakdown(events, steps: int, top: int = 4) -> tuple[dict[str, float], list[str]]:
    """Self CPU ms per step by category, and as lines: per step and share (CPU, and device on
    CUDA), with the top ops of each category."""
    cpu: dict[str, float] = defaultdict(float)
    dev: dict[str, float] = defaultdict(float)
    ops: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in events:
        c = category_of(e)
        cpu[c] += e.self_cpu_time_total
        dev[c] += getattr(e, "self_device_time_total", 0.0) or 0.0
        ops[c][e.name] += e.self_cpu_time_total
    total_cpu, total_dev = sum(cpu.values()) or 1.0, sum(dev.values())
    lines = [f"{'category':<19}{'CPU ms/step':>12}{'share':>7}"
             + (f"{'device ms/step':>16}{'share':>7}" if total_dev else "")
             + "  top ops by self CPU time"]  # fmt: skip
    for c in CATEGORIES:
        top_ops = sorted(ops[c].items(), key=lambda kv: -kv[1])[:top]
        names = ", ".join(f"{n} {t / 1e3 / steps:.2f}" for n, t in top_ops)
        line = f"{c:<19}{cpu[c] / 1e3 / steps:>12.2f}{cpu[c] / total_cpu:>7.0%}"
        if total_dev:
            line += f"{dev[c] / 1e3 / steps:>16.2f}{dev[c] / total_dev:>7.0%}"
        lines.append(f"{line}  {names}")
    return {c: cpu[c] / 1e3 / steps for c in CATEGORIES}, lines


def profile(trainer, first_step: int, steps: int) -> tuple[dict[str, float], list[str]]:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if trainer.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    for t in range(first_step, first_step + 5):  # warm-up outside the profile
        trainer._train_step(t)
    with labels(trainer), torch.profiler.profile(activities=activities) as prof:
        for t in range(first_step + 5, first_step + 5 + steps):
            trainer._train_step(t)
        sync(trainer.device)
    return breakdown(prof.events(), steps)


# --- main -------------------------------------------------------------------------------------
def setup_amp(c, trainer) -> tuple[BareAmp, bool, list[str]]:
    """The bare loop's precision and compile settings, following what the trainer does."""
    notes = []
    precision = getattr(c.hardware, "precision", "fp32")
    compile_ = bool(getattr(c.hardware, "compile", False))
    amp = BareAmp(trainer.device.type)
    if precision != "fp32":
        if hasattr(trainer, "precision"):  # training/precision.py: the trainer's autocast
            amp.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
            if precision == "fp16":
                amp.scaler = torch.amp.GradScaler(trainer.device.type)
        else:
            notes.append(f"hardware.precision={precision}: this trainer does not use autocast "
                         "yet; both sides ran fp32")  # fmt: skip
    if compile_ and not is_compiled(trainer.model):
        notes.append("hardware.compile=true: this trainer's model is not compiled yet; "
                     "neither side compiled")  # fmt: skip
        compile_ = False
    return amp, compile_, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per round")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak of this device for MFU (default: PEAKS by GPU name; none "
                             "on CPU)")  # fmt: skip
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then profile --profile-steps trainer steps: where the time goes",
    )
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=20,
                        help="untimed steps per side first (more with hardware.compile=true: "
                             "new batch shapes recompile)")  # fmt: skip
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=["trainer.progress=false", *args.overrides])
    c = validate(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(c, Path(tmp))
        trainer.model.train()
        amp, compile_, notes = setup_amp(c, trainer)
        # the bare loop's copy: same weights, its own optimizer of the same kind and settings
        model = bare_copy(trainer.model, compile_)
        reference = trainer.optimizers.optimizers[0]
        optimizer = type(reference)(model.parameters(), **reference.defaults)
        # the exact batches the trainer will draw, warm-up (steps 0 to warmup - 1) included
        warm = args.warmup
        plans = draw_steps(trainer, warm + args.steps * args.rounds)
        batches = [
            [(k, trainer.kinds[k].collate(trainer.tasks[k].splits["train"], index,
                                          trainer.device), f) for k, index, f in plan]
            for plan in plans
        ]  # fmt: skip
        clip = c.optimizer.grad_clip or float("inf")

        for t in range(warm):  # warm-up both paths
            trainer._train_step(t)
        bare_loop(model, optimizer, batches[:warm], clip, amp)

        # short alternating rounds: machine noise hits both sides alike; the median ratio of
        # the rounds is the figure, the spread says how much to trust it
        timings: dict[str, list[float]] = {"mtlrun": [], "bare": []}
        step = warm
        for _ in range(args.rounds):
            sync(trainer.device)
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer._train_step(step)
                step += 1
            sync(trainer.device)
            timings["mtlrun"].append(time.perf_counter() - start)
            same = batches[step - args.steps : step]
            start = time.perf_counter()
            bare_loop(model, optimizer, same, clip, amp)
            sync(trainer.device)
            timings["bare"].append(time.perf_counter() - start)

        flops = count_flops(trainer.model, batches[warm : warm + FLOP_STEPS])
        report = profile(trainer, step, args.profile_steps)[1] if args.profile else []

    ratios = np.array(timings["bare"]) / np.array(timings["mtlrun"])
    rate = {name: args.steps * args.rounds / sum(t) for name, t in timings.items()}
    print(f"tasks={c.tasks.name} model={c.model.name} scheduler={c.scheduler.name} "
          f"batch={c.trainer.batch_size} threads={torch.get_num_threads()} "
          f"rounds={args.rounds}x{args.steps} steps")  # fmt: skip
    print(f"mtlrun trainer : {rate['mtlrun']:8.1f} steps/s")
    print(f"bare loop      : {rate['bare']:8.1f} steps/s")
    print(f"ratio          : {np.median(ratios):.3f} median over rounds "
          f"(range {ratios.min():.3f}-{ratios.max():.3f}; target >= 0.95)")  # fmt: skip

    precision = getattr(c.hardware, "precision", "fp32")
    device = trainer.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak, source = args.peak_tflops, "--peak-tflops"
    if peak is None and device.type == "cuda":
        peak, source = peak_tflops(name, precision), f"{name} {precision} dense datasheet peak"
    print(f"model FLOPs    : {si(flops, 'FLOP')} per training step (forward + backward, "
          f"FlopCounterMode on a CPU fp32 copy, oneDNN off, mean of the first {FLOP_STEPS} "
          f"timed steps; matrix products only)")  # fmt: skip
    achieved = {side: flops * r for side, r in rate.items()}
    print(f"achieved       : mtlrun {si(achieved['mtlrun'], 'FLOP/s')}, bare "
          f"{si(achieved['bare'], 'FLOP/s')} (FLOPs per step x steps/s above; {name}, "
          f"{precision})")  # fmt: skip
    if peak:
        print(
            f"MFU            : mtlrun {achieved['mtlrun'] / (peak * 1e12):.2%}, bare "
            f"{achieved['bare'] / (peak * 1e12):.2%} of {peak:g} TFLOP/s ({source})"
        )
    else:
        why = "no --peak-tflops" + ("" if device.type == "cuda" else " on CPU")
        why += f"; {name} is not in PEAKS" if device.type == "cuda" else ""
        print(f"MFU            : n/a ({why})")
    for note in notes:
        print(f"note           : {note}")
    if report:
        print(
            f"profile        : {args.profile_steps} trainer steps under torch.profiler (after "
            f"5 untimed), self time by category; profiler overhead inflates every op"
        )
        for line in report:
            print(f"  {line}")


if __name__ == "__main__":
    main()
