"""`qls`: the Q-Learning Scheduler of SEED-000 (SCHEDULERS.md §6.3).

A deep Q-network picks the task of the next D training steps from the state
S = concat_k histogram(ζ(x) for x in H_k) — the model's per-task uncertainty (margin by
default) over a fixed set H_k of hard dev examples, n_b bins per task. It learns before the
run, over episodes that each train a freshly initialised MTL model for `episode_steps` steps:

    every D steps:  r = −Σ_k V_k  (mean dev cross-entropy per task), or the punishment −10 when
                    mean_k s_k < 0.95 · mean_k s*_k (single-task baselines, if given)
                    store (S, a, r, S', done = last decision of the episode) in the replay buffer,
                    one DQN step on y = r + γ max_a' Q_target(S', a')  (Huber loss)
                    a' = argmax_a  Q̃(S', a) + τ_d · sqrt(C² / max(1, N(a))) · Z_a   (BGE, §6.3.5)

and then runs greedily: a = argmax_a Q(S, a). `scheduler.policy=<policy.pt>` skips learning and
reuses a saved policy (Q-network and H_k). The presets are `qls` (practical: finishes on a
laptop CPU) and `qls_faithful` (the paper's 1M steps with a reset every 10K, D = 1).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
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
)
from mtlrun.schedulers.baselines import check_baselines_value, load_baselines
from mtlrun.schedulers.dqn import DQN, ReplayBuffer, bge_index, temperature, zscore
from mtlrun.schedulers.registry import register
from mtlrun.schedulers.uncertainty import histogram, row_uncertainty
from mtlrun.training import checkpoint

log = logging.getLogger(__name__)

POLICY_FORMAT = "mtlrun.qls_policy/1"


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"scheduler.{name} must be one of {allowed} (got {value!r})")


@dataclass
class QLSConfig(SchedulerConfig):
    """Defaults = the practical preset (conf/scheduler/qls.yaml); qls_faithful.yaml has the
    paper's budget."""

    name: str = "qls"
    policy: str | None = None  # a saved policy.pt: skip learning, run it greedily
    # learning budget (§6.3.1 / §6.3.7)
    episodes: int = 3  # MTL resets in the learning phase (T_total / T_reset); paper 100
    episode_steps: int | None = None  # steps between MTL resets (T_reset); null = max_steps
    decision_every: int = 100  # D: training steps per decision; paper 1
    # state (§6.3.2)
    uncertainty: str = "margin"  # margin | least_conf | entropy
    n_bins: int = 20
    state_subset: str = "hard"  # hard (n_h hardest dev examples, fixed) | all
    hard_examples: int = 16  # n_h (qls_faithful: 128)
    hard_after_steps: int = 250  # H_k from the MTL model after this many steps of episode 1
    # reward (§6.3.3)
    reward_examples: int | None = 32  # dev examples per task for V_k and s_k; null = all
    punishment: float = -10.0
    punish_ratio: float = 0.95
    punish_after_steps: int = 0  # mute the punishment for the first steps of every episode
    # DQN (§6.3.4, §6.3.6)
    gamma: float = 0.99
    target: str = "dqn"  # dqn (max over a') | sarsa (the next action taken)
    q_hidden: int = 256
    q_optimizer: str = "adam"  # adam | rmsprop (Mnih et al. 2013)
    q_lr: float = 1e-3
    q_grad_clip: float = 10.0
    replay_size: int = 100_000
    replay_batch: int = 32
    learning_starts: int = 32  # transitions in the buffer before the first update
    target_sync: int = 25  # gradient steps between hard target copies; 0 = no target network
    # exploration (§6.3.5)
    q_normalization: str = "zscore"  # zscore | none
    tau0: float = 10.0
    tau_min: float = 0.01
    anneal_fraction: float = 0.8
    bge_c: float = 1.0

    def __post_init__(self) -> None:
        check_baselines_value(self.baselines)
        _choice("uncertainty", self.uncertainty, ("margin", "least_conf", "entropy"))
        _choice("state_subset", self.state_subset, ("hard", "all"))
        _choice("target", self.target, ("dqn", "sarsa"))
        _choice("q_optimizer", self.q_optimizer, ("adam", "rmsprop"))
        _choice("q_normalization", self.q_normalization, ("zscore", "none"))
        positive = ("episodes", "decision_every", "n_bins", "hard_examples", "q_hidden",
                    "q_lr", "q_grad_clip", "replay_size", "replay_batch", "tau0", "tau_min",
                    "anneal_fraction")  # fmt: skip
        for key in positive:
            if not getattr(self, key) > 0:
                raise ConfigError(f"scheduler.{key} must be > 0 (got {getattr(self, key)})")
        for key in ("episode_steps", "reward_examples"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"scheduler.{key} must be > 0 or null (got {value})")
        if not 0 <= self.gamma <= 1:
            raise ConfigError(f"scheduler.gamma must be in [0, 1] (got {self.gamma})")
        for key in ("hard_after_steps", "punish_after_steps", "learning_starts", "target_sync"):
            if getattr(self, key) < 0:
                raise ConfigError(f"scheduler.{key} must be >= 0 (got {getattr(self, key)})")


@register
class QLS(Scheduler):
    name = "qls"
    Config = QLSConfig
    category = Category.POLICY
    step_modes = (StepMode.SINGLE,)

    def __init__(
        self, cfg: QLSConfig, tasks: list[TaskInfo], total_steps: int, rng: np.random.Generator
    ) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self.episode_steps = cfg.episode_steps or total_steps
        if cfg.state_subset == "hard" and cfg.hard_after_steps >= self.episode_steps:
            raise ConfigError(
                f"scheduler.hard_after_steps={cfg.hard_after_steps} must be < the episode length "
                f"{self.episode_steps}: H_k is fixed during the first episode"
            )
        for t in tasks:
            if t.num_labels < 2 and cfg.uncertainty == "margin":
                raise ConfigError(f"qls: task {t.name} has one class; the margin needs two")
        self.baselines = None
        if cfg.baselines is not None:
            self.baselines = np.asarray(load_baselines(cfg.baselines, [t.name for t in tasks]))
        elif cfg.policy is None:
            log.warning("qls: no scheduler.baselines, so the -10 punishment (§6.3.3) is off")
        self.dqn = DQN(self.K * cfg.n_bins, self.K, cfg, seed=int(rng.integers(2**31)))
        self.hard: list[np.ndarray] | None = None  # H_k (dev example indices)
        self.reward_rows: list[np.ndarray] | None = None  # R_k, fixed once drawn
        self.learning = cfg.policy is None
        if cfg.policy is not None:
            self.load_policy(Path(cfg.policy))
        self.action_counts = np.zeros(self.K, np.int64)  # N(a) over the learning phase
        self.decisions = 0  # d
        self.current: int | None = None
        self.previous: tuple[np.ndarray, int] | None = None  # (S, a) awaiting its reward
        self.episode = 0
        self.last_reward: float | None = None
        self.episode_return = 0.0
        self.last_q: np.ndarray | None = None

    # --- phases -------------------------------------------------------------------------------
    def learning_plan(self) -> tuple[int, int] | None:
        if not self.learning:
            return None
        return self.cfg.episodes, self.episode_steps

    @property
    def total_decisions(self) -> int:
        episodes, steps = self.learning_plan() or (1, self.episode_steps)
        return episodes * math.ceil(steps / self.cfg.decision_every)

    def begin_episode(self, episode: int) -> None:
        self.episode = episode
        self.current, self.previous = None, None
        self.episode_return = 0.0

    def end_learning(self, run_dir: Path) -> None:
        self.learning = False
        self.current, self.previous = None, None
        self.dqn.replay = ReplayBuffer(1, self.K * self.cfg.n_bins)  # free the memory
        self.save_policy(run_dir / "policy.pt")

    def tau(self) -> float:
        """The exploration temperature at the current decision count (§6.3.5)."""
        c = self.cfg
        return temperature(self.decisions, self.total_decisions, c.tau0, c.tau_min,
                           c.anneal_fraction)  # fmt: skip

    def learning_status(self) -> str:
        tau = self.tau()
        reward = "-" if self.last_reward is None else f"{self.last_reward:.3f}"
        return f"episode {self.episode + 1} τ {tau:.3g} reward {reward}"

    # --- decisions ------------------------------------------------------------------------------
    def next_task(self, t: int) -> int:
        if self.current is None:  # before H_k is fixed (first episode): uniform random tasks
            return int(self.rng.integers(self.K))
        return self.current

    def task_distribution(self, t: int) -> np.ndarray:
        if self.current is None:
            return np.full(self.K, 1.0 / self.K)
        return np.eye(self.K)[self.current]

    def wants_signals(self, t: int) -> SignalRequest | None:
        """Learning: every D steps of an episode and at its end (the last reward). Running:
        every D steps, state only (no reward needed). Before H_k is fixed (first episode,
        state_subset=hard): once, at hard_after_steps, over the whole dev sets."""
        cfg = self.cfg
        if self.hard is None and cfg.state_subset == "hard":
            if t != cfg.hard_after_steps:
                return None
            return SignalRequest(outputs={k: None for k in range(self.K)})
        if self.learning:
            if t > self.episode_steps or (t % cfg.decision_every and t != self.episode_steps):
                return None
        elif t % cfg.decision_every or t >= self.total_steps:
            return None
        rows = self.hard if cfg.state_subset == "hard" else [None] * self.K
        scores = self._reward_request() if self.learning and self.previous is not None else {}
        return SignalRequest(outputs=dict(enumerate(rows)), scores=scores)

    def _reward_request(self) -> dict[int, np.ndarray | None]:
        if self.cfg.reward_examples is None:
            return {k: None for k in range(self.K)}
        if self.reward_rows is None:  # a fixed random subset per task, drawn once
            self.reward_rows = [
                np.sort(self.rng.permutation(t.n_dev)[: self.cfg.reward_examples])
                for t in self.tasks
            ]
        return dict(enumerate(self.reward_rows))

    def observe_signals(self, t: int, signals: Signals) -> None:
        if self.hard is None and self.cfg.state_subset == "hard":
            self.hard = [self._hardest(signals, k) for k in range(self.K)]
            log.info("qls: H_k fixed at step %d of episode %d (%d examples per task)", t,
                     self.episode + 1, len(self.hard[0]))  # fmt: skip
        state = self.state_vector(signals)
        if not self.learning:
            self.last_q = self.dqn.values(state)
            self.current = int(np.argmax(self.last_q))  # greedy, ties to the lowest index
            return
        done = t >= self.episode_steps
        stored = self.previous is not None
        if stored:
            reward = self.reward(signals, t)
            if not math.isfinite(reward):  # §6.3.9: a diverged MTL model
                reward, done = self.cfg.punishment, True
            self.last_reward = reward
            self.episode_return += reward
            prev_state, prev_action = self.previous
            self.dqn.replay.add(prev_state, prev_action, reward, state, prev_action, done)
        sarsa = self.cfg.target == "sarsa"
        if stored and not sarsa:  # §6.3.8 order: update, then choose with the updated Q
            self.dqn.update(self.rng)
        self.current = None if done else self.explore(state)
        if stored and sarsa:  # SARSA's target needs the action taken in S' first
            if self.current is not None:
                self.dqn.replay.set_next_action(self.current)
            self.dqn.update(self.rng)
        self.previous = None if done else (state, self.current)

    def explore(self, state: np.ndarray) -> int:
        """Boltzmann–Gumbel exploration on (z-scored) Q-values, τ annealed over decisions."""
        cfg = self.cfg
        q = self.dqn.values(state)
        self.last_q = q
        q = zscore(q) if cfg.q_normalization == "zscore" else q
        index = bge_index(q, self.action_counts, self.rng.gumbel(size=self.K), self.tau(),
                          cfg.bge_c)  # fmt: skip
        action = int(np.argmax(index))
        self.action_counts[action] += 1
        self.decisions += 1
        return action

    # --- state and reward ---------------------------------------------------------------------
    def _zeta(self, probs: np.ndarray) -> np.ndarray:
        return row_uncertainty(probs, self.cfg.uncertainty)

    def _hardest(self, signals: Signals, k: int) -> np.ndarray:
        """H_k: the n_h dev examples with the largest uncertainty (tagging: mean over tokens)."""
        out = signals.outputs[k]
        zeta = self._zeta(out.probs)
        examples, inverse = np.unique(out.example, return_inverse=True)
        per_example = np.bincount(inverse, zeta) / np.bincount(inverse)
        order = np.argsort(-per_example, kind="stable")  # ties: the lower index first
        return np.sort(examples[order[: self.cfg.hard_examples]])

    def state_vector(self, signals: Signals) -> np.ndarray:
        """S = concat_k normalised histogram of ζ over H_k's rows (§6.3.2)."""
        parts = []
        for k in range(self.K):
            out = signals.outputs[k]
            probs = out.probs
            if self.hard is not None and self.cfg.state_subset == "hard":
                probs = probs[np.isin(out.example, self.hard[k])]
            parts.append(histogram(self._zeta(probs), self.cfg.n_bins))
        return np.concatenate(parts).astype(np.float32)

    def reward(self, signals: Signals, t: int) -> float:
        """§6.3.3: −Σ_k V_k, or the punishment when the mean score falls below the ratio of the
        baselines' mean (replace, averages) — muted for the first punish_after_steps steps."""
        cfg = self.cfg
        scores = np.array([signals.scores[k] for k in range(self.K)])
        losses = np.array([signals.losses[k] for k in range(self.K)])
        return qls_reward(losses, scores, self.baselines, cfg.punish_ratio, cfg.punishment,
                          active=t >= cfg.punish_after_steps)  # fmt: skip

    # --- policy files -------------------------------------------------------------------------
    def save_policy(self, path: Path) -> None:
        checkpoint.save(path, {
            "format": POLICY_FORMAT,
            "tasks": [t.name for t in self.tasks],
            "settings": self._policy_settings(),
            "hard": self.hard,
            "q": self.dqn.q.state_dict(),
            "decisions": self.decisions,
            "action_counts": self.action_counts.tolist(),
        })  # fmt: skip
        log.info("qls: policy saved to %s", path)

    def _policy_settings(self) -> dict[str, Any]:
        c = self.cfg
        return {"uncertainty": c.uncertainty, "n_bins": c.n_bins, "state_subset": c.state_subset,
                "hard_examples": c.hard_examples, "q_hidden": c.q_hidden,
                "decision_every": c.decision_every}  # fmt: skip

    def load_policy(self, path: Path) -> None:
        if not path.expanduser().is_file():
            raise ConfigError(
                f"scheduler.policy: no file {path}; a qls run saves its policy as "
                "<run dir>/policy.pt"
            )
        saved = checkpoint.load(path.expanduser())
        if not isinstance(saved, dict) or saved.get("format") != POLICY_FORMAT:
            raise ConfigError(f"scheduler.policy: {path} is not a QLS policy file")
        names = [t.name for t in self.tasks]
        if saved["tasks"] != names:
            raise ConfigError(
                f"scheduler.policy: {path} was learned for tasks {saved['tasks']}, this run has "
                f"{names}"
            )
        mismatched = {k: v for k, v in saved["settings"].items()
                      if k != "decision_every" and self._policy_settings()[k] != v}  # fmt: skip
        if mismatched:
            raise ConfigError(
                f"scheduler.policy: {path} was learned with "
                + ", ".join(f"scheduler.{k}={v}" for k, v in mismatched.items())
                + "; set the same values"
            )
        if saved["hard"] is not None:
            too_big = [n for n, h, t in zip(names, saved["hard"], self.tasks, strict=True)
                       if len(h) and h.max() >= t.n_dev]  # fmt: skip
            if too_big:
                raise ConfigError(
                    f"scheduler.policy: {path} indexes dev examples that tasks "
                    f"{too_big} do not have: was it learned on other data?"
                )
        self.hard = saved["hard"]
        self.dqn.q.load_state_dict(saved["q"])
        self.learning = False
        log.info("qls: running the saved policy %s (no learning phase)", path)

    # --- logging and checkpoints ----------------------------------------------------------------
    def log_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"action": self.current, "decisions": self.decisions}
        if self.last_q is not None:
            state["q"] = [round(float(v), 4) for v in self.last_q]
        if self.dqn.last_loss is not None:
            state["dqn_loss"] = self.dqn.last_loss
        return state

    def extra_state(self) -> dict[str, Any]:
        return {
            "dqn": self.dqn.state_dict(with_replay=self.learning),
            "hard": self.hard,
            "reward_rows": self.reward_rows,
            "learning": self.learning,
            "action_counts": self.action_counts.copy(),
            "decisions": self.decisions,
            "current": self.current,
            "previous": self.previous,
            "episode": self.episode,
            "last_reward": self.last_reward,
            "episode_return": self.episode_return,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.dqn.load_state_dict(state["dqn"])
        for key in ("hard", "reward_rows", "learning", "action_counts", "decisions", "current",
                    "previous", "episode", "last_reward", "episode_return"):  # fmt: skip
            setattr(self, key, state[key])


def qls_reward(
    losses: np.ndarray, scores: np.ndarray, baselines: np.ndarray | None, ratio: float,
    punishment: float, active: bool = True,
) -> float:  # fmt: skip
    """§6.3.3: punishment if mean(scores) < ratio · mean(baselines), else −Σ losses."""
    if active and baselines is not None and scores.mean() < ratio * baselines.mean():
        return float(punishment)
    return float(-losses.sum())
