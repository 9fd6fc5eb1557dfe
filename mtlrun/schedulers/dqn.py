"""The deep Q-network behind QLS (docs/learned_schedulers.md): Q-functions, a uniform replay
buffer with n-step returns, the TD target (DQN, Double DQN, SARSA), a target network, running
normalisers for states and rewards, Boltzmann–Gumbel exploration and Q diagnostics.

Everything runs on the CPU in float32 with its own generators, so it never touches the MTL
model's device or the global RNGs."""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


def td_target(
    reward: np.ndarray, next_q: np.ndarray, done: np.ndarray, discount: float | np.ndarray
) -> np.ndarray:
    """y = r if done else r + discount · next_q. `discount` is γ for one-step transitions and
    γ^m for an m-step return; next_q is max_a' Q_target(S', a') (DQN), Q_target(S', argmax_a'
    Q(S', a')) (Double DQN) or Q_target(S', a_{t+1}) (SARSA)."""
    return np.where(done, reward, reward + discount * next_q)


def temperature(d: int, total: int, tau0: float, tau_min: float, anneal: float) -> float:
    """τ_d = τ0 · (τ_min/τ0)^min(1, d / (anneal · D_total))."""
    frac = min(1.0, d / max(anneal * total, 1e-12))
    return tau0 * (tau_min / tau0) ** frac


def zscore(q: np.ndarray) -> np.ndarray:
    """Q̃ = (Q − mean Q) / (std Q + 1e-6) (population std)."""
    return (q - q.mean()) / (q.std() + 1e-6)


def bge_index(
    q: np.ndarray, counts: np.ndarray, gumbel: np.ndarray, tau: float, c: float = 1.0
) -> np.ndarray:
    """index_a = Q(S,a) + τ · sqrt(C² / max(1, N(a))) · Z_a; act = argmax (lowest index on
    ties). Pass the z-scored Q for q_normalization=zscore."""
    return q + tau * np.sqrt(c**2 / np.maximum(1, counts)) * gumbel


# --- Q-functions -------------------------------------------------------------------------------
class QNetwork(nn.Module):
    """The paper's flat MLP: state (n_b·K) → hidden → ReLU → hidden → ReLU → K outputs, PyTorch
    default init. Each output has its own last-layer weights, so a transition teaches only the
    action it took about that action's value."""

    def __init__(self, n_bins: int, num_actions: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_bins * num_actions, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, num_actions),
        )  # fmt: skip

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)


class EquivariantQNetwork(nn.Module):
    """One small network shared by all tasks: Q(S, a) scores task a from its own histogram h_a
    and the mean of the other tasks' encodings, so every transition trains the scorer used for
    every action. Dueling form, with one learned vector per task:

        e_k = φ(h_k)                                    per-task encoder (n_b → hidden → hidden)
        o_a = mean_{j≠a} e_j                            the others, pooled
        A_a = w · relu(W [e_a; o_a] + b + t_a) + c      t_a: task a's vector (starts at 0)
        V   = ν(mean_k e_k)
        Q(S, a) = V + A_a − mean_k A_k

    The state value V carries the (large, shared) return; the advantages carry what differs
    between tasks, which is all a policy needs. The task vectors t_a are the only per-task
    parameters: they let a task that is worse in every state (random labels) be learned as
    such. While they are equal (at the start), relabelling the tasks permutes the outputs."""

    def __init__(self, n_bins: int, num_actions: int, hidden: int) -> None:
        super().__init__()
        self.K, self.n_bins = num_actions, n_bins
        self.encode = nn.Sequential(
            nn.Linear(n_bins, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.advantage_in = nn.Linear(2 * hidden, hidden)
        self.task = nn.Parameter(torch.zeros(num_actions, hidden))
        self.advantage_out = nn.Sequential(nn.ReLU(), nn.Linear(hidden, 1))
        self.value = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        e = self.encode(state.view(-1, self.K, self.n_bins))  # [B, K, H]
        total = e.sum(1, keepdim=True)
        others = (total - e) / max(self.K - 1, 1)
        hidden = self.advantage_in(torch.cat([e, others], dim=-1)) + self.task
        a = self.advantage_out(hidden).squeeze(-1)  # [B, K]
        return self.value(total[:, 0] / self.K) + a - a.mean(1, keepdim=True)


Q_NETWORKS = {"flat": QNetwork, "equivariant": EquivariantQNetwork}


# --- running statistics ------------------------------------------------------------------------
class RunningNorm:
    """Running mean and variance (Welford) of scalars or vectors; `normalise` z-scores with the
    statistics so far (variance floored, so a constant feature maps to 0, not to inf)."""

    def __init__(self, size: int = 1) -> None:
        self.count = 0
        self.mean = np.zeros(size)
        self.m2 = np.zeros(size)

    def add(self, x: np.ndarray | float) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(self.mean.shape)
        self.count += 1
        delta = x - self.mean
        self.mean = self.mean + delta / self.count
        self.m2 = self.m2 + delta * (x - self.mean)

    @property
    def std(self) -> np.ndarray:
        var = self.m2 / self.count if self.count > 1 else np.ones_like(self.m2)
        return np.sqrt(np.maximum(var, 1e-8))

    def normalise(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean.copy(), "m2": self.m2.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.m2 = state["count"], state["mean"].copy(), state["m2"].copy()


# --- replay --------------------------------------------------------------------------------------
class ReplayBuffer:
    """The most recent `capacity` transitions (S, a, G, S', a', done, m), sampled uniformly; G is
    the (m-step discounted) reward and m the number of rewards it sums."""

    FIELDS = ("states", "next_states", "actions", "next_actions", "rewards", "done", "steps")

    def __init__(self, capacity: int, state_size: int) -> None:
        self.capacity = capacity
        self.states = np.zeros((capacity, state_size), np.float32)
        self.next_states = np.zeros((capacity, state_size), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.next_actions = np.zeros(capacity, np.int64)  # for the SARSA target
        self.rewards = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, bool)
        self.steps = np.ones(capacity, np.int64)
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(self, s, a: int, r: float, s_next, a_next: int, done: bool, steps: int = 1) -> None:
        i = self.cursor
        self.states[i], self.actions[i], self.rewards[i] = s, a, r
        self.next_states[i], self.next_actions[i], self.done[i] = s_next, a_next, done
        self.steps[i] = steps
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def set_next_action(self, a_next: int) -> None:
        """SARSA needs the action taken in S', known only at the next decision."""
        self.next_actions[(self.cursor - 1) % self.capacity] = a_next

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.size, size=n)

    def recent_states(self, n: int) -> np.ndarray:
        """The states of the last n transitions stored (for diagnostics)."""
        n = min(n, self.size)
        return self.states[(self.cursor - 1 - np.arange(n)) % self.capacity]

    def state_dict(self) -> dict[str, Any]:
        n = self.size  # only the filled part: a checkpoint of a young buffer stays small
        return {"capacity": self.capacity, "size": n, "cursor": self.cursor,
                **{f: getattr(self, f)[:n].copy() for f in self.FIELDS}}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size, self.cursor = state["size"], state["cursor"]
        for f in self.FIELDS:
            if f in state:  # `steps` is absent from files written before n-step returns
                getattr(self, f)[: self.size] = state[f]


@dataclass
class Transition:
    state: np.ndarray
    action: int
    reward: float  # G: the discounted sum of `steps` rewards
    next_state: np.ndarray
    done: bool
    steps: int


class NStepAccumulator:
    """Turns one actor's one-step transitions into n-step ones (S_t, a_t, Σ_{i<m} γ^i r_{t+i},
    S_{t+m}, done, m): m = n in mid-episode; at the episode's end every pending transition is
    emitted with the rewards it has (m < n) and done = True. n = 1 passes transitions through."""

    def __init__(self, n: int, gamma: float) -> None:
        self.n, self.gamma = n, gamma
        self.pending: deque[list] = deque()  # [state, action, G, m]

    def push(self, s, a: int, r: float, s_next, done: bool) -> list[Transition]:
        self.pending.append([s, a, 0.0, 0])
        for entry in self.pending:
            entry[2] += self.gamma ** entry[3] * r
            entry[3] += 1
        out = []
        while self.pending and (done or self.pending[0][3] == self.n):
            s0, a0, g, m = self.pending.popleft()
            out.append(Transition(s0, a0, g, s_next, done, m))
        return out

    def state_dict(self) -> list:
        return [list(e) for e in self.pending]

    def load_state_dict(self, state: list) -> None:
        self.pending = deque(list(e) for e in state)


# --- the DQN -------------------------------------------------------------------------------------
class DQN:
    """Q_φ with its optimiser, replay buffer, optional hard-synced target network and optional
    running normalisers of the state (inputs) and the reward (targets)."""

    def __init__(self, n_bins: int, num_actions: int, cfg: Any, seed: int) -> None:
        self.cfg = cfg
        network = Q_NETWORKS[cfg.q_network]
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            self.q = network(n_bins, num_actions, cfg.q_hidden)
        self.target = network(n_bins, num_actions, cfg.q_hidden) if cfg.target_sync else None
        if self.target is not None:
            self.target.load_state_dict(self.q.state_dict())
        if cfg.q_optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.q.parameters(), lr=cfg.q_lr)
        else:  # Mnih et al. 2013
            self.optimizer = torch.optim.RMSprop(self.q.parameters(), lr=cfg.q_lr)
        state_size = n_bins * num_actions
        self.replay = ReplayBuffer(cfg.replay_size, state_size)
        self.state_norm = RunningNorm(state_size) if cfg.state_norm else None
        self.reward_norm = RunningNorm() if cfg.reward_norm else None
        self.updates = 0
        self.last_loss: float | None = None
        self.td_rms: float | None = None  # RMS TD error, averaged over recent updates

    def observe(self, state: np.ndarray, reward: float | None) -> None:
        """Feed the running normalisers (learning phase only)."""
        if self.state_norm is not None:
            self.state_norm.add(state)
        if self.reward_norm is not None and reward is not None:
            self.reward_norm.add(reward)

    def _inputs(self, states: np.ndarray) -> torch.Tensor:
        if self.state_norm is not None:
            states = self.state_norm.normalise(states)
        return torch.from_numpy(np.ascontiguousarray(states, dtype=np.float32))

    @torch.no_grad()
    def values(self, state: np.ndarray) -> np.ndarray:
        return self.q(self._inputs(state[None]))[0].numpy()

    def _targets(self, i: np.ndarray) -> np.ndarray:
        """TD targets of the sampled transitions (normalised rewards if reward_norm)."""
        cfg, r = self.cfg, self.replay
        s_next = self._inputs(r.next_states[i])
        with torch.no_grad():  # Mnih 2013 without a target network: Q's current parameters
            q_next = (self.q if self.target is None else self.target)(s_next).numpy()
            rows = np.arange(len(i))
            if cfg.target == "sarsa":
                next_q = q_next[rows, r.next_actions[i]]
            elif cfg.double:  # van Hasselt et al. 2016: the online net picks, the target values
                next_q = q_next[rows, self.q(s_next).numpy().argmax(1)]
            else:
                next_q = q_next.max(axis=1)
        reward = r.rewards[i].astype(np.float64)
        if self.reward_norm is not None:  # z-score each reward: G − μ·Σγ^i, over σ
            g = cfg.gamma
            sums = r.steps[i] if g == 1 else (1 - g ** r.steps[i]) / (1 - g)
            mean, std = float(self.reward_norm.mean[0]), float(self.reward_norm.std[0])
            reward = (reward - mean * sums) / std
        return td_target(reward, next_q, r.done[i], cfg.gamma ** r.steps[i])

    def update(self, rng: np.random.Generator) -> float | None:
        """`updates_per_decision` gradient steps on uniform minibatches (once the buffer holds
        `learning_starts`); returns the last Huber loss."""
        cfg = self.cfg
        if len(self.replay) < max(cfg.learning_starts, 1):
            return None
        for _ in range(cfg.updates_per_decision):
            i = self.replay.sample(cfg.replay_batch, rng)
            y = torch.from_numpy(self._targets(i).astype(np.float32))
            q_sa = self.q(self._inputs(self.replay.states[i]))
            q_sa = q_sa.gather(1, torch.from_numpy(self.replay.actions[i])[:, None])[:, 0]
            loss = nn.functional.smooth_l1_loss(q_sa, y)
            self._track_td_error(float(((q_sa.detach() - y) ** 2).mean()))
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.q.parameters(), cfg.q_grad_clip)
            self.optimizer.step()
            self.updates += 1
            if self.target is not None and self.updates % cfg.target_sync == 0:
                self.target.load_state_dict(self.q.state_dict())
        self.last_loss = loss.item()
        return self.last_loss

    def _track_td_error(self, mse: float) -> None:
        """An exponential average (over ~100 updates) of the squared TD error: how far off
        the Q-values still are, in their own units (the run phase's temperature scale)."""
        previous = mse if self.td_rms is None else self.td_rms**2
        self.td_rms = math.sqrt(0.99 * previous + 0.01 * mse)

    @torch.no_grad()
    def diagnostics(self, states: np.ndarray) -> dict[str, float]:
        """How much Q depends on the action and on the state, over a set of states: the mean
        (over states) of max_a Q − min_a Q, the mean (over actions) of the std of Q across
        states, and how many distinct greedy actions those states have. A policy whose Q
        varies across actions far more than across states picks the same task everywhere."""
        if len(states) == 0:
            return {}
        q = self.q(self._inputs(states)).numpy()
        return {"q_spread_actions": float((q.max(1) - q.min(1)).mean()),
                "q_spread_states": float(q.std(0).mean()),
                "greedy_actions": int(len(np.unique(q.argmax(1))))}  # fmt: skip

    def norm_state(self) -> dict[str, Any]:
        """What a saved policy needs besides Q's weights: the normalisers and the TD error."""
        return {"state_norm": None if self.state_norm is None else self.state_norm.state_dict(),
                "reward_norm": None if self.reward_norm is None
                else self.reward_norm.state_dict(), "td_rms": self.td_rms}  # fmt: skip

    def load_norm_state(self, state: dict[str, Any]) -> None:
        for name in ("state_norm", "reward_norm"):
            if getattr(self, name) is not None and state.get(name) is not None:
                getattr(self, name).load_state_dict(state[name])
        self.td_rms = state.get("td_rms")

    def state_dict(self, with_replay: bool = True) -> dict[str, Any]:
        """A copy (not views of live tensors, so an in-memory round trip shares nothing)."""
        return copy.deepcopy(
            {
                "q": self.q.state_dict(),
                "target": self.target.state_dict() if self.target is not None else None,
                "optimizer": self.optimizer.state_dict(),
                "replay": self.replay.state_dict() if with_replay else None,
                "updates": self.updates,
                "last_loss": self.last_loss,
                **self.norm_state(),
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        if self.target is not None and state["target"] is not None:
            self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["replay"] is not None:
            self.replay.load_state_dict(state["replay"])
        self.updates, self.last_loss = state["updates"], state["last_loss"]
        self.load_norm_state(state)
