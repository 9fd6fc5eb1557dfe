"""The scheduler interface (§1.3) and the conventions every scheduler shares (§1.4).

A scheduler owns the four levers of multi-task training: which task trains next
(`task_distribution` / `next_task`), how much each task's loss counts (`loss_weights`), how
gradients are combined (`custom_backward`, later) and each task's learning-rate scale
(`lr_scales`). Every method has a neutral default, so a static sampler is a few lines.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from omegaconf import MISSING

from mtlrun.training.runtime import Runtime

log = logging.getLogger(__name__)

EPS_DIV = 1e-12  # §1.4.4: guard in every ratio of losses or scores


class Category(Enum):
    SAMPLER = "sampler"
    LOSS_WEIGHTER = "loss_weighter"
    GRAD_MANIPULATOR = "grad_manipulator"
    LR_SCALER = "lr_scaler"
    POLICY = "policy"


class StepMode(Enum):
    SINGLE = "single"  # one task per step (the papers' default)
    MIXED = "mixed"  # each example of a batch draws its task
    ALL = "all"  # one minibatch of every task per step


@dataclass(frozen=True)
class TaskInfo:
    """What a scheduler may know about a task (never its data)."""

    name: str
    n_train: int
    n_train_batches: int
    metric_name: str
    higher_is_better: bool = True
    baseline_score: float | None = None
    is_primary: bool = False
    difficulty_rank: int | None = None
    loss_kind: str = "classification"
    num_labels: int = 2
    n_dev: int = 0  # dev examples (schedulers that pick dev subsets for signals)


@dataclass
class SchedulerConfig:
    """Base schema of `conf/scheduler/*.yaml`; each scheduler adds its hyperparameters."""

    name: str = MISSING
    # b_k per task (a JSON/YAML file task -> single-task dev score, or a mapping): used by the
    # schedulers that compare tasks with their baselines (jean_*, prioritize_*), ignored by the
    # rest; on the base schema so one sweep over several schedulers can pass it to all.
    baselines: Any = None


@dataclass(frozen=True)
class SignalRequest:
    """What a scheduler asks the trainer to measure on dev data before a step (§1.3's
    EvalReport, on demand). Both maps go task -> dev example indices (None = the whole dev
    set); a task absent from a map is not measured. One forward pass covers both."""

    outputs: dict[int, np.ndarray | None] = field(default_factory=dict)  # rows returned
    scores: dict[int, np.ndarray | None] = field(default_factory=dict)  # loss + metric over these
    mc_samples: int = 0  # M > 0: `outputs` as M MC-dropout passes (dropout on) instead of eval
    mc_dropout: str = "all"  # which dropout samples in those passes: all | heads (signals.py)


@dataclass
class TaskOutputs:
    """Per-row model outputs for the requested dev examples of one task. A row is an example
    (classification) or a token (tagging); rows come example by example in index order."""

    example: np.ndarray  # [N] int: the dev example index of each row
    labels: np.ndarray  # [N] int: gold label of each row
    probs: np.ndarray | None  # [N, C] softmax in eval mode (mc_samples == 0)
    mc_probs: np.ndarray | None  # [N, C, M] softmax of M dropout-on passes (mc_samples > 0)


@dataclass
class Signals:
    """The trainer's answer to a SignalRequest."""

    outputs: dict[int, TaskOutputs]
    scores: dict[int, float]  # primary metric (fraction, higher is better) over `scores` rows
    losses: dict[int, float]  # mean cross-entropy per row (token for tagging) over the same
    seconds: float = 0.0  # wall time it took to measure


def scheduler_rng(seed: int, scheduler_name: str) -> np.random.Generator:
    """§1.4.1: a generator seeded from (global seed, scheduler id); never the global RNG."""
    return np.random.default_rng([seed, zlib.crc32(scheduler_name.encode())])


def inverse_cdf(cdf: np.ndarray, u: float | np.ndarray) -> np.ndarray:
    """Categorical draws from uniforms u in [0, 1) by inverse CDF (one uniform per draw).
    side="right" skips zero-probability tasks; the clip guards cdf[-1] < 1 by rounding."""
    return np.minimum(np.searchsorted(cdf, np.asarray(u) * cdf[-1], side="right"), len(cdf) - 1)


def softmax(x: np.ndarray) -> np.ndarray:
    """softmax(x), computed stably in float64."""
    z = np.asarray(x, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def to_probabilities(weights: np.ndarray) -> np.ndarray:
    """§1.4.2: clip negatives to 0 and normalise; uniform on non-finite weights or zero mass."""
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        log.warning("non-finite task weights %s: falling back to uniform sampling", w)
        return np.full(len(w), 1.0 / len(w))
    w = np.clip(w, 0.0, None)
    total = w.sum()
    if total <= 0:
        log.warning("task weights sum to %s: falling back to uniform sampling", total)
        return np.full(len(w), 1.0 / len(w))
    return w / total


class Scheduler:
    """Neutral defaults for every lever; subclasses set name, Config, category, step_modes."""

    name: ClassVar[str]
    Config: ClassVar[type[SchedulerConfig]] = SchedulerConfig
    category: ClassVar[Category] = Category.SAMPLER
    step_modes: ClassVar[tuple[StepMode, ...]] = (StepMode.SINGLE,)  # the first is the default
    observes_train_loss: ClassVar[bool] = False  # True: the trainer calls observe_train each step
    observes_train_kpi: ClassVar[bool] = False  # True: ... and observe_train_kpis (batch accuracy)
    # True: the task choice comes from a learned policy (or replays one); the trainer's collapse
    # guard (training/schedule_stats.py) warns when it gives one task most of the training
    learned: ClassVar[bool] = False

    def __init__(
        self, cfg: Any, tasks: list[TaskInfo], total_steps: int, rng: np.random.Generator
    ) -> None:
        self.cfg = cfg
        self.tasks = tasks
        self.K = len(tasks)
        self.total_steps = total_steps
        self.rng = rng
        self._cdf: np.ndarray | None = None  # cached CDF of a static distribution
        # the trainer's data-parallel runtime: observations arrive already reduced over the
        # ranks; a scheduler that reads gradients itself (GradNorm) averages them with it
        self.runtime = Runtime()

    @property
    def decision_interval(self) -> int:
        """Training steps one scheduling decision covers (QLS: its D); the collapse guard
        counts decisions = steps // decision_interval. Default: a decision per step."""
        return 1

    @classmethod
    def default_step_mode(cls, cfg: Any) -> StepMode:
        """The step mode this configuration runs in unless trainer.step_mode says otherwise."""
        return cls.step_modes[0]

    @classmethod
    def task_subset(cls, cfg: Any) -> list[str] | None:
        """Names of the only tasks this scheduler trains (None = all). Used by `single`."""
        return None

    # --- lever 1: which task ---------------------------------------------------------------
    def task_distribution(self, t: int) -> np.ndarray:
        return np.full(self.K, 1.0 / self.K)

    def next_task(self, t: int) -> int:
        """Draw from `task_distribution(t)` by inverse CDF (one uniform draw per step)."""
        cdf = self._cdf if self._cdf is not None else np.cumsum(self.task_distribution(t))
        return int(inverse_cdf(cdf, self.rng.random()))

    def mixed_counts(self, t: int, batch_size: int) -> np.ndarray:
        """MIXED mode: how many of the batch's examples each task gets (each draws its task)."""
        return self.rng.multinomial(batch_size, self.task_distribution(t))

    # --- lever 2: loss weights ---------------------------------------------------------------
    def loss_weights(self, t: int) -> np.ndarray:
        """w_k in force at step t (detached constants, §1.4.8). Default: ones."""
        return np.ones(self.K)

    def example_losses(self, k: int, losses: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-example (per-token for tagging) training losses of task k, from their
        cross-entropies `losses` and gold `labels` (padding already removed). Focal loss and
        DTP's example-level term replace this; the default keeps cross-entropy."""
        return losses

    def combine(self, t: int, task_losses: dict[int, torch.Tensor]) -> torch.Tensor:
        """The step's loss from the trained tasks' mean minibatch losses L_k (with graphs).
        Default: Σ_k w_k·L_k with w = loss_weights(t). Loss exponentiation, Kendall override."""
        w = self.loss_weights(t)
        return sum(loss if w[k] == 1 else loss * float(w[k]) for k, loss in task_losses.items())

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """Trainable scheduler parameters (Kendall's s_k), stepped by the model's optimizer with
        no weight decay. They are saved with the scheduler's state."""
        return []

    # --- lever 3: gradients ------------------------------------------------------------------
    def custom_backward(
        self, t: int, task_losses: dict[int, torch.Tensor], shared: list[torch.nn.Parameter]
    ) -> bool:
        """Run the backward pass itself (GradNorm) and return True; False = trainer does
        `combine(...).backward()`. `shared` are the parameters of the last shared layer."""
        return False

    # --- lever 4: learning-rate scales -------------------------------------------------------
    def lr_scales(self, t: int) -> np.ndarray:
        """Per-task learning-rate (or gradient) scales; how they apply is optimizer.scale_mode."""
        return np.ones(self.K)

    # --- what the trainer tells the scheduler ----------------------------------------------
    def observe_train(self, t: int, task_losses: dict[int, float]) -> None:
        """After every optimiser step (only if `observes_train_loss`): the mean minibatch loss
        L_k(t) of each task trained at step t (its training loss, before any weighting)."""

    def wants_loss_probe(self, t: int) -> bool:
        """True: before step t the trainer measures one forward-only minibatch loss of every
        task (eval mode, from probe streams separate from the training data) and passes them
        to `observe_loss_probe` (greedy_loss's refresh_every)."""
        return False

    def observe_loss_probe(self, t: int, task_losses: dict[int, float]) -> None:
        """The losses asked for by `wants_loss_probe`."""

    def observe_train_kpis(self, t: int, task_kpis: dict[int, float]) -> None:
        """After every optimiser step (only if `observes_train_kpi`): each trained task's batch
        accuracy in [0, 1] (per token for tagging), the training-batch KPI of §1.3 (DTP)."""

    def observe_eval(self, step: int, scores: dict[int, float], losses: dict[int, float]) -> None:
        """After every evaluation: each task's dev primary metric s_k (a fraction, higher is
        better) and mean dev loss V_k."""

    def wants_signals(self, t: int) -> SignalRequest | None:
        """Dev-set measurements wanted before step t (t == the last step + 1 after the loop):
        outputs (probabilities, MC-dropout samples) and/or loss and metric. The trainer measures
        them under no_grad and calls `observe_signals`. QLS, REINFORCE, active_uncertainty."""
        return None

    def observe_signals(self, t: int, signals: Signals) -> None:
        """The measurements asked for by `wants_signals(t)`."""

    # --- policies learned before the run (QLS) ----------------------------------------------
    def learning_plan(self) -> tuple[int, int] | None:
        """(episodes, steps per episode) of a learning phase to run before training, each
        episode on a freshly initialised model; None = nothing to learn (the default)."""
        return None

    def begin_episode(self, episode: int) -> None:
        """A learning episode starts (fresh model, fresh optimizer)."""

    def end_learning(self, run_dir: Path) -> None:
        """The learning phase is over: switch to the run phase and save the policy."""

    def load_policy(self, path: Path) -> None:
        """Use a policy saved by `end_learning` (skipping the learning phase)."""
        raise NotImplementedError(f"{self.name} saves no policy")

    def learning_status(self) -> str:
        """One line for the progress display during learning (episode, temperature, reward)."""
        return ""

    def save_artifacts(self, run_dir: Path) -> None:
        """Write what the run learned and a later run can reuse (a policy, a schedule) into
        the run directory, atomically. Called once training ends."""

    def log_state(self) -> dict[str, Any]:
        """Internal state worth logging at each evaluation (§9.3), JSON-serialisable."""
        return {}

    # --- checkpointing (§9.4: the RNG state is part of the state) ---------------------------
    def state_dict(self) -> dict[str, Any]:
        params = [p.detach().clone() for p in self.extra_parameters()]
        return {"rng": self.rng.bit_generator.state, "params": params, **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        with torch.no_grad():
            for p, saved in zip(self.extra_parameters(), state.get("params", []), strict=True):
                p.copy_(saved)
        self.load_extra_state({k: v for k, v in state.items() if k not in ("rng", "params")})

    def extra_state(self) -> dict[str, Any]:
        """State beyond the RNG and extra_parameters (numpy arrays and lists are fine)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
