"""The learning phase with N episodes at once (`scheduler.parallel_episodes` = N > 1, QLS).

Episodes run in groups of N: a group trains N model replicas in lockstep on one device
(`ReplicatedLSTMModel`), replica i being episode first+i with exactly the initial weights and
data order that episode has in the serial phase. The scheduler's actors (one per episode) share
its DQN, replay buffer, action counts and temperature. Before every step each actor says which
dev signals it wants; each distinct request is measured once, batched over the replicas that
asked; the actors observe their own signals in order (each stores a transition, updates the
DQN and picks its task), and every replica trains its actor's task. Resumable at group
boundaries: `checkpoints/learn.pt` has the serial phase's keys."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mtlrun.errors import ConfigError
from mtlrun.kinds import kind_of
from mtlrun.models import build_model
from mtlrun.report.progress import ProgressDisplay
from mtlrun.schedulers import Scheduler, SignalRequest, Signals, TaskOutputs
from mtlrun.tasks.encode import EncodedTask
from mtlrun.tasks.spec import Metric
from mtlrun.training import checkpoint
from mtlrun.training.batches import BatchStream
from mtlrun.training.metrics import compute_metric
from mtlrun.training.optimizers import TaskOptimizers, resolve_layout
from mtlrun.training.policy_learning import resume_learning
from mtlrun.training.replicas import (
    ReplicatedLSTMModel,
    check_replicable,
    clip_grad_norm_per_replica,
    stack_batches,
)
from mtlrun.training.signals import dev_batches, dev_rows  # the serial meter's order

if TYPE_CHECKING:
    from mtlrun.experiment import Prepared

log = logging.getLogger("mtlrun")

# eval sequences per forward pass, summed over replicas: N replicas read eval_batch_size ·
# SEQUENCES_PER_EVAL_BATCH / N dev rows at a time, which bounds the activations' memory
SEQUENCES_PER_EVAL_BATCH = 16


def episode_seed(seed: int, episode: int) -> int:
    """The seed of learning episode `episode` (its model's initialisation and data order), so
    episodes differ from each other and from the run."""
    return seed * 7919 + 104729 * (episode + 1)


def check_parallel(c: Any, p: Prepared) -> None:
    """Refuse, in one line, a setting the replicated episodes do not reproduce."""
    check_replicable(c.model, p.tasks)
    layout, _ = resolve_layout(c.optimizer, p.scheduler.category, p.step_mode)
    if layout != "shared":
        raise ConfigError(
            f"scheduler.parallel_episodes > 1 needs optimizer.layout=shared (got {layout})"
        )


class ReplicaMeter:
    """SignalMeter for replicas: one SignalRequest measured for several replicas at once, in
    eval mode; replica r gets the Signals the serial meter would give its model."""

    def __init__(self, tasks: list[EncodedTask], eval_batch_size: int, device: torch.device):
        self.tasks = tasks
        self.sequences = eval_batch_size * SEQUENCES_PER_EVAL_BATCH
        self.device = device

    @torch.no_grad()
    def measure(
        self, model: ReplicatedLSTMModel, request: SignalRequest, replicas: list[int]
    ) -> list[Signals]:
        start = time.perf_counter()
        if request.mc_samples:
            raise ConfigError("scheduler.parallel_episodes > 1 measures no MC-dropout samples")
        answers = [Signals({}, {}, {}) for _ in replicas]
        for k in sorted(set(request.outputs) | set(request.scores)):
            self._measure_task(model, k, request, replicas, answers)
        for answer in answers:
            answer.seconds = time.perf_counter() - start
        return answers

    def _measure_task(
        self, model: ReplicatedLSTMModel, k: int, request: SignalRequest, replicas: list[int],
        answers: list[Signals],
    ) -> None:  # fmt: skip
        """Task k's outputs and score into each replica's answer, from one pass over the union
        of the requested rows."""
        split = self.tasks[k].splits["dev"]
        if len(split) == 0:
            raise ConfigError(
                f"task {self.tasks[k].task.name} has no dev data, and this scheduler "
                "measures dev examples; use tasks.missing_metric_policy=holdout"
            )
        out_rows = dev_rows(request.outputs[k], len(split)) if k in request.outputs else None
        score_rows = dev_rows(request.scores[k], len(split)) if k in request.scores else None
        examples = np.unique(np.concatenate([r for r in (out_rows, score_rows) if r is not None]))
        probs, ce = self._forward(model, k, examples, replicas)
        gold = split.labels[examples]
        for r, answer in enumerate(answers):
            if out_rows is not None:
                at = np.searchsorted(examples, out_rows)
                answer.outputs[k] = TaskOutputs(
                    example=out_rows, labels=gold[at], probs=probs[r, at], mc_probs=None
                )
            if score_rows is not None:
                at = np.searchsorted(examples, score_rows)
                answer.scores[k], answer.losses[k] = self._score(k, probs[r, at], ce[r, at],
                                                                 gold[at])  # fmt: skip

    def _forward(
        self, model: ReplicatedLSTMModel, k: int, examples: np.ndarray, replicas: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Softmax [R, E, C] and cross-entropy [R, E] of the sorted dev examples of task k."""
        split = self.tasks[k].splits["dev"]
        probs = np.empty((len(replicas), len(examples), self.tasks[k].task.num_labels), np.float32)
        ce = np.empty((len(replicas), len(examples)), np.float32)
        rows = max(1, self.sequences // len(replicas))
        for index in dev_batches(examples, split.lengths, rows):
            batch = kind_of(self.tasks[k].task).collate(split, index, self.device)
            p, c = model.evaluate(k, batch, replicas)
            at = np.searchsorted(examples, index)
            probs[:, at], ce[:, at] = p.cpu().numpy(), c.cpu().numpy()
        return probs, ce

    def _score(
        self, k: int, probs: np.ndarray, ce: np.ndarray, gold: np.ndarray
    ) -> tuple[float, float]:
        """The task's primary metric and mean cross-entropy over these rows (SignalMeter's)."""
        task = self.tasks[k].task
        positive = probs[:, 1].tolist() if task.metric == Metric.ROC_AUC else None
        score = compute_metric(task.metric, gold.tolist(), probs.argmax(-1).tolist(),
                               task.label_names, positive)  # fmt: skip
        return score, float(ce.mean())


def _distinct(requests: dict[int, SignalRequest]) -> list[tuple[list[int], SignalRequest]]:
    """Group the actors whose requests ask for the same rows: (actors, request) per group."""

    def rows(selection: dict) -> tuple:
        return tuple((k, None if v is None else np.asarray(v).tobytes())
                     for k, v in sorted(selection.items()))  # fmt: skip

    groups: dict[tuple, tuple[list[int], SignalRequest]] = {}
    for actor, r in requests.items():
        key = (rows(r.outputs), rows(r.scores), r.mc_samples)
        groups.setdefault(key, ([], r))[0].append(actor)
    return list(groups.values())


class EpisodeGroup:
    """Learning episodes first … first+n−1 trained together: their replicated model, its
    optimizer and each replica's training batch streams (seeded as its serial episode's)."""

    def __init__(self, c: Any, p: Prepared, first: int, n: int) -> None:
        seeds = [episode_seed(c.seed, e) for e in range(first, first + n)]
        # build_model seeds the global torch RNG, so dropout follows from the group's seeds too
        models = [build_model(c.model, p.vocab, p.tasks, s) for s in seeds]
        self.model = ReplicatedLSTMModel(models).to(p.device)
        layout, scale_mode = resolve_layout(c.optimizer, p.scheduler.category, p.step_mode)
        heads = [self.model.head_parameters(k) for k in range(len(p.tasks))]
        self.optimizers = TaskOptimizers(c.optimizer, self.model.stacked_parameters(), heads,
                                         [], layout, scale_mode, models[0].encoder.output_size,
                                         c.trainer.max_steps)  # fmt: skip
        self.grad_clip = c.optimizer.grad_clip
        self.train_splits = [t.splits["train"] for t in p.encoded]
        self.kinds = [kind_of(t.task) for t in p.encoded]
        t = c.trainer
        self.streams = [
            [BatchStream(split.lengths, t.batch_size, t.bucket_batches,
                         np.random.default_rng([seed, 1009, k]))
             for k, split in enumerate(self.train_splits)]
            for seed in seeds
        ]  # fmt: skip
        self.device = p.device
        self.first, self.n = first, n

    def train_step(self, t: int, tasks: list[int]) -> None:
        """Replica i trains one minibatch of task tasks[i] (Trainer._train_step, SINGLE mode)."""
        cpu = torch.device("cpu")
        batches = [self.kinds[k].collate(self.train_splits[k], self.streams[i][k].next(), cpu)
                   for i, k in enumerate(tasks)]  # fmt: skip
        self.optimizers.zero_grad()
        # replicas share no parameter, so the sum's gradient is each replica's own
        self.model(tasks, stack_batches(batches, self.device)).sum().backward()
        if self.grad_clip is not None:
            clip_grad_norm_per_replica(self.model, self.grad_clip)
        self.optimizers.step(t, sorted(set(tasks)), np.ones(len(self.train_splits)))


class ParallelLearning:
    """Runs the groups of episodes against the scheduler's actors, timing both sides."""

    def __init__(self, c: Any, p: Prepared, display: ProgressDisplay, timing: dict[str, float]):
        self.c, self.p = c, p
        self.scheduler: Scheduler = p.scheduler
        self.meter = ReplicaMeter(p.encoded, c.trainer.eval_batch_size, p.device)
        self.display = display
        self.timing = timing

    def run_group(self, first: int, n: int, steps: int) -> None:
        """Episodes first … first+n−1, each `steps` training steps and the final signals."""
        self.scheduler.begin_episodes(first, n)
        group = EpisodeGroup(self.c, self.p, first, n)
        began = time.perf_counter()
        names = [t.task.name for t in self.p.encoded]
        for t in range(steps):
            self._offer_signals(t, group)
            tasks = self._tasks(t, n)
            group.train_step(t, tasks)
            for k in tasks:
                self.display.advance(names[k])
        self._offer_signals(steps, group)
        self.timing["learn_seconds"] += time.perf_counter() - began

    def _tasks(self, t: int, n: int) -> list[int]:
        """Each actor's task at step t: what its replica trains."""
        tasks = []
        for i in range(n):
            self.scheduler.use_actor(i)
            tasks.append(self.scheduler.next_task(t))
        return tasks

    def _offer_signals(self, t: int, group: EpisodeGroup) -> None:
        """Every actor's requested signals before step t: asked for first (so equal requests
        are measured once), then observed in actor order."""
        requests = {}
        for i in range(group.n):
            self.scheduler.use_actor(i)
            request = self.scheduler.wants_signals(t)
            if request is not None:
                requests[i] = request
        signals: dict[int, Signals] = {}
        for actors, request in _distinct(requests):
            answers = self.meter.measure(group.model, request, actors)
            signals.update(zip(actors, answers, strict=True))
            self.timing["learn_signal_seconds"] += answers[0].seconds
        for i in sorted(signals):
            self.scheduler.use_actor(i)
            began = time.perf_counter()
            self.scheduler.observe_signals(t, signals[i])
            self.timing["learn_policy_seconds"] += time.perf_counter() - began
        if signals:
            self.display.note(self.scheduler.learning_status())


def learn_policy_parallel(c: Any, p: Prepared, run_dir: Path, progress: bool) -> dict[str, float]:
    """The scheduler's learning episodes, `scheduler.parallel_episodes` at a time; returns their
    wall-time split (seconds), as `learn_policy` does."""
    check_parallel(c, p)
    scheduler = p.scheduler
    episodes, steps = scheduler.learning_plan()
    n = scheduler.cfg.parallel_episodes
    ckpt, first, timing = resume_learning(scheduler, run_dir)
    log.info("%s: learning phase, %d episodes of %d steps, %d at a time on %s", scheduler.name,
             episodes, steps, n, p.device)  # fmt: skip
    display = ProgressDisplay(episodes * steps, [], enabled=progress, label="learn")
    runner = ParallelLearning(c, p, display, timing)
    with display:
        display.start(first * steps)
        for start in range(first, episodes, n):
            size = min(n, episodes - start)
            runner.run_group(start, size, steps)
            if not display.live:
                log.info("learning: episodes %d-%d done, %s", start + 1, start + size,
                         scheduler.learning_status())  # fmt: skip
            checkpoint.save(ckpt, {"episode": start + size, "timing": timing,
                                   "scheduler": scheduler.state_dict()})  # fmt: skip
    scheduler.end_learning(run_dir)
    ckpt.unlink()
    return {k: round(v, 3) for k, v in timing.items()}
