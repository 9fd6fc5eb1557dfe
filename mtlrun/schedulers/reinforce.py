"""Sundararaman et al.'s learned task-sampling policy (docs/schedulers.md §6.2), and the
sampler that replays what it learned.

`reinforce_policy` is the paper's *search run*: every example of a batch draws its task from
an exploration mixture around the policy softmax(θ_m); every N steps (a meta-step) the primary
task's accuracy on its full dev set is the reward R_m, and REINFORCE updates θ. Its state is
only time, so what it learns is a static schedule, written to `<run dir>/learned_schedule.json`.

`fixed_schedule` is the paper's *final run*: re-train from scratch drawing tasks from the
learned softmax(θ_m) of each meta-step, with exploration off.

The policy math is in small pure functions (`softmax`, `exploration_marginal`,
`frequency_sum`, `surrogate_gradient`, `policy_ascent`) that the oracle tests call directly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlrun.atomic import write_text_atomic
from mtlrun.errors import ConfigError
from mtlrun.schedulers.autosem import primary_index
from mtlrun.schedulers.base import (
    Category,
    Scheduler,
    SchedulerConfig,
    SignalRequest,
    Signals,
    StepMode,
    TaskInfo,
    inverse_cdf,
    softmax,
    to_probabilities,
)
from mtlrun.schedulers.registry import register

log = logging.getLogger(__name__)

SCHEDULE_FILE = "learned_schedule.json"
SCHEDULE_FORMAT = "mtlrun.learned_schedule/1"
BASELINES = ("none", "ema", "previous")
HOW_TO_MAKE = (
    "make one with a search run, `mtlrun scheduler=reinforce_policy ...`, and pass "
    f"<that run's dir>/{SCHEDULE_FILE}"
)


# --- the policy math (§6.2 (c)) --------------------------------------------------------------
def exploration_marginal(pi: np.ndarray, epsilon: float, gamma: float, primary: int) -> np.ndarray:
    """§6.2 (c)1: the probability that one example draws task a during the search run,
    P(a) = ε/K + (γ−ε)·1[a = T_p] + (1−γ)·π(a)."""
    pi = np.asarray(pi, dtype=np.float64)
    p = epsilon / len(pi) + (1.0 - gamma) * pi
    p[primary] += gamma - epsilon
    return p


def frequency_sum(actions: list[list[int]], K: int) -> tuple[np.ndarray, float]:
    """Σ_t f̂_t over a meta-step's steps, where f̂_t is the frequency of each task among step
    t's B actions, and the number of steps (the gradient's N). `actions[t]` is step t's batch."""
    total = np.zeros(K)
    for batch in actions:
        total += np.bincount(np.asarray(batch, dtype=np.int64), minlength=K) / len(batch)
    return total, float(len(actions))


def surrogate_gradient(
    theta: np.ndarray, freq_sum: np.ndarray, weight: float, advantage: float
) -> np.ndarray:
    """∇_θ of J(θ) = Σ_t (1/B) Σ_k (R − b)·log π_θ(a_t^k) (Sundararaman et al. eqs. 1–2):
    (R − b)·(Σ_t f̂_t − weight·π_θ), where weight = Σ_t (share of step t's batch in the sum).
    With every action in the sum, weight = N and this is (R − b)·N·(f̄_m − π_θ)."""
    return advantage * (np.asarray(freq_sum, dtype=np.float64) - weight * softmax(theta))


def policy_ascent(
    theta: np.ndarray,
    freq_sum: np.ndarray,
    weight: float,
    advantage: float,
    lr: float,
    steps: int,
    max_logit_abs: float | None = None,
) -> np.ndarray:
    """`steps` plain-SGD ascent steps on J with the actions fixed, π re-evaluated at each step;
    with `max_logit_abs`, θ is clipped to [−max, max] after every step (projected ascent)."""
    theta = np.array(theta, dtype=np.float64)
    for _ in range(steps):
        theta = theta + lr * surrogate_gradient(theta, freq_sum, weight, advantage)
        if max_logit_abs is not None:
            theta = np.clip(theta, -max_logit_abs, max_logit_abs)
    return theta


# --- the learned-schedule file --------------------------------------------------------------
@dataclass
class LearnedSchedule:
    """A `learned_schedule.json`, with its columns in the run's task order."""

    path: Path
    meta_step: int
    time_variant: bool
    probs: np.ndarray  # [rows, K]: one row per meta-step (time-variant) or a single row
    logits: np.ndarray | None  # [rows, K], same order


def load_schedule(path: str | Path, tasks: list[TaskInfo], option: str) -> LearnedSchedule:
    """Read and check a learned schedule for this run's tasks (reordered by name if needed).
    `option` names the config key in the error messages."""
    file = Path(path).expanduser()
    where = f"{option}={path}"
    if not file.is_file():
        raise ConfigError(f"{where}: no such file; {HOW_TO_MAKE}")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{where}: not a readable JSON file ({e}); {HOW_TO_MAKE}") from None
    if not isinstance(doc, dict) or doc.get("format") != SCHEDULE_FORMAT:
        raise ConfigError(
            f'{where}: not a learned schedule (no "format": "{SCHEDULE_FORMAT}"); {HOW_TO_MAKE}'
        )
    names, n = doc.get("tasks"), doc.get("meta_step")
    if (
        not isinstance(names, list)
        or not all(isinstance(x, str) for x in names)
        or len(set(names)) != len(names)
    ):
        raise ConfigError(f'{where}: "tasks" must be a list of distinct task names')
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f'{where}: "meta_step" must be an integer >= 1 (got {n!r})')
    run_names = [t.name for t in tasks]
    missing = [x for x in run_names if x not in names]
    extra = [x for x in names if x not in run_names]
    if missing or extra:
        parts = [f"missing from the schedule: {', '.join(missing)}"] if missing else []
        parts += [f"not trained in this run: {', '.join(extra)}"] if extra else []
        raise ConfigError(
            f"{where} was learned for tasks {', '.join(names)} but this run trains "
            f"{', '.join(run_names)} ({'; '.join(parts)}); use the same tasks as the search run"
        )
    order = [names.index(x) for x in run_names]
    if order != list(range(len(names))):
        log.info("%s: task order differs from this run's; columns reordered by task name", file)

    def matrix(key: str) -> np.ndarray:
        try:
            m = np.asarray(doc[key], dtype=np.float64)
        except (TypeError, ValueError):
            m = np.empty(0)
        if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] != len(names):
            raise ConfigError(
                f'{where}: "{key}" must be a non-empty list of rows with one number per task '
                f"({len(names)})"
            )
        if not np.all(np.isfinite(m)):
            raise ConfigError(f'{where}: "{key}" holds non-finite values')
        return m[:, order]

    if "probs" not in doc:
        raise ConfigError(f'{where}: no "probs"; {HOW_TO_MAKE}')
    probs = matrix("probs")
    if (probs < 0).any() or (probs.sum(axis=1) <= 0).any():
        raise ConfigError(f'{where}: "probs" must be >= 0 with a positive sum in every row')
    sums = probs.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > 1e-6):
        log.warning("%s: probability rows sum to %s, not 1: renormalised", file, sums.tolist())
    probs = np.stack([to_probabilities(row) for row in probs])
    logits = matrix("logits") if doc.get("logits") is not None else None
    if logits is not None and logits.shape != probs.shape:
        raise ConfigError(f'{where}: "logits" and "probs" have different shapes')
    return LearnedSchedule(file, n, bool(doc.get("time_variant", len(probs) > 1)), probs, logits)


# --- the search run ---------------------------------------------------------------------------
@register
class ReinforcePolicy(Scheduler):
    """§6.2 search run: a REINFORCE-trained categorical policy over tasks whose only state is
    the meta-step index M(t) = t // N.

    Drawing (per example, MIXED mode): u ~ U(0,1); u < ε → a uniform task; ε ≤ u < γ → the
    primary task; else a ~ softmax(θ_{M(t)}) (time-variant) or softmax(θ) (time-invariant).
    Reward: before step (m+1)·N (and after the last step, for a final partial meta-step) the
    trainer measures the primary task's metric on its full dev set: R_m.
    Update: `policy_steps` plain-SGD ascent steps (lr `policy_lr`) on
        J(θ) = Σ_{t ∈ m} (1/B) Σ_k (R_m − b)·log π_θ(a_t^k),  ∇J = (R_m − b)·N·(f̄_m − π_θ),
    re-evaluating π_θ each step with the actions fixed; time-variant updates only θ_m. N is the
    number of steps the meta-step actually had (the final one may be shorter).
    SINGLE mode (one task per step, drawn from the same mixture) is allowed but is not the
    paper's setting. The learned schedule softmax(θ_m) is saved for `fixed_schedule`.
    """

    name = "reinforce_policy"
    learned = True
    category = Category.POLICY
    step_modes = (StepMode.MIXED, StepMode.SINGLE)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "reinforce_policy"
        time_variant: bool = True  # [P] one θ per meta-step (the paper's π_θ_M(t)); false: one θ
        meta_step: int = 1000  # [P] N
        epsilon: float = 0.1  # [U]/[D] uniform exploration
        gamma: float = 0.2  # [U]/[D] ε ≤ u < γ: the primary task
        policy_lr: float = 0.001  # [P]
        policy_steps: int = 100  # [P]
        baseline: str = "none"  # [U]/[D] none (b = 0) | ema | previous
        baseline_decay: float = 0.9  # [D] ema: b ← 0.9·b + 0.1·R_m, initialised to R_0
        include_exploration_actions: bool = True  # [D] exploration draws enter the gradient
        max_logit_abs: float | None = 10.0  # [D] clip |θ|; null = off
        primary: str | None = None  # reward task; null = flagged is_primary, else the first
        search_runs: int = 1  # [P] one search run; chain runs with init_from for more
        init_from: str | None = None  # a learned_schedule.json whose logits start the search

        def __post_init__(self) -> None:
            if not 0 <= self.epsilon <= self.gamma <= 1:
                raise ConfigError(
                    "scheduler.epsilon and scheduler.gamma must satisfy 0 <= epsilon <= gamma "
                    f"<= 1 (got epsilon={self.epsilon}, gamma={self.gamma})"
                )
            if self.meta_step < 1:
                raise ConfigError(f"scheduler.meta_step must be >= 1 (got {self.meta_step})")
            if not (self.policy_lr >= 0 and math.isfinite(self.policy_lr)):
                raise ConfigError(f"scheduler.policy_lr must be >= 0 (got {self.policy_lr})")
            if self.policy_steps < 0:
                raise ConfigError(f"scheduler.policy_steps must be >= 0 (got {self.policy_steps})")
            if self.baseline not in BASELINES:
                raise ConfigError(
                    f"scheduler.baseline={self.baseline} is not one of: {', '.join(BASELINES)}"
                )
            if not 0 <= self.baseline_decay <= 1:
                raise ConfigError(
                    f"scheduler.baseline_decay must be in [0, 1] (got {self.baseline_decay})"
                )
            if self.max_logit_abs is not None and not self.max_logit_abs > 0:
                raise ConfigError(
                    f"scheduler.max_logit_abs must be > 0 or null (got {self.max_logit_abs})"
                )
            if self.search_runs != 1:
                raise ConfigError(
                    f"scheduler.search_runs={self.search_runs}: one search run per mtlrun run; "
                    "for another, start a new run from the same seed with "
                    f"scheduler.init_from=<previous run dir>/{SCHEDULE_FILE}"
                )

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self.primary = primary_index(cfg.primary, tasks, self.name)
        self.N = int(cfg.meta_step)
        self.M = max(1, -(-total_steps // self.N))  # ⌈T / N⌉ meta-steps
        self.theta = np.zeros((self.M if cfg.time_variant else 1, self.K))  # [P] uniform init
        if cfg.init_from is not None:
            self.theta = self._initial_logits(cfg.init_from)
        # b: 0 for "none"; ema/previous start at None and take R_0 at the first reward [D]
        self.baseline: float | None = 0.0 if cfg.baseline == "none" else None
        self.last_reward: float | None = None
        self.history: list[dict[str, Any]] = []  # one record per closed meta-step
        self._reset_meta(0)
        self._warned_single = False
        if cfg.time_variant and self.M > 1:
            log.info(
                "reinforce_policy: time-variant policy with %d meta-steps of %d steps; each "
                "θ_m is updated only once in a search run (the paper's procedure)",
                self.M,
                self.N,
            )

    def _initial_logits(self, path: str) -> np.ndarray:
        sched = load_schedule(path, self.tasks, "scheduler.init_from")
        if sched.logits is None:
            raise ConfigError(f"scheduler.init_from={path}: the file has no logits")
        if sched.meta_step != self.N or sched.time_variant != bool(self.cfg.time_variant):
            raise ConfigError(
                f"scheduler.init_from={path} was learned with meta_step={sched.meta_step}, "
                f"time_variant={sched.time_variant}; this run has meta_step={self.N}, "
                f"time_variant={self.cfg.time_variant}"
            )
        if sched.logits.shape != self.theta.shape:
            raise ConfigError(
                f"scheduler.init_from={path} has {len(sched.logits)} meta-steps; this run has "
                f"{len(self.theta)} (use the same trainer.max_steps)"
            )
        log.info("reinforce_policy: logits initialised from %s", sched.path)
        return sched.logits.copy()

    # --- the meta-step's action statistics ---------------------------------------------------
    def _reset_meta(self, m: int) -> None:
        self._meta = m  # the meta-step whose actions are being counted
        self._freq = np.zeros(self.K)  # Σ_t f̂_t over the counted actions
        self._weight = 0.0  # Σ_t (counted actions at t) / B
        self._steps = 0  # steps drawn in this meta-step

    def _meta_of(self, t: int) -> int:
        return min(t // self.N, self.M - 1)

    def _row(self, m: int) -> int:
        return m if self.cfg.time_variant else 0

    def policy(self, t: int) -> np.ndarray:
        """π in force at step t: softmax(θ_{M(t)}) or softmax(θ)."""
        return softmax(self.theta[self._row(self._meta_of(t))])

    def task_distribution(self, t: int) -> np.ndarray:
        """The marginal P(a) of one example's task during the search run (exploration on)."""
        return exploration_marginal(self.policy(t), self.cfg.epsilon, self.cfg.gamma, self.primary)

    def _begin_step(self, t: int) -> None:
        m = self._meta_of(t)
        if m != self._meta:
            if self._steps:
                log.warning(
                    "reinforce_policy: meta-step %d ended without a reward: its %d steps are "
                    "dropped, θ unchanged",
                    self._meta,
                    self._steps,
                )
            self._reset_meta(m)

    def _record(self, included: np.ndarray, batch_size: int) -> None:
        self._freq += included / batch_size
        self._weight += included.sum() / batch_size
        self._steps += 1

    def mixed_counts(self, t: int, batch_size: int) -> np.ndarray:
        """§6.2 (c)1, per example: u ~ U(0,1); u < ε uniform, ε ≤ u < γ primary, else π."""
        self._begin_step(t)
        eps, gamma = self.cfg.epsilon, self.cfg.gamma
        u = self.rng.random(batch_size)
        n_uniform = int(np.count_nonzero(u < eps))
        n_primary = int(np.count_nonzero((u >= eps) & (u < gamma)))
        n_policy = batch_size - n_uniform - n_primary
        uniform = np.bincount(self.rng.integers(0, self.K, n_uniform), minlength=self.K)
        drawn = inverse_cdf(np.cumsum(self.policy(t)), self.rng.random(n_policy))
        policy = np.bincount(drawn, minlength=self.K)
        counts = uniform + policy
        counts[self.primary] += n_primary
        self._record(counts if self.cfg.include_exploration_actions else policy, batch_size)
        return counts.astype(np.int64)

    def next_task(self, t: int) -> int:
        """SINGLE mode: one draw from the same mixture for the whole step (not the paper's)."""
        if not self._warned_single:
            log.warning(
                "reinforce_policy runs with one task per step (trainer.step_mode=single); "
                "the paper draws a task per example (trainer.step_mode=mixed)"
            )
            self._warned_single = True
        self._begin_step(t)
        u = self.rng.random()
        explored = u < self.cfg.gamma
        if u < self.cfg.epsilon:
            k = int(self.rng.integers(0, self.K))
        elif explored:
            k = self.primary
        else:
            k = int(inverse_cdf(np.cumsum(self.policy(t)), self.rng.random()))
        one = np.zeros(self.K)
        if self.cfg.include_exploration_actions or not explored:
            one[k] = 1.0
        self._record(one, 1)
        return k

    # --- rewards and policy updates ------------------------------------------------------------
    def wants_signals(self, t: int) -> SignalRequest | None:
        """The primary task's full-dev metric at the end of each meta-step: before step (m+1)·N,
        or after the last step when the final meta-step is shorter than N."""
        if self._steps and t >= min((self._meta + 1) * self.N, self.total_steps):
            return SignalRequest(scores={self.primary: None})
        return None

    def observe_signals(self, t: int, signals: Signals) -> None:
        m, steps, freq, weight = self._meta, self._steps, self._freq, self._weight
        self._reset_meta(m + 1)
        reward = signals.scores.get(self.primary)
        record: dict[str, Any] = {"meta_step": m, "end": t, "steps": steps}
        if reward is None or not math.isfinite(reward):
            log.warning(
                "reinforce_policy: no usable reward for meta-step %d (%s): θ unchanged", m, reward
            )  # §1.4.5
            self.history.append({**record, "reward": None})
            return
        reward = float(reward)
        b = reward if self.baseline is None else self.baseline  # ema / previous: b = R_0 first
        advantage = reward - b
        row = self._row(m)
        self.theta[row] = policy_ascent(
            self.theta[row], freq, weight, advantage, self.cfg.policy_lr,
            self.cfg.policy_steps, self.cfg.max_logit_abs,
        )  # fmt: skip
        if self.cfg.baseline == "ema":
            self.baseline = self.cfg.baseline_decay * b + (1 - self.cfg.baseline_decay) * reward
        elif self.cfg.baseline == "previous":
            self.baseline = reward
        self.last_reward = reward
        pi = softmax(self.theta[row])
        self.history.append({
            **record, "reward": reward, "baseline": b, "advantage": advantage,
            "f_bar": (freq / weight).tolist() if weight > 0 else None, "pi": pi.tolist(),
        })  # fmt: skip
        log.info(
            "reinforce_policy: meta-step %d (%d steps): R=%.4f b=%.4f → π=%s",
            m, steps, reward, b, np.round(pi, 4).tolist(),
        )  # fmt: skip

    # --- outputs -------------------------------------------------------------------------------
    def schedule(self) -> dict[str, Any]:
        """The learned static schedule (what `fixed_schedule` replays), JSON-serialisable."""
        settings = dataclasses.asdict(self.cfg) if dataclasses.is_dataclass(self.cfg) else {}
        settings = {k: v for k, v in settings.items() if k not in ("name", "baselines")}
        return {
            "format": SCHEDULE_FORMAT,
            "scheduler": self.name,
            "tasks": [t.name for t in self.tasks],
            "primary": self.tasks[self.primary].name,
            "meta_step": self.N,
            "time_variant": bool(self.cfg.time_variant),
            "total_steps": self.total_steps,
            "num_meta_steps": self.M,
            "probs": [softmax(row).tolist() for row in self.theta],  # exploration off [D]
            "logits": self.theta.tolist(),
            "history": self.history,
            "settings": settings,
        }

    def save_artifacts(self, run_dir: Path) -> None:
        path = Path(run_dir) / SCHEDULE_FILE
        write_text_atomic(path, json.dumps(self.schedule(), indent=2) + "\n")
        log.info(
            "reinforce_policy: learned schedule written to %s; re-train with it: "
            "mtlrun scheduler=fixed_schedule scheduler.path=%s",
            path,
            path,
        )

    def log_state(self) -> dict[str, Any]:
        m = min(self._meta, self.M - 1)  # after the last update _meta is M
        row = self._row(m)
        return {
            "meta_step": m,
            "theta": self.theta[row].tolist(),
            "pi": softmax(self.theta[row]).tolist(),
            "reward": self.last_reward,
            "baseline": self.baseline,
        }

    def extra_state(self) -> dict[str, Any]:
        return {
            "theta": self.theta.tolist(),
            "meta": self._meta,
            "freq": self._freq.tolist(),
            "weight": self._weight,
            "steps": self._steps,
            "baseline": self.baseline,
            "last_reward": self.last_reward,
            "history": json.loads(json.dumps(self.history)),  # a copy
            "warned_single": self._warned_single,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        theta = np.asarray(state["theta"], dtype=np.float64)
        if theta.shape != self.theta.shape:
            raise ConfigError(
                f"reinforce_policy: the saved logits have shape {theta.shape}, this run needs "
                f"{self.theta.shape} (same trainer.max_steps and scheduler settings?)"
            )
        self.theta = theta
        self._meta = int(state["meta"])
        self._freq = np.asarray(state["freq"], dtype=np.float64)
        self._weight = float(state["weight"])
        self._steps = int(state["steps"])
        self.baseline = state["baseline"]
        self.last_reward = state["last_reward"]
        self.history = json.loads(json.dumps(state["history"]))
        self._warned_single = bool(state.get("warned_single", False))


# --- the final run --------------------------------------------------------------------------
@register
class FixedSchedule(Scheduler):
    """§6.2 final run: replay a learned schedule. Step t draws from probs[min(t // N, M − 1)]
    (a single row for a time-invariant policy); a run longer than the schedule keeps its last
    row. Exploration is off [D]. MIXED mode (a task per example) is the paper's setting."""

    name = "fixed_schedule"
    learned = True
    category = Category.SAMPLER
    step_modes = (StepMode.MIXED, StepMode.SINGLE)

    @dataclass
    class Config(SchedulerConfig):
        name: str = "fixed_schedule"
        path: str | None = None  # <search run dir>/learned_schedule.json (required)

        def __post_init__(self) -> None:
            if self.path is None or not str(self.path).strip():
                raise ConfigError(
                    f"scheduler.path is required: {HOW_TO_MAKE} as "
                    f"scheduler.path=<run dir>/{SCHEDULE_FILE}"
                )

    def __init__(self, cfg, tasks, total_steps, rng) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        sched = load_schedule(cfg.path, tasks, "scheduler.path")
        self.probs = sched.probs
        self.N = sched.meta_step
        covered = len(self.probs) * self.N
        if len(self.probs) > 1 and total_steps > covered:
            log.warning(
                "fixed_schedule: the run (%d steps) is longer than the schedule (%d meta-steps "
                "of %d steps): steps from %d on reuse its last row",
                total_steps,
                len(self.probs),
                self.N,
                covered,
            )
        log.info(
            "fixed_schedule: replaying %s (%d row(s), meta-step %d)",
            sched.path,
            len(self.probs),
            self.N,
        )

    def task_distribution(self, t: int) -> np.ndarray:
        return self.probs[min(t // self.N, len(self.probs) - 1)].copy()
