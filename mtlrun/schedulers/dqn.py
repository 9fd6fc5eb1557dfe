"""The deep Q-network behind QLS (SCHEDULERS.md §6.3.4–6.3.6): an MLP Q-function, a uniform
replay buffer, the TD target, a target network and Boltzmann–Gumbel exploration.

Everything runs on the CPU in float32 with its own generators, so it never touches the MTL
model's device or the global RNGs."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn


def td_target(reward: np.ndarray, next_q: np.ndarray, done: np.ndarray, gamma: float) -> np.ndarray:
    """§6.3.4: y = r if done else r + γ · next_q, where next_q is max_a' Q_target(S', a')
    (DQN) or Q_target(S', a_{t+1}) (SARSA)."""
    return np.where(done, reward, reward + gamma * next_q)


def temperature(d: int, total: int, tau0: float, tau_min: float, anneal: float) -> float:
    """§6.3.5: τ_d = τ0 · (τ_min/τ0)^min(1, d / (anneal · D_total))."""
    frac = min(1.0, d / max(anneal * total, 1e-12))
    return tau0 * (tau_min / tau0) ** frac


def zscore(q: np.ndarray) -> np.ndarray:
    """§6.3.5: Q̃ = (Q − mean Q) / (std Q + 1e-6) (population std)."""
    return (q - q.mean()) / (q.std() + 1e-6)


def bge_index(
    q: np.ndarray, counts: np.ndarray, gumbel: np.ndarray, tau: float, c: float = 1.0
) -> np.ndarray:
    """§6.3.5: index_a = Q(S,a) + τ · sqrt(C² / max(1, N(a))) · Z_a; act = argmax (lowest index
    on ties). Pass the z-scored Q for q_normalization=zscore."""
    return q + tau * np.sqrt(c**2 / np.maximum(1, counts)) * gumbel


class QNetwork(nn.Module):
    """§6.3.6: MLP state (n_b·K) → hidden → ReLU → hidden → ReLU → K, PyTorch default init."""

    def __init__(self, state_size: int, num_actions: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_size, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, num_actions),
        )  # fmt: skip

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)


class ReplayBuffer:
    """The most recent `capacity` transitions (S, a, r, S', a', done), sampled uniformly."""

    def __init__(self, capacity: int, state_size: int) -> None:
        self.capacity = capacity
        self.states = np.zeros((capacity, state_size), np.float32)
        self.next_states = np.zeros((capacity, state_size), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.next_actions = np.zeros(capacity, np.int64)  # for the SARSA target
        self.rewards = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, bool)
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(self, s, a: int, r: float, s_next, a_next: int, done: bool) -> None:
        i = self.cursor
        self.states[i], self.actions[i], self.rewards[i] = s, a, r
        self.next_states[i], self.next_actions[i], self.done[i] = s_next, a_next, done
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def set_next_action(self, a_next: int) -> None:
        """SARSA needs the action taken in S', known only at the next decision."""
        self.next_actions[(self.cursor - 1) % self.capacity] = a_next

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.size, size=n)

    def state_dict(self) -> dict[str, Any]:
        n = self.size  # only the filled part: a checkpoint of a young buffer stays small
        return {"capacity": self.capacity, "size": n, "cursor": self.cursor,
                **{f: getattr(self, f)[:n].copy() for f in self.FIELDS}}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size, self.cursor = state["size"], state["cursor"]
        for f in self.FIELDS:
            getattr(self, f)[: self.size] = state[f]

    FIELDS = ("states", "next_states", "actions", "next_actions", "rewards", "done")


class DQN:
    """Q_φ with its optimiser, replay buffer and (optionally) a hard-synced target network."""

    def __init__(self, state_size: int, num_actions: int, cfg: Any, seed: int) -> None:
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            self.q = QNetwork(state_size, num_actions, cfg.q_hidden)
        self.target = QNetwork(state_size, num_actions, cfg.q_hidden) if cfg.target_sync else None
        if self.target is not None:
            self.target.load_state_dict(self.q.state_dict())
        if cfg.q_optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.q.parameters(), lr=cfg.q_lr)
        else:  # Mnih et al. 2013
            self.optimizer = torch.optim.RMSprop(self.q.parameters(), lr=cfg.q_lr)
        self.replay = ReplayBuffer(cfg.replay_size, state_size)
        self.updates = 0
        self.last_loss: float | None = None

    @torch.no_grad()
    def values(self, state: np.ndarray) -> np.ndarray:
        return self.q(torch.from_numpy(state.astype(np.float32))[None])[0].numpy()

    def update(self, rng: np.random.Generator) -> float | None:
        """One gradient step on a uniform minibatch (once the buffer holds `learning_starts`)."""
        cfg = self.cfg
        if len(self.replay) < max(cfg.learning_starts, 1):
            return None
        i = self.replay.sample(cfg.replay_batch, rng)
        r = self.replay
        s, s_next = torch.from_numpy(r.states[i]), torch.from_numpy(r.next_states[i])
        with torch.no_grad():  # Mnih 2013 without a target network: Q's current parameters
            q_next = (self.q if self.target is None else self.target)(s_next).numpy()
        if cfg.target == "sarsa":
            next_q = q_next[np.arange(len(i)), r.next_actions[i]]
        else:
            next_q = q_next.max(axis=1)
        y = td_target(r.rewards[i], next_q, r.done[i], cfg.gamma)
        q_sa = self.q(s).gather(1, torch.from_numpy(r.actions[i])[:, None])[:, 0]
        loss = nn.functional.smooth_l1_loss(q_sa, torch.from_numpy(y.astype(np.float32)))
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), cfg.q_grad_clip)
        self.optimizer.step()
        self.updates += 1
        if self.target is not None and self.updates % cfg.target_sync == 0:
            self.target.load_state_dict(self.q.state_dict())
        self.last_loss = loss.item()
        return self.last_loss

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
