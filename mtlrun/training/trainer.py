"""The training loop: each step the scheduler picks a task and one of its
minibatches is trained; every `eval_every` steps every task is evaluated on dev, the best model
by aggregate dev score (mean of the tasks' primary metrics) is kept, and a resumable checkpoint
is written; at the end the best model is tested.

The schedule so far is logged with every evaluation. Each dev line of metrics.jsonl carries
`"schedule": {"share": s_k, "entropy": H, "entropy_norm": H / log K}`: s_k is this task's share
of the training so far, counted in minibatches (SINGLE and ALL step modes: `batches_seen`) or
examples (MIXED: `examples_seen`); H (nats) and H / log K (null for one task) are the run-wide
entropy of those shares, the same on every line of the evaluation. results.json gets the run's
`"schedule": {"unit", "counts", "share", "entropy", "entropy_norm"}` and `"collapse"`.

Collapse guard: for a learned scheduler (`Scheduler.learned`) in SINGLE or MIXED mode, every
evaluation checks whether one task got more than `trainer.collapse_share` of the training over at
least `schedule_stats.MIN_DECISIONS` decisions (steps // `scheduler.decision_interval`). The
first time it does, one warning line is logged and the record {"task", "share", "threshold",
"decisions", "uniform", "first_step"} is kept (and checkpointed) for results.json's "collapse"
(null otherwise).

Divergence guard: a non-finite training loss or gradient norm stops the run at once
(`errors.Diverged`: step, task, which value) before the update is applied, so the last
checkpoint is the last good state and no results are written; with `trainer.nonfinite=skip` the
step's update is dropped instead and counted (results.json `"skipped_steps"`). A non-finite dev
loss always stops the run. A finite dev loss above BLOWUP times the chance loss ln(C) is
reported once as a warning and in results.json `"blown_up"`: the model diverged without
overflowing (e.g. a huge learning rate).

Data parallel (`runtime`, training/runtime.py): every rank runs this loop in lockstep on its
shard of each batch; observations are reduced before a scheduler sees them, dev evaluations and
signals come from rank 0, and rank 0 alone writes logs, checkpoints and results.
Preemption (training/stop_signals.py): a stop signal ends training at a step boundary, after
a checkpoint.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlrun.errors import Diverged, MtlrunError
from mtlrun.kinds import kind_of
from mtlrun.models import MultiTaskModel
from mtlrun.report.progress import ProgressDisplay
from mtlrun.report.time_to_accuracy import add_to_tasks as add_time_to_accuracy
from mtlrun.schedulers import Scheduler, StepMode
from mtlrun.tasks.encode import EncodedTask
from mtlrun.tasks.spec import Metric
from mtlrun.tracking import Trackers
from mtlrun.training import checkpoint, schedule_stats
from mtlrun.training.batches import BatchStream
from mtlrun.training.bleu import bleu_signature
from mtlrun.training.evaluate import Evaluation, evaluate
from mtlrun.training.optimizers import TaskOptimizers
from mtlrun.training.precision import Precision
from mtlrun.training.run_log import RunLog
from mtlrun.training.runtime import Runtime
from mtlrun.training.signals import SignalMeter
from mtlrun.training.stop_signals import StopSignals

log = logging.getLogger(__name__)

BLOWUP = 100  # a dev loss this many times the chance loss ln(C) means a diverged model


@dataclass
class Progress:
    """Counters that are part of a checkpoint besides the modules' own states."""

    step: int = 0
    best_score: float = -math.inf
    best_step: int = 0
    batches_seen: list[int] = field(default_factory=list)
    examples_seen: list[int] = field(default_factory=list)
    # wall time of dev-set signals (SignalMeter) and of the scheduler's reaction to them
    signal_seconds: float = 0.0
    policy_seconds: float = 0.0
    train_seconds: float = 0.0  # wall time of the training loop (evaluations included)
    collapse: dict[str, Any] | None = None  # the collapse guard's record, once it tripped
    skipped_steps: list[int] = field(default_factory=list)  # non-finite updates dropped (skip)
    blown_up: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> step, loss
    # per task: [sum, count] of its training losses since the last evaluation (kept on the
    # device between evaluations; here only in a checkpoint, so a resume logs the same means)
    train_loss: list[list[float]] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        cfg: Any,  # the typed run config
        tasks: list[EncodedTask],
        model: MultiTaskModel,
        scheduler: Scheduler,
        step_mode: StepMode,
        optimizers: TaskOptimizers,
        run_dir: Path,
        device: torch.device,
        episode: bool = False,
        display: ProgressDisplay | None = None,
        runtime: Runtime | None = None,
        trackers: Trackers | None = None,
    ) -> None:
        """`episode=True`: a policy-learning episode (QLS): train only, no evaluation, logs or
        checkpoints; `display` is then the learning phase's shared progress display.
        `runtime`: this process's rank in a data-parallel run (None: a single process).
        `trackers`: experiment trackers (logger=...), fed what metrics.jsonl gets."""
        self.rt = runtime or Runtime(device=device)
        self.precision = Precision(cfg.hardware.precision, device)
        self.cfg = cfg.trainer
        self.grad_clip = cfg.optimizer.grad_clip
        self.tasks = tasks
        self.model = model.to(device)
        self.scheduler = scheduler
        scheduler.runtime = self.rt  # GradNorm averages its gradient norms over the ranks
        self.step_mode = step_mode
        self.optimizers = optimizers
        self.shared_top = model.encoder.last_layer_parameters()  # GradNorm's W
        self.run_dir = run_dir
        self.device = device
        self.names = [t.task.name for t in tasks]
        self.kinds = [kind_of(t.task) for t in tasks]
        self.classes = [kind.classes(t) for kind, t in zip(self.kinds, tasks, strict=True)]
        self.streams = [
            BatchStream(t.splits["train"].batch_lengths, self.cfg.batch_size,
                        self.cfg.bucket_batches, np.random.default_rng([cfg.seed, 1009, k]),
                        max_tokens=self.cfg.max_tokens)
            for k, t in enumerate(tasks)
        ]  # fmt: skip
        # minibatches for loss probes (wants_loss_probe), apart from the training streams so a
        # probe never changes what the model trains on
        self.probe_streams = [
            BatchStream(t.splits["train"].batch_lengths, self.cfg.batch_size,
                        self.cfg.bucket_batches, np.random.default_rng([cfg.seed, 2003, k]),
                        max_tokens=self.cfg.max_tokens)
            for k, t in enumerate(tasks)
        ]  # fmt: skip
        self.state = Progress(batches_seen=[0] * len(tasks), examples_seen=[0] * len(tasks))
        self.saved_step: int | None = None  # the step last.pt holds (said when interrupted)
        self._loss_sums: list[torch.Tensor | None] = [None] * len(tasks)
        self._loss_counts = [0] * len(tasks)
        self.episode = episode
        self.log = None if episode or not self.rt.is_main else RunLog(run_dir, trackers)
        self.ckpt_dir = run_dir / "checkpoints"
        self.display = display or ProgressDisplay(
            self.cfg.max_steps, self.names, enabled=self.cfg.progress and self.rt.is_main
        )
        self.meter = SignalMeter(tasks, self.cfg.eval_batch_size, device)
        self.seed = cfg.seed
        self.stop = StopSignals()
        if self.rt.rank > 0:  # its own dropout masks; the model was initialised identically
            torch.manual_seed(cfg.seed * 1_000_003 + self.rt.rank)

    # --- the loop -----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        resumed = resume and (self.ckpt_dir / "last.pt").is_file()  # a shared file system
        if resumed:
            self._restore(checkpoint.load(self.ckpt_dir / "last.pt"))
            log.info("resuming %s at step %d", self.run_dir, self.state.step)
            if self.state.collapse is not None:  # tripped before the interruption: say it again
                log.warning(schedule_stats.collapse_message(self.scheduler.name,
                                                            self.state.collapse))  # fmt: skip
        if self.log is not None:
            self.log.start(self.state.step if resumed else None)
        self._clock = time.perf_counter()
        self.model.train()
        if resumed:
            self.saved_step = self.state.step
        try:
            with self.display, self.stop:
                self.display.start(self.state.step)
                for t in range(self.state.step, self.cfg.max_steps):
                    stop = self._train_step(t)
                    if (t + 1) % self.cfg.eval_every == 0 or t + 1 == self.cfg.max_steps:
                        self._evaluate(t + 1)
                    if stop:
                        self._preempt(t + 1, stop)
        except KeyboardInterrupt as e:  # Ctrl-C: the command says where a resume continues
            e.checkpoint_step = self.saved_step
            raise
        self._guard_collapse(self.cfg.max_steps)
        self._offer_signals(self.cfg.max_steps)
        if self.rt.is_main:
            self.scheduler.save_artifacts(self.run_dir)
        return self._final_test()

    def _preempt(self, step: int, signum: int) -> None:
        """A stop signal arrived: checkpoint this step, then stop (or let submitit requeue)."""
        if self.state.step != step:  # an evaluation did not just checkpoint it
            self._book_time()
            self.state.step = step
            if self.log is not None:
                self.log.flush()
            self._checkpoint()
        log.warning("stop signal: checkpoint at step %d written", step)
        self.stop.hand_over(signum, step, str(self.run_dir))

    def _book_time(self) -> None:
        """Add the wall time since the last mark to the training loop's."""
        now = time.perf_counter()
        self.state.train_seconds += now - self._clock
        self._clock = now

    def _checkpoint(self, best: bool = False) -> None:
        """last.pt (and best.pt) by rank 0; every rank takes part (its RNG states go in)."""
        if not self.cfg.checkpoints:
            return
        snapshot = self._snapshot()
        if not self.rt.is_main:
            return
        if best:
            checkpoint.save(self.ckpt_dir / "best.pt",
                            {"step": self.state.step, "model": snapshot["model"]})  # fmt: skip
        checkpoint.save(self.ckpt_dir / "last.pt", snapshot)
        self.saved_step = self.state.step

    def run_episode(self, steps: int) -> None:
        """One policy-learning episode: `steps` training steps of a fresh model, then the
        final signals (the episode's last reward)."""
        self.model.train()
        began = time.perf_counter()
        for t in range(steps):
            self._train_step(t)
        self._offer_signals(steps)
        self.state.train_seconds = time.perf_counter() - began

    def _offer_signals(self, t: int) -> None:
        """Measure what the scheduler wants to see before step t, and time both sides."""
        request = self.scheduler.wants_signals(t)
        if request is None:
            return
        signals = self.rt.on_main(
            lambda: self.meter.measure(self.model, request, seed=self.seed * 1_000_003 + t)
        )
        began = time.perf_counter()
        self.scheduler.observe_signals(t, signals)
        self.state.policy_seconds += time.perf_counter() - began
        self.state.signal_seconds += signals.seconds
        if self.episode:
            self.display.note(self.scheduler.learning_status())

    def _draw(self, t: int) -> list[tuple[int, np.ndarray]]:
        """The step's minibatches as (task, example indices), by step mode (§1.2)."""
        if self.step_mode == StepMode.SINGLE:
            k = self.scheduler.next_task(t)
            return [(k, self.streams[k].next())]
        if self.step_mode == StepMode.ALL:
            return [(k, stream.next()) for k, stream in enumerate(self.streams)]
        counts = self.scheduler.mixed_counts(t, self.cfg.batch_size)
        return [(k, self.streams[k].take(int(c))) for k, c in enumerate(counts) if c > 0]

    def _train_step(self, t: int) -> int:
        """One training step; returns the stop signal all ranks saw before it ended (or 0)."""
        self._offer_signals(t)
        if self.scheduler.wants_loss_probe(t):
            self.scheduler.observe_loss_probe(t, self.rt.on_main(self._probe_losses))
        plan = self._draw(t)
        losses, kpis, stop = self._task_losses(plan)
        for k, index in plan:
            self.state.batches_seen[k] += 1
            self.state.examples_seen[k] += len(index)
        scaled = losses
        if self.step_mode == StepMode.MIXED:  # the batch mean of all examples' losses
            scaled = {
                k: loss * (len(i) / self.cfg.batch_size)
                for (k, i), loss in zip(plan, losses.values(), strict=True)
            }
        lr_scales = self.scheduler.lr_scales(t)
        if self.optimizers.scale_mode == "grad":  # scale each task's gradient via its loss
            scaled = {
                k: v if lr_scales[k] == 1 else v * float(lr_scales[k]) for k, v in scaled.items()
            }
        if self._update(t, plan, losses, scaled, lr_scales):
            if self.scheduler.observes_train_loss:  # .item() syncs the device: only when asked
                self.scheduler.observe_train(t, {k: v.item() for k, v in losses.items()})
            if kpis:
                self.scheduler.observe_train_kpis(t, {k: v.item() for k, v in kpis.items()})
        if self.log is not None:
            self.log.step(t, [(self.names[k], len(i)) for k, i in plan], self.step_mode)
        self.display.advance(self.names[plan[0][0]] if len(plan) == 1 else self.step_mode.value)
        return stop

    def _forward(self, k: int, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Task k's per-row training losses on examples `index` (with their graph), and the
        rows' hits (1.0 where the model's guess is right) if the scheduler observes accuracy."""
        batch = self.kinds[k].collate(self.tasks[k].splits["train"], index, self.device)
        with self.precision.autocast():
            out = self.model(k, batch)
        losses = out.example_losses.float()
        if not self.episode:  # only evaluations read it; episodes have none
            self._add_train_loss(k, losses.detach().mean())
        rows = self.scheduler.example_losses(k, losses, out.example_labels)
        hits = None
        if self.scheduler.observes_train_kpi:  # batch accuracy, kept on device until read
            hits = (out.example_log_probs.detach().argmax(-1) == out.example_labels).float()
        return rows, hits

    def _add_train_loss(self, k: int, loss: torch.Tensor) -> None:
        """Task k's plain training loss (before any scheduler reshapes it; rank 0's shard in a
        data-parallel run), summed on the device: no sync per step."""
        total = self._loss_sums[k]
        self._loss_sums[k] = loss if total is None else total + loss
        self._loss_counts[k] += 1

    def _train_losses(self) -> list[float | None]:
        """Each task's mean training loss since the last evaluation (None: not trained), and a
        fresh interval."""
        means = [None if s is None else s.item() / c
                 for s, c in zip(self._loss_sums, self._loss_counts, strict=True)]  # fmt: skip
        self._loss_sums, self._loss_counts = [None] * len(self.tasks), [0] * len(self.tasks)
        return means

    def _task_losses(self, plan: list) -> tuple[dict, dict, int]:
        """Each planned task's mean training loss over the whole batch (with its graph), its
        batch accuracy if the scheduler observes it, and the stop signal (0 if none)."""
        losses: dict[int, torch.Tensor] = {}
        kpis: dict[int, torch.Tensor] = {}
        if not self.rt.distributed:
            for k, index in plan:
                rows, hits = self._forward(k, index)
                losses[k] = rows.mean()
                if hits is not None:
                    kpis[k] = hits.mean()
            return losses, kpis, self.stop.received or 0
        # data parallel: this rank's shard; sums and counts of every rank in one all-reduce
        sums, stats = {}, []
        for k, index in plan:
            shard = self.rt.shard(index)
            if len(shard):
                rows, hits = self._forward(k, shard)
                sums[k] = rows.sum()
                hit_sum = hits.sum() if hits is not None else rows.new_zeros(())
                stats.append(torch.stack([sums[k].detach(), hit_sum, rows.new_tensor(len(rows))]))
            else:  # fewer examples than ranks: this rank has none of this task's
                stats.append(torch.zeros(3, device=self.device))
        flag = torch.tensor([float(self.stop.received is not None)], device=self.device)
        local = torch.cat([torch.stack(stats).flatten(), flag]).double()
        totals = self.rt.reduce_sums(local)
        for i, (k, _) in enumerate(plan):
            loss_sum, hit_sum, count = totals[3 * i : 3 * i + 3]
            mean = (loss_sum / count).float()
            losses[k] = self.rt.global_loss(sums.get(k, torch.zeros((), device=self.device)),
                                            float(count), mean)  # fmt: skip
            if self.scheduler.observes_train_kpi:
                kpis[k] = (hit_sum / count).float()
        stopping = totals[-1].item() > 0  # a signal reached some rank: all stop together
        return losses, kpis, (self.stop.received or int(signal.SIGTERM)) if stopping else 0

    def _update(self, t: int, plan: list, losses: dict, scaled: dict, lr_scales) -> bool:
        """Backward pass and optimizer step, unless the divergence guard drops them."""
        self.optimizers.zero_grad()
        if not self._finite(t, plan, torch.stack(list(losses.values())), "loss"):
            return False
        if not self.scheduler.custom_backward(t, scaled, self.shared_top):
            total = self.precision.scaled(self.scheduler.combine(t, scaled))
            if total.requires_grad:  # a rank without examples of any planned task has no graph
                total.backward()
        params = self.optimizers.parameters
        self.precision.unscale(params)
        self.rt.average_grads(params)
        norm = self._grad_norm()
        if self.precision.scaling and not bool(torch.isfinite(norm)):
            self.precision.overflowed()  # fp16: the loss scale was too large; not divergence
            self.optimizers.zero_grad()
            return False
        if not self._finite(t, plan, norm, "gradient norm"):
            self.optimizers.zero_grad()
            return False
        self.optimizers.step(t, list(losses), lr_scales)
        self.precision.stepped()
        return True

    def _grad_norm(self) -> torch.Tensor:
        """The global gradient norm, clipped to optimizer.grad_clip when that is set."""
        params = self.optimizers.parameters
        if self.grad_clip is not None:
            return torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return torch.zeros(())
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

    def _finite(self, t: int, plan: list, values: torch.Tensor, what: str) -> bool:
        """The divergence guard: True when `values` are finite; else stop the run (Diverged)
        or, with trainer.nonfinite=skip (and in learning episodes), drop this step's update."""
        if bool(torch.isfinite(values).all()):  # one device sync per check
            return True
        tasks = ", ".join(self.names[k] for k, _ in plan)
        bad = values.detach().flatten()
        value = next(float(v) for v in bad if not torch.isfinite(v))
        if self.episode or self.cfg.nonfinite == "skip":
            self.state.skipped_steps.append(t)
            if len(self.state.skipped_steps) == 1 and not self.episode:
                log.warning("step %d (task %s): the %s is %s; skipping the update "
                            "(trainer.nonfinite=skip; every skip is counted in results.json)",
                            t, tasks, what, value)  # fmt: skip
            return False
        kept = (
            f"the last good checkpoint (step {self.state.step}) is kept in {self.ckpt_dir}"
            if self.cfg.checkpoints and self.state.step
            else "no checkpoint was written yet"
        )
        raise Diverged(
            f"training diverged at step {t} (task {tasks}): the {what} is {value}; {kept}; "
            "lower optimizer.lr, set optimizer.grad_clip, or skip such updates with "
            "trainer.nonfinite=skip"
        )

    def _check_dev_losses(self, step: int, evals: list[Evaluation]) -> None:
        """A non-finite dev loss stops the run; a blown-up one is reported once per task."""
        for k, e in enumerate(evals):
            if self.tasks[k].task.missing_dev:
                continue
            if not math.isfinite(e.loss):
                raise Diverged(
                    f"training diverged by step {step}: the dev loss of task {self.names[k]} is "
                    f"{e.loss}; the last good checkpoint (step {self.state.step}) is kept in "
                    f"{self.ckpt_dir}; lower optimizer.lr or set optimizer.grad_clip"
                )
            chance = math.log(max(2, self.classes[k]))
            if e.loss > BLOWUP * chance and self.names[k] not in self.state.blown_up:
                self.state.blown_up[self.names[k]] = {"step": step, "loss": e.loss}
                log.warning("task %s: dev loss %.3g at step %d is over %d times the chance loss "
                            "%.3g: the model has diverged (lower optimizer.lr?)",
                            self.names[k], e.loss, step, BLOWUP, chance)  # fmt: skip

    @torch.no_grad()
    def _probe_losses(self) -> dict[int, float]:
        """One forward-only minibatch loss per task, in eval mode (no dropout)."""
        self.model.eval()
        losses = {}
        for k, stream in enumerate(self.probe_streams):
            batch = self.kinds[k].collate(self.tasks[k].splits["train"], stream.next(), self.device)
            losses[k] = self.model(k, batch).loss.item()
        self.model.train()
        return losses

    # --- the schedule and the collapse guard -----------------------------------------------
    def _schedule_counts(self) -> list[int]:
        """What each task got so far: examples in MIXED mode, else minibatches."""
        s = self.state
        return s.examples_seen if self.step_mode == StepMode.MIXED else s.batches_seen

    def _schedule_unit(self) -> str:
        return "examples" if self.step_mode == StepMode.MIXED else "batches"

    @property
    def _guarded(self) -> bool:
        """The collapse guard watches learned schedulers that choose tasks (SINGLE, MIXED)."""
        return self.scheduler.learned and self.step_mode in (StepMode.SINGLE, StepMode.MIXED)

    def _guard_collapse(self, step: int) -> None:
        """Record and warn, once, the first time the schedule collapses onto one task."""
        if not self._guarded or self.state.collapse is not None:
            return
        record = schedule_stats.check_collapse(
            self.names, self._schedule_counts(), step,
            self.scheduler.decision_interval, self.cfg.collapse_share,
        )  # fmt: skip
        if record is not None:
            self.state.collapse = record
            log.warning(schedule_stats.collapse_message(self.scheduler.name, record))

    def _uniform_like(self) -> dict[str, Any] | None:
        """At the end: the record (and a warning) of a learned schedule that did not collapse
        but cannot be told from uniform sampling; None otherwise."""
        if not self._guarded or self.state.collapse is not None:
            return None
        record = schedule_stats.check_uniform(
            self._schedule_counts(), self.cfg.max_steps, self.scheduler.decision_interval
        )
        if record is not None:
            log.warning(schedule_stats.uniform_message(self.scheduler.name, record))
        return record

    def _schedule_fields(self) -> list[dict[str, Any]]:
        """Each task's `"schedule"` field of a metrics.jsonl dev line."""
        counts = self._schedule_counts()
        shared = schedule_stats.run_wide(counts)
        return [{"share": round(p, schedule_stats.DIGITS), **shared}
                for p in schedule_stats.shares(counts)]  # fmt: skip

    def _evaluate(self, step: int) -> None:
        self._book_time()
        evals = self._dev_evals()
        self._check_dev_losses(step, evals)  # before the step counts as good
        self.state.step = step
        self._guard_collapse(step)
        scores = {k: e.score for k, e in enumerate(evals)}
        train_losses = self._train_losses()
        self.scheduler.observe_eval(step, scores, {k: e.loss for k, e in enumerate(evals)})
        probs = self.scheduler.task_distribution(step)
        weights = self.scheduler.loss_weights(step)
        lr_scales = self.scheduler.lr_scales(step)
        state = self.scheduler.log_state()
        timing = self._timing()  # wall time: time to accuracy in seconds, for every scheduler
        schedule = self._schedule_fields()
        if self.rt.distributed:
            self.rt.check_same([self._parameter_sum(), *probs, *weights, *lr_scales],
                               "the model's parameters or the scheduler's decisions")  # fmt: skip
        aggregate = _mean_defined([e.score for e in evals])
        # select_by=primary on a one-task run (a table's single-task baseline) is that task
        by_all = self.cfg.select_by == "mean" or len(self.tasks) == 1
        chosen = [k for k, t in enumerate(self.tasks) if by_all or t.task.primary]
        selection = selection_score([evals[k].score for k in chosen],
                                    [self.tasks[k].task.metric for k in chosen])  # fmt: skip
        improved = selection > self.state.best_score or self.state.best_step == 0
        if improved:
            self.state.best_score, self.state.best_step = selection, step
        if self.rt.is_main:
            self.log.flush()
            self.log.metrics([
                {"step": step, "task": self.names[k], "split": "dev",
                 "metric": self.tasks[k].task.metric.value, "score": e.score, "loss": e.loss,
                 "train_loss": train_losses[k], "p": float(probs[k]), "w": float(weights[k]),
                 "lr_scale": float(lr_scales[k]),
                 "batches_seen": self.state.batches_seen[k], "schedule": schedule[k], **timing,
                 **({"metrics": e.metrics} if len(e.metrics) > 1 else {}),
                 **({"scheduler": state} if state else {})}
                for k, e in enumerate(evals)
            ])  # fmt: skip
        self._checkpoint(best=improved)
        if self.rt.is_main:
            self.display.evaluated(
                step,
                aggregate,
                dict(zip(self.names, (e.score for e in evals), strict=True)),
                dict(zip(self.names, train_losses, strict=True)),
            )

    def _parameter_sum(self) -> float:
        with torch.no_grad():
            return float(sum(p.detach().double().sum() for p in self.model.parameters()))

    def _eval(self, k: int, split: str):
        return evaluate(self.model, k, self.tasks[k], split, self.cfg.eval_batch_size, self.device)

    def _dev_evals(self) -> list[Evaluation]:
        """Every task's dev evaluation (by rank 0, for every rank)."""
        return self.rt.on_main(self._dev_evals_here)

    def _dev_evals_here(self) -> list[Evaluation]:
        """Every task's dev evaluation; a task without dev data (§1.4.6 neutral / zero) gets the
        mean score of the others, or 0, and no loss (NaN)."""
        missing = [t.task.missing_dev for t in self.tasks]
        evals = [None if m else self._eval(k, "dev") for k, m in enumerate(missing)]
        others = [e.score for e in evals if e is not None]
        for k, policy in enumerate(missing):
            if policy:
                score = float(np.mean(others)) if policy == "neutral" and others else 0.0
                metric = self.tasks[k].task.metric.value
                evals[k] = Evaluation(score=score, loss=float("nan"), metrics={metric: score})
        return evals

    def _final_test(self) -> dict[str, Any] | None:
        """The best model's dev and test results (rank 0; None on the other ranks)."""
        self.rt.barrier()
        if not self.rt.is_main:
            return None
        if self.cfg.checkpoints:
            self.model.load_state_dict(checkpoint.load(self.ckpt_dir / "best.pt")["model"])
        else:
            log.warning("trainer.checkpoints=false: testing the last model, not the best")
        per_task, records = {}, []
        devs = self._dev_evals_here()
        for k, name in enumerate(self.names):
            dev, test = devs[k], self._eval(k, "test")
            metric = self.tasks[k].task.metric.value
            higher = self.tasks[k].task.metric.higher_is_better
            per_task[name] = {"metric": metric, "higher_is_better": higher,
                              "dev": dev.score, "test": test.score,
                              "batches_seen": self.state.batches_seen[k],
                              "examples_seen": self.state.examples_seen[k]}  # fmt: skip
            if len(dev.metrics) > 1:  # every metric the task reports, primary included
                per_task[name]["metrics"] = {"dev": dev.metrics, "test": test.metrics}
            if self.tasks[k].task.primary:
                per_task[name]["primary"] = True
            if Metric.BLEU in (self.tasks[k].task.metric, *self.tasks[k].task.extra_metrics):
                per_task[name]["bleu_signature"] = bleu_signature()  # which BLEU this is
            extra = {"metrics": test.metrics} if len(test.metrics) > 1 else {}
            records.append({"step": self.state.best_step, "task": name, "split": "test",
                            "metric": metric, "score": test.score, "loss": test.loss,
                            **extra})  # fmt: skip
        self.log.metrics(records)
        return {
            "tasks": add_time_to_accuracy(per_task, self.log.metrics_path, self.state.best_step),
            "aggregate": {
                s: _mean_defined([r[s] for r in per_task.values()]) for s in ("dev", "test")
            },
            **_aggregate_metrics(per_task),
            "best_step": self.state.best_step,
            "steps": self.cfg.max_steps,
            "timing": self._timing(),
            "schedule": schedule_stats.summary(
                self.names, self._schedule_counts(), self._schedule_unit()
            ),
            "collapse": self.state.collapse,
            "uniform_like": self._uniform_like(),
            "skipped_steps": len(self.state.skipped_steps),
            **({"fp16_overflows": self.precision.overflows} if self.precision.scaling else {}),
            **({"world_size": self.rt.world_size} if self.rt.distributed else {}),
            "blown_up": self.state.blown_up or None,
        }

    def _timing(self) -> dict[str, float]:
        """Seconds spent training (loop incl. evaluations) and, within it, on signals and on
        the scheduler's reaction to them (e.g. DQN updates); their share is the overhead."""
        s = self.state
        return {"train_seconds": round(s.train_seconds, 3),
                "signal_seconds": round(s.signal_seconds, 3),
                "policy_seconds": round(s.policy_seconds, 3)}  # fmt: skip

    # --- checkpoints ----------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        sums = zip(self._loss_sums, self._loss_counts, strict=True)
        self.state.train_loss = [[0.0 if s is None else s.item(), c] for s, c in sums]
        return {
            "progress": asdict(self.state),
            "model": self.model.state_dict(),
            "optimizer": self.optimizers.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "streams": [s.state_dict() for s in self.streams],
            "probe_streams": [s.state_dict() for s in self.probe_streams],
            "rng": checkpoint.rng_states(),
            "rank_rng": self.rt.gather(checkpoint.rng_states()),  # every rank's dropout RNG
            "precision": self.precision.state_dict(),
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        self.state = Progress(**snap["progress"])
        for k, (total, count) in enumerate(self.state.train_loss):  # the interval so far
            self._loss_counts[k] = int(count)
            self._loss_sums[k] = torch.tensor(total, device=self.device) if count else None
        self.model.load_state_dict(snap["model"])
        self.optimizers.load_state_dict(snap["optimizer"])
        self.scheduler.load_state_dict(snap["scheduler"])
        for stream, s in zip(self.streams, snap["streams"], strict=True):
            stream.load_state_dict(s)
        for stream, s in zip(self.probe_streams, snap["probe_streams"], strict=True):
            stream.load_state_dict(s)
        ranks = snap.get("rank_rng") or [snap["rng"]]
        if len(ranks) != self.rt.world_size:
            raise MtlrunError(
                f"{self.ckpt_dir / 'last.pt'} was written by {len(ranks)} data-parallel "
                f"processes, this run has {self.rt.world_size}: resume it with the same "
                "hardware.devices and hardware.nodes"
            )
        checkpoint.set_rng_states(ranks[self.rt.rank])
        if "precision" in snap:
            self.precision.load_state_dict(snap["precision"])


def _aggregate_metrics(per_task: dict[str, dict]) -> dict[str, Any]:
    """Unweighted task means of every metric all tasks report (Fang & Alqatari's Agg columns)."""
    if not all("metrics" in r for r in per_task.values()):
        return {}
    shared = set.intersection(*(set(r["metrics"]["dev"]) for r in per_task.values()))
    return {"aggregate_metrics": {
        m: {s: float(np.mean([r["metrics"][s][m] for r in per_task.values()]))
            for s in ("dev", "test")}
        for m in sorted(shared)
    }}  # fmt: skip


def selection_score(scores: list[float], metrics: list[Metric]) -> float:
    """What picks the best checkpoint: the mean dev score, each metric turned so that higher is
    better."""
    return _mean_defined([x if m.higher_is_better else -x
                          for x, m in zip(scores, metrics, strict=True)])  # fmt: skip


def _mean_defined(scores: list[float]) -> float:
    """The mean of the scores that are defined (ROC-AUC is NaN on a one-class split); -inf if
    none is, so that a checkpoint is still kept."""
    defined = [x for x in scores if not math.isnan(x)]
    return float(np.mean(defined)) if defined else -math.inf
