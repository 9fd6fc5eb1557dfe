"""`qls`: the Q-Learning Scheduler of the QLS paper (docs/learned_schedulers.md).

A deep Q-network picks the task of the next D training steps from the state
S = concat_k histogram(ζ(x) for x in H_k) — the model's per-task uncertainty (margin by
default) over a fixed set H_k of hard dev examples, n_b bins per task. It learns before the
run, over episodes that each train a freshly initialised MTL model for `episode_steps` steps:

    every D steps:  r = −Σ_k V_k  (mean dev cross-entropy per task), or a punishment when
                    mean_k s_k < 0.95 · mean_k s*_k (single-task baselines, if given)
                    store (S, a, r, S', done = last decision of the episode) (n-step: the
                    discounted sum of n rewards and S_{t+n}) in the replay buffer,
                    DQN steps on y = r + γ^n max_a' Q_target(S', a')  (Huber loss)
                    a' = argmax_a  Q̃(S', a) + τ_d · sqrt(C² / max(1, N(a))) · Z_a   (BGE)

and then runs the policy: greedy a = argmax_a Q(S, a) (the paper), or a draw from
softmax(Q / (run_tau · σ_TD)) (`run_policy=boltzmann`). Parallel learning episodes are actors that
share the DQN (`use_actor`). `scheduler.policy=<policy.pt>` skips learning and reuses a saved
policy (Q-network, normalisers and H_k). The presets are `qls` (practical: finishes on a laptop
CPU) and `qls_faithful` (the paper's 1M steps with a reset every 10K, D = 1).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlrun.errors import ConfigError, MtlrunError
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
)
from mtlrun.schedulers.baselines import check_baselines_value, load_baselines
from mtlrun.schedulers.dqn import (
    DQN,
    Q_NETWORKS,
    NStepAccumulator,
    ReplayBuffer,
    bge_index,
    temperature,
    zscore,
)
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
    paper's budget and choices. Provenance of each key is in the yaml files."""

    name: str = "qls"
    policy: str | None = None  # a saved policy.pt: skip learning, run it
    # learning budget
    episodes: int = 3  # MTL resets in the learning phase (T_total / T_reset); paper 100
    episode_steps: int | None = None  # steps between MTL resets (T_reset); null = max_steps
    decision_every: int = 10  # D: training steps per decision; paper 1
    parallel_episodes: int = 1  # N episodes trained at once (replicated models, one buffer)
    # state
    uncertainty: str = "margin"  # margin | least_conf | entropy
    n_bins: int = 20
    state_subset: str = "hard"  # hard (n_h hardest dev examples, fixed) | all
    hard_examples: int = 16  # n_h (qls_faithful: 128)
    hard_after_steps: int | None = None  # H_k fixed after these steps of episode 1; null = T/8
    state_norm: bool = False  # z-score state features with running statistics
    # reward
    reward_examples: int | None = 32  # dev examples per task for V_k and s_k; null = all
    punishment: float = -10.0  # the paper's fixed punishment (punishment_mode=fixed)
    punishment_mode: str = "scaled"  # fixed: r = punishment | scaled: r minus its own scale
    punish_ratio: float = 0.95
    punish_after_steps: int = 0  # mute the punishment for the first steps of every episode
    # loss: r = −Σ_k V_k (paper) | improvement: Σ_k V_k(t−1) − Σ_k V_k(t) | score: r = Σ_k s_k
    reward: str = "score"
    reward_norm: bool = True  # z-score rewards with running statistics
    # DQN
    gamma: float = 0.99
    target: str = "dqn"  # dqn (max over a') | sarsa (the next action taken)
    double: bool = True  # Double DQN: the online network picks a', the target values it
    n_step: int = 3  # n-step returns
    q_network: str = "equivariant"  # equivariant (one scorer for all tasks) | flat (the paper's)
    q_hidden: int = 64
    q_optimizer: str = "adam"  # adam | rmsprop (Mnih et al. 2013)
    q_lr: float = 1e-3
    q_grad_clip: float = 10.0
    replay_size: int = 100_000
    replay_batch: int = 32
    learning_starts: int = 32  # transitions in the buffer before the first update
    updates_per_decision: int = 4  # gradient steps per stored transition
    target_sync: int = 25  # gradient steps between hard target copies; 0 = no target network
    # exploration (learning) and the run phase
    q_normalization: str = "zscore"  # zscore | none
    tau0: float = 10.0
    tau_min: float = 0.01
    anneal_fraction: float = 0.8
    bge_c: float = 1.0
    run_policy: str = "boltzmann"  # sample softmax(Q / (τ_r · σ_TD)) | greedy (paper)
    run_tau: float = 3.0  # τ_r, in units of the Q-function's RMS TD error σ_TD

    def __post_init__(self) -> None:
        check_baselines_value(self.baselines)
        _choice("uncertainty", self.uncertainty, ("margin", "least_conf", "entropy"))
        _choice("state_subset", self.state_subset, ("hard", "all"))
        _choice("target", self.target, ("dqn", "sarsa"))
        _choice("q_optimizer", self.q_optimizer, ("adam", "rmsprop"))
        _choice("q_normalization", self.q_normalization, ("zscore", "none"))
        _choice("q_network", self.q_network, tuple(Q_NETWORKS))
        _choice("punishment_mode", self.punishment_mode, ("fixed", "scaled"))
        _choice("run_policy", self.run_policy, ("greedy", "boltzmann"))
        _choice("reward", self.reward, ("loss", "improvement", "score"))
        positive = ("episodes", "decision_every", "parallel_episodes", "n_bins", "hard_examples",
                    "q_hidden", "q_lr", "q_grad_clip", "replay_size", "replay_batch", "tau0",
                    "tau_min", "anneal_fraction", "n_step", "updates_per_decision",
                    "run_tau")  # fmt: skip
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
            if (getattr(self, key) or 0) < 0:
                raise ConfigError(f"scheduler.{key} must be >= 0 (got {getattr(self, key)})")
        if self.target == "sarsa" and (self.n_step > 1 or self.double):
            raise ConfigError(
                "scheduler.target=sarsa takes the next action actually taken: it combines with "
                "neither scheduler.n_step > 1 nor scheduler.double=true"
            )


@dataclass
class Actor:
    """One learning episode in progress (the run phase is actor 0): the task in force, the
    (S, a) awaiting its reward, the return so far and the pending n-step transitions."""

    episode: int
    nstep: NStepAccumulator
    current: int | None = None
    previous: tuple[np.ndarray, int] | None = None
    episode_return: float = 0.0
    last_reward: float | None = None
    last_loss: float | None = None  # Σ_k V_k at the last decision (the improvement reward)

    def state_dict(self) -> dict[str, Any]:
        return {"episode": self.episode, "current": self.current, "previous": self.previous,
                "episode_return": self.episode_return, "last_reward": self.last_reward,
                "last_loss": self.last_loss,
                "nstep": self.nstep.state_dict()}  # fmt: skip


DIAGNOSTIC_STATES = 256  # recent states over which the Q spreads are measured


@register
class QLS(Scheduler):
    name = "qls"
    Config = QLSConfig
    category = Category.POLICY
    step_modes = (StepMode.SINGLE,)
    learned = True

    def __init__(
        self, cfg: QLSConfig, tasks: list[TaskInfo], total_steps: int, rng: np.random.Generator
    ) -> None:
        super().__init__(cfg, tasks, total_steps, rng)
        self.episode_steps = cfg.episode_steps or total_steps
        self.hard_after = cfg.hard_after_steps
        if self.hard_after is None:  # an eighth of the first episode: past the first shock
            self.hard_after = self.episode_steps // 8
        learns = cfg.policy is None  # a saved policy brings its own H_k
        if learns and cfg.state_subset == "hard" and self.hard_after >= self.episode_steps:
            raise ConfigError(
                f"scheduler.hard_after_steps={self.hard_after} must be < the episode length "
                f"{self.episode_steps}: H_k is fixed during the first episode; lower it, or "
                "raise scheduler.episode_steps (or trainer.max_steps, its default)"
            )
        for t in tasks:
            if t.num_labels < 2 and cfg.uncertainty == "margin":
                raise ConfigError(f"qls: task {t.name} has one class; the margin needs two")
        self.baselines = None
        if cfg.baselines is not None:
            self.baselines = np.asarray(load_baselines(cfg.baselines, [t.name for t in tasks]))
        elif cfg.policy is None:
            log.warning("qls: no scheduler.baselines, so the punishment is off")
        # the loss of a chance-level model, Σ_k ln C_k: the scale of the scaled punishment
        self.chance_loss = float(sum(math.log(max(t.num_labels, 2)) for t in tasks))
        self.dqn = DQN(cfg.n_bins, self.K, cfg, seed=int(rng.integers(2**31)))
        # the run phase draws from its own generator, so it depends on the policy and the seed
        # only: learning then running equals running the saved policy
        self.run_seed = int(rng.integers(2**63))
        self.hard: list[np.ndarray] | None = None  # H_k (dev example indices)
        self.reward_rows: list[np.ndarray] | None = None  # R_k, fixed once drawn
        self.learning = cfg.policy is None
        if cfg.policy is not None:
            self.load_policy(Path(cfg.policy))
        self.action_counts = np.zeros(self.K, np.int64)  # N(a) over the learning phase
        self.decisions = 0  # d
        self.actors = [self._actor(0)]
        self.actor = 0  # the actor the step-level calls address
        self.run_probs: np.ndarray | None = None  # the run phase's current π(·|S) (boltzmann)
        self.last_q: np.ndarray | None = None
        self.recent = deque(maxlen=DIAGNOSTIC_STATES)  # run-phase states, for diagnostics

    def _actor(self, episode: int) -> Actor:
        return Actor(episode, NStepAccumulator(self.cfg.n_step, self.cfg.gamma))

    # --- the actor in force (one per parallel learning episode; the run phase is actor 0) -----
    def use_actor(self, i: int) -> None:
        self.actor = i

    @property
    def _a(self) -> Actor:
        return self.actors[self.actor]

    @property
    def current(self) -> int | None:
        return self._a.current

    @property
    def previous(self) -> tuple[np.ndarray, int] | None:
        return self._a.previous

    @property
    def episode(self) -> int:
        return self._a.episode

    @property
    def last_reward(self) -> float | None:
        return self._a.last_reward

    @property
    def episode_return(self) -> float:
        return self._a.episode_return

    @property
    def decision_interval(self) -> int:
        """Steps per decision: D, except in a Boltzmann run phase, which draws every step."""
        return 1 if self._sampling() else self.cfg.decision_every

    def _sampling(self) -> bool:
        """A Boltzmann run phase: each step's task is drawn from π(·|S) of the last state."""
        return not self.learning and self.run_probs is not None

    # --- phases -------------------------------------------------------------------------------
    def learning_plan(self) -> tuple[int, int] | None:
        if not self.learning:
            return None
        return self.cfg.episodes, self.episode_steps

    @property
    def total_decisions(self) -> int:
        episodes, steps = self.learning_plan() or (1, self.episode_steps)
        return episodes * math.ceil(steps / self.cfg.decision_every)

    def begin_episodes(self, first: int, n: int) -> None:
        """Episodes first … first+n−1 start, one actor each (fresh models, fresh optimizers)."""
        self.actors = [self._actor(first + i) for i in range(n)]
        self.actor = 0

    def begin_episode(self, episode: int) -> None:
        self.begin_episodes(episode, 1)

    def end_learning(self, run_dir: Path) -> None:
        self.learning = False
        self.actors, self.actor = [self._actor(0)], 0
        self.learn_diagnostics = self.dqn.diagnostics(
            self.dqn.replay.recent_states(DIAGNOSTIC_STATES)
        )
        self.dqn.replay = ReplayBuffer(1, self.K * self.cfg.n_bins)  # free the memory
        self.rng = np.random.default_rng(self.run_seed)
        self.save_policy(run_dir / "policy.pt")
        verdict = learning_verdict(self.learn_diagnostics, self.dqn.td_rms, self.cfg.run_policy)
        if verdict:
            log.warning("qls: %s", verdict)

    def tau(self) -> float:
        """The exploration temperature at the current decision count."""
        c = self.cfg
        return temperature(self.decisions, self.total_decisions, c.tau0, c.tau_min,
                           c.anneal_fraction)  # fmt: skip

    def learning_status(self) -> str:
        reward = "-" if self.last_reward is None else f"{self.last_reward:.3f}"
        loss = "-" if self.dqn.last_loss is None else f"{self.dqn.last_loss:.3g}"
        return (f"episode {self.episode + 1} τ {self.tau():.3g} reward {reward} "
                f"td-loss {loss} replay {len(self.dqn.replay)}")  # fmt: skip

    # --- decisions ------------------------------------------------------------------------------
    def next_task(self, t: int) -> int:
        if self.current is None:  # before H_k is fixed (first episode): uniform random tasks
            return int(self.rng.integers(self.K))
        if self._sampling():  # [D] a draw per step: no D-step blocks of one task
            return int(inverse_cdf(np.cumsum(self.run_probs), self.rng.random()))
        return self.current

    def task_distribution(self, t: int) -> np.ndarray:
        if self.current is None:
            return np.full(self.K, 1.0 / self.K)
        if not self.learning and self.run_probs is not None:
            return self.run_probs.copy()
        return np.eye(self.K)[self.current]

    def wants_signals(self, t: int) -> SignalRequest | None:
        """Learning: every D steps of an episode and at its end (the last reward). Running:
        every D steps, state only (no reward needed). Before H_k is fixed (first episode,
        state_subset=hard): once, at hard_after_steps, over the whole dev sets."""
        cfg = self.cfg
        if self.hard is None and cfg.state_subset == "hard":
            if t != self.hard_after:
                return None
            return SignalRequest(outputs={k: None for k in range(self.K)})
        if self.learning:
            if t > self.episode_steps or (t % cfg.decision_every and t != self.episode_steps):
                return None
        elif t % cfg.decision_every or t >= self.total_steps:
            return None
        rows = self.hard if cfg.state_subset == "hard" else [None] * self.K
        # the improvement reward also needs the loss at an episode's first decision
        needs_reward = self.previous is not None or self.cfg.reward == "improvement"
        scores = self._reward_request() if self.learning and needs_reward else {}
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
        if self.learning:
            self._learn_step(t, state, signals)
        else:
            self._run_step(state)

    def _run_step(self, state: np.ndarray) -> None:
        """The run phase: the greedy action for the next D steps (paper), or the Boltzmann
        policy π(·|S), from which every step until the next decision draws its task."""
        self.recent.append(state)
        q = self.dqn.values(state)
        self.last_q = q
        if self.cfg.run_policy == "greedy":
            self._a.current = int(np.argmax(q))  # ties to the lowest index
            return
        self.run_probs = run_distribution(q, self.dqn.td_rms, self.cfg.run_tau)
        self._a.current = int(np.argmax(self.run_probs))  # the mode, for the log

    def _learn_step(self, t: int, state: np.ndarray, signals: Signals) -> None:
        """Store the previous decision's transition (n-step), update the DQN, explore."""
        actor, cfg = self._a, self.cfg
        done = t >= self.episode_steps
        reward = None
        if actor.previous is not None:
            reward = self.reward(signals, t, actor.last_loss)
            finite = all(math.isfinite(v) for v in signals.losses.values())
            if not (finite and math.isfinite(reward)):  # diverged: punished, the episode ends
                reward, done = self._punished(np.full(self.K, math.inf), actor.last_loss), True
            actor.last_reward = reward
            actor.episode_return += reward
        if signals.losses:
            actor.last_loss = float(sum(signals.losses.values()))
        self.dqn.observe(state, reward)
        if actor.previous is not None:
            prev_state, prev_action = actor.previous
            for tr in actor.nstep.push(prev_state, prev_action, reward, state, done):
                self.dqn.replay.add(tr.state, tr.action, tr.reward, tr.next_state, tr.action,
                                    tr.done, tr.steps)  # fmt: skip
        sarsa = cfg.target == "sarsa"
        if actor.previous is not None and not sarsa:  # update, then choose with the updated Q
            self.dqn.update(self.rng)
        actor.current = None if done else self.explore(state)
        if actor.previous is not None and sarsa:  # SARSA's target needs the action taken in S'
            if actor.current is not None:
                self.dqn.replay.set_next_action(actor.current)
            self.dqn.update(self.rng)
        actor.previous = None if done else (state, actor.current)

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

    def reward(self, signals: Signals, t: int, previous_loss: float | None = None) -> float:
        """`loss` [P]: −Σ_k V_k; `improvement` [D]: Σ_k V_k at the previous decision minus
        Σ_k V_k now (what the last D steps gained); `score` [D]: Σ_k s_k, the summed dev
        score (primary metric) — unlike the loss, it does not reward calibrating the head of a
        task that cannot be learned. Each is replaced by the punishment when
        the mean score falls below the ratio of the baselines' mean (averages) — muted for the
        first punish_after_steps steps."""
        cfg = self.cfg
        scores = np.array([signals.scores[k] for k in range(self.K)])
        losses = np.array([signals.losses[k] for k in range(self.K)])
        if (t >= cfg.punish_after_steps and self.baselines is not None
                and scores.mean() < cfg.punish_ratio * self.baselines.mean()):  # fmt: skip
            return self._punished(losses, previous_loss, scores)
        if cfg.reward == "improvement" and previous_loss is not None:
            return float(previous_loss - losses.sum())
        if cfg.reward == "score":
            return float(scores.sum())
        return float(-losses.sum())

    def _punished(
        self, losses: np.ndarray, previous: float | None = None, scores: np.ndarray | None = None
    ) -> float:
        """`fixed` [P]: the paper's constant (−10), which replaces the reward — milder than the
        reward itself whenever Σ_k V_k > 10, e.g. at chance with 16 binary tasks (11.09).
        `scaled` [D]: the reward minus its own scale — a chance-level model's loss Σ_k ln C_k
        for the loss rewards, K (every score at its maximum) for the score reward — so a
        punished decision is always worse than the same decision unpunished, for any K. A
        diverged model (non-finite loss) counts as twice the chance loss, or a score of 0."""
        if self.cfg.punishment_mode == "fixed":
            return float(self.cfg.punishment)
        finite = bool(np.all(np.isfinite(losses)))
        if self.cfg.reward == "score":
            return (float(scores.sum()) if finite and scores is not None else 0.0) - self.K
        loss = float(losses.sum()) if finite else 2 * self.chance_loss
        if self.cfg.reward == "improvement" and previous is not None:
            return previous - loss - self.chance_loss
        return -loss - (self.chance_loss if finite else 0.0)

    # --- policy files -------------------------------------------------------------------------
    def save_policy(self, path: Path) -> None:
        """A `checkpoint` file of format POLICY_FORMAT; H_k as plain index lists, so that
        whoever inspects the file with torch.load sees what they are."""
        hard = None if self.hard is None else [h.tolist() for h in self.hard]
        checkpoint.save(path, {
            "tasks": [t.name for t in self.tasks],
            "settings": self._policy_settings(),
            "hard": hard,
            "q": self.dqn.q.state_dict(),
            "norm": self.dqn.norm_state(),
            "decisions": self.decisions,
            "action_counts": self.action_counts.tolist(),
        }, format=POLICY_FORMAT)  # fmt: skip
        log.info("qls: policy saved to %s", path)

    def _policy_settings(self) -> dict[str, Any]:
        """What a saved policy must share with the run that reuses it."""
        c = self.cfg
        return {"uncertainty": c.uncertainty, "n_bins": c.n_bins, "state_subset": c.state_subset,
                "hard_examples": c.hard_examples, "q_hidden": c.q_hidden,
                "q_network": c.q_network, "state_norm": c.state_norm,
                "decision_every": c.decision_every}  # fmt: skip

    def load_policy(self, path: Path) -> None:
        if not path.expanduser().is_file():
            raise ConfigError(
                f"scheduler.policy: no file {path}; a qls run saves its policy as "
                "<run dir>/policy.pt"
            )
        try:  # never runs code from the file; refuses other files, damaged or too new ones
            saved = checkpoint.load(path.expanduser(), format=POLICY_FORMAT)
        except MtlrunError as e:
            raise ConfigError(f"scheduler.policy: {e}") from None
        names = [t.name for t in self.tasks]
        if saved["tasks"] != names:
            raise ConfigError(
                f"scheduler.policy: {path} was learned for tasks {saved['tasks']}, this run has "
                f"{names}"
            )
        defaults = {"q_network": "flat", "state_norm": False}  # files from before these keys
        settings = {**defaults, **saved["settings"]}
        mismatched = {k: v for k, v in settings.items()
                      if k != "decision_every" and self._policy_settings()[k] != v}  # fmt: skip
        if mismatched:
            raise ConfigError(
                f"scheduler.policy: {path} was learned with "
                + ", ".join(f"scheduler.{k}={v}" for k, v in mismatched.items())
                + "; set the same values"
            )
        hard = saved["hard"]
        if hard is not None:
            hard = [np.asarray(h, dtype=np.int64) for h in hard]
            too_big = [n for n, h, t in zip(names, hard, self.tasks, strict=True)
                       if len(h) and h.max() >= t.n_dev]  # fmt: skip
            if too_big:
                raise ConfigError(
                    f"scheduler.policy: {path} indexes dev examples that tasks "
                    f"{too_big} do not have: was it learned on other data?"
                )
        self.hard = hard
        self.dqn.q.load_state_dict(saved["q"])
        self.dqn.load_norm_state(saved.get("norm", {}))
        self.learning = False
        self.rng = np.random.default_rng(self.run_seed)
        log.info("qls: running the saved policy %s (no learning phase)", path)

    # --- logging and checkpoints ----------------------------------------------------------------
    def log_state(self) -> dict[str, Any]:
        """Logged with every evaluation: the action in force, the Q-values at the last state,
        the DQN's TD loss, replay size and temperature, and how much Q varies across actions
        versus across the recent states (diagnostics of a degenerate policy)."""
        state: dict[str, Any] = {"action": self.current, "decisions": self.decisions,
                                 "tau": self.tau(), "replay": len(self.dqn.replay),
                                 "updates": self.dqn.updates}  # fmt: skip
        if self.last_q is not None:
            state["q"] = [round(float(v), 4) for v in self.last_q]
        if self.dqn.last_loss is not None:
            state["td_loss"] = self.dqn.last_loss
        states = np.asarray(self.recent) if self.recent else np.zeros((0, self.K * self.cfg.n_bins))
        state.update(self.dqn.diagnostics(states))
        if getattr(self, "learn_diagnostics", None):
            state["learned"] = self.learn_diagnostics
        return state

    def extra_state(self) -> dict[str, Any]:
        return {
            "dqn": self.dqn.state_dict(with_replay=self.learning),
            "hard": self.hard,
            "reward_rows": self.reward_rows,
            "learning": self.learning,
            "action_counts": self.action_counts.copy(),
            "decisions": self.decisions,
            "actors": [a.state_dict() for a in self.actors],
            "actor": self.actor,
            "run_probs": self.run_probs,
            "recent": list(self.recent),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.dqn.load_state_dict(state["dqn"])
        for key in ("hard", "reward_rows", "learning", "action_counts", "decisions", "actor",
                    "run_probs"):  # fmt: skip
            setattr(self, key, state[key])
        self.actors = []
        for saved in state["actors"]:
            actor = self._actor(saved["episode"])
            actor.nstep.load_state_dict(saved["nstep"])
            for key in ("current", "previous", "episode_return", "last_reward", "last_loss"):
                setattr(actor, key, saved[key])
            self.actors.append(actor)
        self.recent = deque(state["recent"], maxlen=DIAGNOSTIC_STATES)


def learning_verdict(diag: dict[str, Any], td_rms: float | None, run_policy: str) -> str | None:
    """One line when the learned Q-function cannot give a useful schedule, from its spreads over
    the last states of learning: a greedy policy that picks one task in every state will
    collapse; Q-values that differ across tasks by less than their own TD error carry no
    preference, so a Boltzmann run phase samples nearly uniformly."""
    if not diag:
        return "no Q-update happened while learning: the run phase is untrained"
    budget = "raise scheduler.episodes or use scheduler.parallel_episodes on a GPU"
    if run_policy == "greedy" and diag["greedy_actions"] == 1:
        return (f"the greedy policy picks the same task in all {DIAGNOSTIC_STATES} last states "
                f"of learning (Q spread across tasks {diag['q_spread_actions']:.3g}, across "
                f"states {diag['q_spread_states']:.3g}): expect a collapse onto one task; "
                f"scheduler.run_policy=boltzmann or {budget}")  # fmt: skip
    if td_rms is not None and diag["q_spread_actions"] < td_rms:
        return (f"the Q-values differ across tasks by {diag['q_spread_actions']:.3g}, less than "
                f"their RMS TD error {td_rms:.3g}: the policy has learned no reliable preference "
                f"and {'samples nearly uniformly' if run_policy == 'boltzmann' else 'is noise'}; "
                f"{budget}")  # fmt: skip
    return None


def run_distribution(q: np.ndarray, td_rms: float | None, tau: float) -> np.ndarray:
    """π(a|S) = softmax(Q(S, a) / (τ · σ_TD)) [D]: the temperature is measured in units of the
    Q-function's own RMS TD error σ_TD, so Q-values that differ by less than their error give
    near-uniform sampling and only differences the learning made reliable tilt the schedule.
    No TD error yet (no update happened): uniform."""
    if td_rms is None or not td_rms > 0:
        return np.full(len(q), 1.0 / len(q))
    return softmax(np.asarray(q, dtype=np.float64) / (tau * td_rms))


def qls_reward(
    losses: np.ndarray, scores: np.ndarray, baselines: np.ndarray | None, ratio: float,
    punishment: float, active: bool = True,
) -> float:  # fmt: skip
    """The paper's reward with its fixed punishment: `punishment` if mean(scores) < ratio ·
    mean(baselines), else −Σ losses."""
    if active and baselines is not None and scores.mean() < ratio * baselines.mean():
        return float(punishment)
    return float(-losses.sum())
