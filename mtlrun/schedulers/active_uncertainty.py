"""Uncertainty-based active task prioritisation (Fang & Alqatari), docs/schedulers.md §7.

Every f = 200 steps the trainer runs M = 8 MC-dropout passes over every task's dev set; each
task's epistemic uncertainty u_k is smoothed into v_k, normalised into sampling probabilities
p_k = v_k / Σ v, and the next f tasks are drawn from p in advance. Tasks the model is unsure
about are trained more.

u_k is, by default (`estimator=batchbald`), Fang & Alqatari's mutual information I(y_1:n; ω) between
the labels of greedily selected dev rows and the dropout mask (true BatchBALD), averaged over
the dev minibatches as FANG-CODE does. FANG-CODE's own scores (`batchbald_ref`) keep the
selected rows' conditional entropies, so near chance every task scores ≈ 3.1 whatever its
epistemic uncertainty and p stays near uniform; they remain available for reproduction.
Estimators: `schedulers/uncertainty.py`. Which dropout samples (`mc_dropout`: every dropout of
the model, or only the one before the task heads as FANG-CODE): `training/signals.py`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import (
    Category,
    Scheduler,
    SchedulerConfig,
    SignalRequest,
    Signals,
    StepMode,
    TaskInfo,
    inverse_cdf,
    to_probabilities,
)
from mtlrun.schedulers.registry import register
from mtlrun.schedulers.uncertainty import ESTIMATORS, MC_DROPOUT_SCOPES, task_uncertainty

log = logging.getLogger(__name__)

EMA_FORMS = ("old", "new")
WARM_STARTS = ("uniform", "union")


def smooth(previous: np.ndarray | None, estimate: np.ndarray, rho: float, form: str = "old"):
    """§7 EMA of the uncertainties. The first estimate is taken as is (v = u) [R]; afterwards
    `old` (code/text convention, §1.4.7 EMA_old): v = ρ·v_prev + (1 − ρ)·u, ρ weights the past;
    `new` (Fang & Alqatari eq. 1 as printed): v = ρ·u + (1 − ρ)·v_prev. They agree at ρ = 0.5."""
    u = np.asarray(estimate, dtype=np.float64)
    if previous is None:
        return u.copy()
    if form == "old":
        return rho * np.asarray(previous, dtype=np.float64) + (1.0 - rho) * u
    if form == "new":
        return rho * u + (1.0 - rho) * np.asarray(previous, dtype=np.float64)
    raise ValueError(f"unknown EMA form {form!r}; one of {EMA_FORMS}")


def draw_tasks(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """§7 (c): n i.i.d. draws from Categorical(p) (their counts are Multinomial(n, p)), by
    inverse CDF; zero-probability tasks are never drawn."""
    return inverse_cdf(np.cumsum(np.asarray(p, dtype=np.float64)), rng.random(n)).astype(np.int64)


def union_order(n_batches: list[int], n: int, rng: np.random.Generator) -> np.ndarray:
    """The first n tasks of MT-DNN's shuffled union (§2.5): every task's training batches pooled
    and permuted, a new permutation for each further pass over the pool."""
    pool = np.repeat(np.arange(len(n_batches)), np.maximum(np.asarray(n_batches), 0))
    if len(pool) == 0:
        return draw_tasks(np.full(len(n_batches), 1.0 / len(n_batches)), n, rng)
    passes = [rng.permutation(pool) for _ in range(-(-n // len(pool)))]
    return np.concatenate(passes)[:n].astype(np.int64)


@register
class ActiveUncertainty(Scheduler):
    """§7 `active_uncertainty` (Fang & Alqatari Algorithm 1): sample tasks in proportion to their
    smoothed epistemic uncertainty on the dev sets.

        u_k ← 1, p ← uniform; tasks_next ← f draws from p                      (step 0)
        every f steps (t = f, 2f, … < T):
            u_k ← max(0, estimate over M MC-dropout passes on Dev_k)             §7 step 1–3
            v_k ← u_k at the first estimate, then v_k ← ρ·v_k + (1 − ρ)·u_k      [R] EMA_old
            p_k ← v_k / Σ_j v_j   (plain ratio; uniform if Σ v = 0)              [P]
            tasks_next ← f i.i.d. draws from Categorical(p)                      [P]
        step t trains tasks_next[t mod f]

    Estimators (`estimator`): `batchbald` [P definition; R selection and aggregation; default]
    the true BatchBALD (mutual information) of each set the reference's greedy selection builds,
    averaged over dev minibatches of `dev_batch_size` rows; `batchbald_ref` [R] the reference
    code's scores of the same selection (the history's conditional entropies not subtracted:
    not a mutual information, ≈ ln 2 · k near chance); `bald_mean` [D] mean per-row BALD;
    `batchbald_exact` [D] exact BatchBALD on chunks of ≤ 8 rows. A row is a dev example, or a
    token for tagging tasks. `mc_dropout` chooses which dropout samples in the M passes: `all`
    [D] every dropout of the model (attention dropout included), or `heads` [R] only the
    dropout right before the task heads (FANG-CODE's `apply_dropout` switches only its
    task-specific `DropoutWrapper`s), the encoder body then deterministic. `dev_examples`
    [D, off] restricts every estimate to a fixed random subset of each task's dev examples
    (cheaper for large dev sets, e.g. tagging).

    Warm start (the first f steps): `uniform` [P] draws from the uniform p; `union` [R] takes
    the first f tasks of MT-DNN's shuffled union, i.e. a random permutation of the pooled
    training batches of all tasks (task k appears in proportion to its number of batches,
    without replacement); p reports those proportions until the first estimate.

    A non-finite estimate for any task (a diverged model) leaves u, v and p unchanged (§1.4.5);
    the next f tasks are still drawn, from the current p. M passes that all agree (a model
    without dropout) give u = 0, hence uniform p (§7(d)). The draws use the scheduler's own
    generator, and each estimate samples from a child generator seeded by one draw of it, so the
    task sequence is a function of the seed and the observed signals; `tasks_next` and the
    generator are checkpointed, so a run resumed at any step continues the same sequence.
    """

    name = "active_uncertainty"
    category = Category.SAMPLER
    step_modes = (StepMode.SINGLE,)
    learned = True  # its p follows the model's uncertainty: watched by the collapse guard

    @dataclass
    class Config(SchedulerConfig):
        name: str = "active_uncertainty"
        every: int = 200  # [P] f: steps between estimates
        mc_samples: int = 8  # [P] M: MC-dropout passes
        rho: float = 0.5  # [P] smoothing γ (Fang & Alqatari chose from {0, .125, .25, .375, .5})
        ema_form: str = "old"  # [R] old: ρ weights the past (code, text) | new: eq. 1 as printed
        # [P] batchbald: u_k = I(y; ω) (Fang & Alqatari) | batchbald_ref [R] | bald_mean [D]
        # | batchbald_exact [D]
        estimator: str = "batchbald"
        mc_dropout: str = "all"  # [D] all: every dropout samples | heads [R]: only before heads
        dev_batch_size: int = 128  # [R] rows per dev minibatch (batchbald, batchbald_ref)
        num_samples: int = 500  # [R] label configurations drawn per MC pass (batchbald*)
        max_iter: int = 10  # [R] greedy BatchBALD iterations per dev minibatch (batchbald*)
        warm_start: str = "uniform"  # [P] uniform | union [R]
        dev_examples: int | None = None  # [D] fixed random dev subset per task; null = all

        def __post_init__(self) -> None:
            for key in ("every", "dev_batch_size", "num_samples", "max_iter"):
                if getattr(self, key) < 1:
                    raise ConfigError(f"scheduler.{key} must be >= 1 (got {getattr(self, key)})")
            if self.mc_samples < 2:
                raise ConfigError(
                    f"scheduler.mc_samples must be >= 2 (got {self.mc_samples}): with one "
                    "dropout pass the epistemic uncertainty is identically 0"
                )
            if not 0 <= self.rho <= 1:
                raise ConfigError(f"scheduler.rho must be in [0, 1] (got {self.rho})")
            for key, allowed in (
                ("ema_form", EMA_FORMS),
                ("estimator", ESTIMATORS),
                ("mc_dropout", MC_DROPOUT_SCOPES),
                ("warm_start", WARM_STARTS),
            ):
                if getattr(self, key) not in allowed:
                    raise ConfigError(
                        f"scheduler.{key} must be one of {', '.join(allowed)} "
                        f"(got {getattr(self, key)!r})"
                    )
            if self.dev_examples is not None and self.dev_examples < 1:
                raise ConfigError(
                    f"scheduler.dev_examples must be >= 1 or null (got {self.dev_examples})"
                )

    def __init__(
        self, cfg: Any, tasks: list[TaskInfo], total_steps: int, rng: np.random.Generator
    ) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self.f = int(cfg.every)
        self.u = np.ones(self.K)  # Algorithm 1: u_k ← 1
        self.v: np.ndarray | None = None  # smoothed u; None until the first estimate
        self.estimates = 0  # estimates taken into v
        self.skipped = 0  # observations ignored (non-finite)
        self.signal_seconds = 0.0  # wall time of the last measurement (MC-dropout passes)
        self.signal_seconds_total = 0.0
        self.estimate_seconds = 0.0  # wall time of the last u_k computation
        self.estimate_seconds_total = 0.0
        self.dev_rows = self._dev_subsets()
        if cfg.warm_start == "union":
            batches = [t.n_train_batches for t in tasks]
            self.p = to_probabilities(np.asarray(batches, dtype=np.float64))
            self.tasks_next = union_order(batches, self.f, self.rng)
        else:
            self.p = np.full(self.K, 1.0 / self.K)
            self.tasks_next = draw_tasks(self.p, self.f, self.rng)
        if self.f >= total_steps:
            log.warning(
                "active_uncertainty: scheduler.every=%d >= %d training steps, so the uncertainty "
                "is never estimated and the run keeps its warm-start order (%s)",
                self.f, total_steps, cfg.warm_start,
            )  # fmt: skip

    def _dev_subsets(self) -> list[np.ndarray | None]:
        """Per task, the fixed dev examples measured (None = all of them)."""
        n = self.cfg.dev_examples
        return [
            None if n is None or task.n_dev <= n else np.sort(self.rng.permutation(task.n_dev)[:n])
            for task in self.tasks
        ]

    # --- lever 1 ------------------------------------------------------------------------------
    def task_distribution(self, t: int) -> np.ndarray:
        return self.p.copy()

    def next_task(self, t: int) -> int:
        return int(self.tasks_next[t % self.f])

    # --- signals ------------------------------------------------------------------------------
    def wants_signals(self, t: int) -> SignalRequest | None:
        """M MC-dropout passes over every task's dev rows before steps f, 2f, … (< T)."""
        if t % self.f != 0 or not 0 < t < self.total_steps:
            return None
        return SignalRequest(
            outputs={k: self.dev_rows[k] for k in range(self.K)},
            mc_samples=self.cfg.mc_samples,
            mc_dropout=self.cfg.mc_dropout,
        )

    def observe_signals(self, t: int, signals: Signals) -> None:
        cfg = self.cfg
        self.signal_seconds = float(signals.seconds)
        self.signal_seconds_total += self.signal_seconds
        began = time.perf_counter()
        # the estimator samples from a child generator: the task draws below consume exactly one
        # integer plus f uniforms per estimate, however many samples the estimator took
        sampler = np.random.default_rng(self.rng.integers(2**63))
        u = np.full(self.K, math.nan)
        for k in range(self.K):
            out = signals.outputs.get(k)
            if out is None or out.mc_probs is None:
                continue
            u[k] = task_uncertainty(
                out.mc_probs, cfg.estimator, sampler, batch_size=cfg.dev_batch_size,
                num_samples=cfg.num_samples, max_iter=cfg.max_iter,
            )  # fmt: skip
        self.estimate_seconds = time.perf_counter() - began
        self.estimate_seconds_total += self.estimate_seconds
        if not np.all(np.isfinite(u)):
            self.skipped += 1
            bad = [self.tasks[k].name for k in range(self.K) if not math.isfinite(u[k])]
            log.warning(
                "active_uncertainty: no usable uncertainty at step %d for %s (%s); keeping "
                "p = %s", t, ", ".join(bad), u, np.round(self.p, 6),
            )  # fmt: skip
        else:
            self.u = u
            self.v = smooth(self.v, u, cfg.rho, cfg.ema_form)
            self.p = to_probabilities(self.v)
            self.estimates += 1
        self.tasks_next = draw_tasks(self.p, self.f, self.rng)

    # --- logging and checkpointing ------------------------------------------------------------
    def log_state(self) -> dict[str, Any]:
        return {
            "u": self.u.tolist(),
            "v": None if self.v is None else self.v.tolist(),
            "p": self.p.tolist(),
            "estimates": self.estimates,
            "skipped": self.skipped,
            "signal_seconds": self.signal_seconds,
            "signal_seconds_total": self.signal_seconds_total,
            "estimate_seconds": self.estimate_seconds,
            "estimate_seconds_total": self.estimate_seconds_total,
        }

    def extra_state(self) -> dict[str, Any]:
        return {
            **self.log_state(),
            "tasks_next": self.tasks_next.tolist(),
            "dev_rows": [None if r is None else r.tolist() for r in self.dev_rows],
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.u = np.asarray(state["u"], dtype=np.float64)
        self.v = None if state["v"] is None else np.asarray(state["v"], dtype=np.float64)
        self.p = np.asarray(state["p"], dtype=np.float64)
        self.tasks_next = np.asarray(state["tasks_next"], dtype=np.int64)
        self.dev_rows = [None if r is None else np.asarray(r, np.int64) for r in state["dev_rows"]]
        self.estimates = int(state["estimates"])
        self.skipped = int(state["skipped"])
        self.signal_seconds = float(state["signal_seconds"])
        self.signal_seconds_total = float(state["signal_seconds_total"])
        self.estimate_seconds = float(state["estimate_seconds"])
        self.estimate_seconds_total = float(state["estimate_seconds_total"])
