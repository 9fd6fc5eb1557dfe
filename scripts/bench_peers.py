"""Loss-weighting throughput: mtlrun's trainer against LibMTL's weighting classes.

Both sides train the same model (mtlrun's shared encoder + one head per task, same initial
weights) on the same pre-drawn minibatches, in ALL step mode (one minibatch of every task per
step), with the same optimizer (type and settings of mtlrun's). Per method:

    EW        mtlrun scheduler=uniform_weights      LibMTL.weighting.EW
    DWA       mtlrun scheduler=dwa                  LibMTL.weighting.DWA       (T from mtlrun's)
    UW        mtlrun scheduler=kendall_uncertainty  LibMTL.weighting.UW
              scheduler.variant=libmtl (LibMTL's objective: c = d = 1/2, s_k starts at -0.5)
    GradNorm  mtlrun scheduler=gradnorm             LibMTL.weighting.GradNorm  (alpha from mtlrun's)

Rounds alternate mtlrun / LibMTL (`--rounds` rounds of `--steps` steps each side, after
`--warmup` steps per side that are not timed); the figure is the median over rounds of
mtlrun steps/s ÷ LibMTL steps/s (> 1: mtlrun is faster), with the range over rounds.

What each side does per step. mtlrun: its whole training step (`Trainer._train_step`: batch
collation and host-to-device copy, forward, the scheduler's weighting and backward, gradient
clipping at optimizer.grad_clip with the divergence guard's checks, optimizer step, logging).
LibMTL: the loop of `LibMTL.Trainer.train` (multi-input): forward of every task, the losses
put into one tensor, one `loss.item()` per task (its loss meter; DWA and GradNorm read the epoch
means), `optimizer.zero_grad()`, `weighting.backward(losses, **weight_args)`,
`optimizer.step()`; no gradient clipping (LibMTL has none), no metric meter, and the batches
are handed over already collated on the device, so LibMTL is not charged for data. The LibMTL
side is put into its steady state before timing: epochs 0 and 1 are filled with the warm-up's
mean losses (in epoch 0 LibMTL's GradNorm is plain EW, and DWA is EW until epoch 2); an epoch
is then max_k (batches of task k), as in LibMTL's multi-input trainer.

The methods are each library's own, not identical algorithms: LibMTL's GradNorm takes the
gradient of every task over all shared parameters (K backward passes, each copied into a flat
vector on the CPU) and learns w = K·softmax(φ) with the model's optimizer; mtlrun's takes K
`autograd.grad` calls restricted to the top LSTM layer W, then one backward of Σ w_k L_k, and
steps w with its own Adam (Chen et al.'s direct parameterisation by default).

Sanity check (printed first): before any update, both sides take their first step from the same
weights on the same batches with the same dropout seed; the per-task losses, the weights each
side applied, Σ_k w_k L_k and the shared encoder's gradient (before clipping) must agree. At the
first step all four methods weight every task by 1 (UW: 1/(2 e^-0.5) on both sides), so this
checks that both sides optimise the same objective on the same data.

Installing LibMTL (optional; this script exits with one line when it is missing):

    pip install --no-deps LibMTL==1.1.5

`--no-deps` on purpose. LibMTL 1.1.5 declares torchvision, and `pip install LibMTL torchvision`
replaces the CPU build of torch 2.13 with the newest CUDA build (torchvision 0.29 wants torch
2.14, several GB). torchvision==0.28.0 matches torch 2.13, but no torchvision that does has
`torchvision.models.utils`, which `LibMTL/__init__.py` imports (for its ResNets), so
`import LibMTL` fails either way. The weighting classes need only torch and numpy: this script
loads `LibMTL.weighting.<Method>` without running `LibMTL/__init__.py` or
`LibMTL/weighting/__init__.py` (see `load_libmtl`), and torchvision is not needed at all.

LibMTL 1.1.5 was written for torch 1.8, whose `Module.zero_grad()` zeroed gradients in place;
its GradNorm writes into `param.grad.data` after `zero_grad_share_params()`, which fails with
today's default `set_to_none=True`. The harness's `zero_grad_share_params` therefore zeroes in
place, as LibMTL's did when it was written.

    python scripts/bench_peers.py [--steps 10] [--rounds 6] [--methods EW,DWA,UW,GradNorm]
                                  [override ...]
    python scripts/bench_peers.py --steps 25 --rounds 8 hardware.num_threads=1
    python scripts/bench_peers.py tasks=multidomain16 data_dir=/path/to/data

On a small CPU machine pass `hardware.num_threads=1` (both sides run in this process and share
torch's threads): the synthetic suite's LSTM gains nothing from a second intra-op thread, and
two threads on a machine where anything else runs make every round's time erratic.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from mtlrun.config import register_configs, validate
from mtlrun.experiment import build_trainer
from mtlrun.paths import config_dir
from mtlrun.schedulers import StepMode

INSTALL = "pip install --no-deps LibMTL==1.1.5"


@dataclass(frozen=True)
class Method:
    label: str  # LibMTL's class name
    overrides: tuple[str, ...]  # mtlrun's scheduler
    kwargs: dict[str, str] = field(default_factory=dict)  # weight_args <- mtlrun config key


METHODS = {
    m.label: m
    for m in (
        Method("EW", ("scheduler=uniform_weights",)),
        Method("DWA", ("scheduler=dwa",), {"T": "T"}),
        Method("UW", ("scheduler=kendall_uncertainty", "scheduler.variant=libmtl")),
        Method("GradNorm", ("scheduler=gradnorm",), {"alpha": "alpha"}),
    )
}


def load_libmtl(name: str, package: str = "LibMTL") -> type:
    """LibMTL's weighting class `name`, loaded without running LibMTL's package __init__ files
    (they import torchvision's ResNet helpers; see the module docstring). Exits with one line
    when LibMTL is not installed."""
    if importlib.util.find_spec(package) is None:
        raise SystemExit(f"bench_peers: LibMTL is not installed; install it with: {INSTALL}")
    for pkg in (package, f"{package}.weighting"):
        if pkg not in sys.modules:  # a package module whose __init__ is not executed
            spec = importlib.util.find_spec(pkg)
            module = importlib.util.module_from_spec(spec)
            sys.modules[pkg] = module
            if "." in pkg:
                sys.modules[package].weighting = module
    module: ModuleType = importlib.import_module(f"{package}.weighting.{name}")
    return getattr(module, name)


def libmtl_harness(weighting: type, model: torch.nn.Module, device: torch.device, epochs: int):
    """A LibMTL weighting on mtlrun's model, with the attributes LibMTL's Trainer and
    AbsArchitecture give it (LibMTL/trainer.py, architecture/abstract_arch.py)."""

    class Harness(weighting):
        def __init__(self) -> None:
            super().__init__()
            self.model = model  # a submodule: harness.parameters() = model's + the weighting's
            self.task_num = len(model.heads)
            self.device = device
            self.rep_grad = False
            self.epoch = 0
            self.train_loss_buffer = np.zeros((self.task_num, epochs))
            self.init_param()  # UW, GradNorm: loss_scale, on self.device

        def get_share_params(self):
            return self.model.encoder.parameters()

        def zero_grad_share_params(self) -> None:
            self.model.encoder.zero_grad(set_to_none=False)  # torch 1.8's zero_grad: in place

    return Harness()


class LibMTLLoop:
    """LibMTL's multi-input training loop (Trainer.train) around a weighting harness."""

    def __init__(self, harness, optimizer, weight_args: dict[str, Any], epoch_steps: int):
        self.h, self.optimizer, self.weight_args = harness, optimizer, weight_args
        self.epoch_steps = epoch_steps
        self._reset()

    def _reset(self) -> None:
        k = self.h.task_num
        self.records: list[list[float]] = [[] for _ in range(k)]
        self.sizes: list[list[int]] = [[] for _ in range(k)]
        self.in_epoch = 0

    def step(self, batches) -> tuple[torch.Tensor, np.ndarray]:
        h = self.h
        train_losses = torch.zeros(h.task_num).to(h.device)
        for k, batch in batches:
            out = h.model(k, batch)
            loss = out.loss
            train_losses[k] = loss
            self.records[k].append(loss.item())  # its loss meter: AbsLoss._update_loss
            self.sizes[k].append(len(out.example_losses))
        self.optimizer.zero_grad()
        w = h.backward(train_losses, **self.weight_args)
        self.optimizer.step()
        self.in_epoch += 1
        if self.in_epoch == self.epoch_steps:
            self.close_epoch()
        return train_losses.detach(), np.asarray(w, dtype=np.float64)

    def epoch_means(self) -> np.ndarray:
        """Each task's batch-size-weighted mean loss so far this epoch (_average_loss)."""
        return np.array([np.dot(r, s) / max(sum(s), 1) for r, s in zip(self.records, self.sizes,
                                                                       strict=True)])  # fmt: skip

    def close_epoch(self) -> None:
        h = self.h
        if h.epoch >= h.train_loss_buffer.shape[1]:
            h.train_loss_buffer = np.pad(h.train_loss_buffer, ((0, 0), (0, h.epoch + 1)))
        h.train_loss_buffer[:, h.epoch] = self.epoch_means()
        h.epoch += 1
        self._reset()

    def steady_state(self) -> None:
        """Epochs 0 and 1 = the warm-up so far; from epoch 2 every method weights as in steady
        training (DWA from the loss ratio, GradNorm from the gradient norms)."""
        means = self.epoch_means()
        while self.h.epoch < 2:
            self.h.train_loss_buffer[:, self.h.epoch] = means
            self.h.epoch += 1
        self._reset()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def first_step(trainer, loop: LibMTLLoop, batches, seed: int) -> dict[str, Any]:
    """Both sides' first step from the same weights, batches and dropout seed: per-task losses,
    applied weights and the shared encoder's gradient (before mtlrun clips it)."""
    seen: dict[str, Any] = {"w": np.asarray(trainer.scheduler.loss_weights(0), np.float64)}
    sched = trainer.scheduler
    combine, custom, grad_norm = sched.combine, sched.custom_backward, trainer._grad_norm

    def record(task_losses) -> None:
        seen["L"] = np.array([float(task_losses[k].detach()) for k in sorted(task_losses)])

    def combine_hook(t, task_losses):
        record(task_losses)
        return combine(t, task_losses)

    def custom_hook(t, task_losses, shared):
        record(task_losses)
        return custom(t, task_losses, shared)

    def norm_hook():
        seen["grad"] = [p.grad.detach().clone() for p in trainer.model.encoder.parameters()]
        return grad_norm()

    sched.combine, sched.custom_backward, trainer._grad_norm = combine_hook, custom_hook, norm_hook
    try:
        torch.manual_seed(seed)
        trainer._train_step(0)
    finally:  # instance attributes off again: the class's methods from here on
        del sched.combine, sched.custom_backward, trainer._grad_norm
    torch.manual_seed(seed)
    encoder = loop.h.model.encoder
    # the gradient LibMTL leaves on the encoder, read just before its optimizer step
    step, captured = loop.optimizer.step, {}

    def step_hook(*args, **kwargs):
        captured["grad"] = [p.grad.detach().clone() for p in encoder.parameters()]
        return step(*args, **kwargs)

    loop.optimizer.step = step_hook
    try:
        lib_losses, lib_w = loop.step(batches)
    finally:
        del loop.optimizer.step
    g_m = torch.cat([g.flatten().double().cpu() for g in seen["grad"]])
    g_l = torch.cat([g.flatten().double().cpu() for g in captured["grad"]])
    lib_l = lib_losses.double().cpu().numpy()
    return {
        "dL": float(np.abs(seen["L"] - lib_l).max()),
        "dw": float(np.abs(seen["w"] - lib_w).max()),
        "total": (float(seen["w"] @ seen["L"]), float(lib_w @ lib_l)),
        "grad": float((g_m - g_l).norm() / g_l.norm().clamp_min(1e-30)),
    }


def agrees(check: dict[str, Any]) -> bool:
    """Whether both sides' first steps optimised the same objective (first_step's figures)."""
    return check["dL"] < 1e-5 and check["dw"] < 1e-6 and check["grad"] < 1e-4


@dataclass
class Pair:
    """One method's two sides, ready to step: mtlrun's trainer and LibMTL's loop."""

    c: Any  # the typed config
    trainer: Any
    loop: LibMTLLoop
    batches: list  # per step: [(task, collated batch)] for every task
    epoch_steps: int


def setup(method: Method, overrides: list[str], tmp: Path, total_steps: int) -> Pair:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[*method.overrides, "trainer.step_mode=all",
                                           "trainer.progress=false", *overrides])  # fmt: skip
    c = validate(cfg)
    hw = c.hardware
    if getattr(hw, "precision", "fp32") != "fp32" or getattr(hw, "compile", False):
        raise SystemExit("bench_peers: LibMTL 1.1.5 has no mixed precision or torch.compile; "
                         "compare at hardware.precision=fp32 hardware.compile=false")  # fmt: skip
    trainer = build_trainer(c, tmp / method.label)
    if trainer.step_mode != StepMode.ALL:
        raise SystemExit(f"bench_peers: {c.scheduler.name} did not run in ALL step mode")
    trainer.model.train()
    device = trainer.device
    # LibMTL's copy: same weights; its optimizer is of the same kind and settings as mtlrun's
    model = copy.deepcopy(trainer.model)
    epoch_steps = max(s.n_batches for s in trainer.streams)
    harness = libmtl_harness(load_libmtl(method.label), model, device,
                             2 + total_steps // epoch_steps)  # fmt: skip
    reference = trainer.optimizers.optimizers[0]
    optimizer = type(reference)(harness.parameters(), **reference.defaults)
    weight_args = {key: getattr(c.scheduler, name) for key, name in method.kwargs.items()}
    loop = LibMTLLoop(harness, optimizer, weight_args, epoch_steps)
    streams = copy.deepcopy(trainer.streams)  # the exact batches the trainer will draw
    batches = [
        [(k, trainer.kinds[k].collate(trainer.tasks[k].splits["train"], s.next(), device))
         for k, s in enumerate(streams)]
        for _ in range(total_steps)
    ]  # fmt: skip
    return Pair(c, trainer, loop, batches, epoch_steps)


def bench(method: Method, args, tmp: Path) -> dict[str, Any]:
    total = 1 + args.warmup + args.steps * args.rounds
    p = setup(method, args.overrides, tmp, total)
    trainer, loop, device = p.trainer, p.loop, p.trainer.device
    check = first_step(trainer, loop, p.batches[0], p.c.seed)
    for t in range(1, 1 + args.warmup):
        trainer._train_step(t)
        loop.step(p.batches[t])
    loop.steady_state()
    timings: dict[str, list[float]] = {"mtlrun": [], "libmtl": []}
    step = 1 + args.warmup
    for _ in range(args.rounds):
        sync(device)
        start = time.perf_counter()
        for t in range(step, step + args.steps):
            trainer._train_step(t)
        sync(device)
        timings["mtlrun"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for t in range(step, step + args.steps):
            loop.step(p.batches[t])
        sync(device)
        timings["libmtl"].append(time.perf_counter() - start)
        step += args.steps
    return {"c": p.c, "check": check, "timings": timings, "K": len(trainer.streams),
            "epoch_steps": p.epoch_steps, "device": device}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per round and side")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per side")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, of {', '.join(METHODS)}")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (tasks=..., model.*=...)")
    args = parser.parse_args()
    methods = [METHODS[m] for m in args.methods.split(",")]
    load_libmtl(methods[0].label)  # not installed: one line, before any work

    register_configs()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in methods:
            rows[m.label] = bench(m, args, Path(tmp))
    first = next(iter(rows.values()))
    c = first["c"]
    print(
        f"tasks={c.tasks.name} (K={first['K']}) model={c.model.name} batch={c.trainer.batch_size}"
        f" per task, ALL step mode, device={first['device']} threads={torch.get_num_threads()};"
        f" timed {args.rounds} rounds x {args.steps} steps per side, alternating, after "
        f"{args.warmup} untimed warm-up steps; LibMTL epoch = {first['epoch_steps']} steps"
    )
    print("first step, same weights, batches and dropout seed (mtlrun | LibMTL):")
    for label, r in rows.items():
        ch = r["check"]
        same = agrees(ch)
        print(
            f"  {label:<9} max|dL_k| {ch['dL']:.1e}  max|dw_k| {ch['dw']:.1e}  "
            f"sum w_k L_k {ch['total'][0]:.5f} | {ch['total'][1]:.5f}  "
            f"encoder grad rel. diff {ch['grad']:.1e}  {'same' if same else 'DIFFERENT'}"
        )
    print(f"{'method':<10}{'mtlrun scheduler':<22}{'mtlrun steps/s':>15}{'LibMTL steps/s':>15}"
          f"  mtlrun/LibMTL (median over rounds, range)")  # fmt: skip
    for label, r in rows.items():
        t = {k: np.array(v) for k, v in r["timings"].items()}
        n = args.steps * args.rounds
        ratios = t["libmtl"] / t["mtlrun"]
        print(f"{label:<10}{r['c'].scheduler.name:<22}{n / t['mtlrun'].sum():>15.2f}"
              f"{n / t['libmtl'].sum():>15.2f}  {np.median(ratios):.3f} "
              f"({ratios.min():.3f}-{ratios.max():.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
