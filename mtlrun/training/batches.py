"""Minibatches: length-bucketed (optionally token-capped), shuffled training streams that resume
exactly; evaluation batches; host-to-device copies. Collation is each task kind's (mtlrun/kinds)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch


def bucketed_epoch(
    lengths: np.ndarray,
    batch_size: int,
    bucket_batches: int,
    rng: np.random.Generator,
    max_tokens: int | None = None,
) -> list[np.ndarray]:
    """One epoch of batches: shuffle, sort pools of `bucket_batches` batches by length (so each
    batch holds similar lengths and little padding), cut into batches, shuffle the batches.

    With `max_tokens`, a batch also holds at most `max_tokens` padded tokens, `len(batch) *
    max(lengths[batch]) <= max_tokens` (as fairseq counts), but at least one example; a pool is
    still `batch_size * bucket_batches` examples and `batch_size` still caps a batch. `lengths`
    are whatever the caller counts per example (source lengths, or max(source, target))."""
    order = rng.permutation(len(lengths))
    pool = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        if max_tokens is None:
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        else:
            batches.extend(_token_cuts(chunk, lengths[chunk], batch_size, max_tokens))
    return [batches[i] for i in rng.permutation(len(batches))]


def _token_cuts(
    chunk: np.ndarray, sorted_lengths: np.ndarray, batch_size: int, max_tokens: int
) -> list[np.ndarray]:
    """Cut `chunk`, sorted by length, greedily into batches of at most `batch_size` examples
    and `max_tokens` padded tokens (at least one example each). Sorted, a batch's padded size
    `k * lengths[i + k - 1]` grows with k, so its largest k is found by binary search."""
    out, i = [], 0
    while i < len(chunk):
        window = sorted_lengths[i : i + batch_size].astype(np.int64)
        padded = np.arange(1, len(window) + 1) * window
        k = max(1, int(np.searchsorted(padded, max_tokens, side="right")))
        out.append(chunk[i : i + k])
        i += k
    return out


def count_batches(
    lengths: np.ndarray, batch_size: int, bucket_batches: int, max_tokens: int | None = None
) -> int:
    """Batches per epoch: exactly ceil(n / batch_size) without `max_tokens`; with it, the count
    of a reference epoch (drawn with seed 0), an estimate, since each epoch draws other pools
    and so may cut a few batches more or fewer."""
    if max_tokens is None:
        return math.ceil(len(lengths) / batch_size)
    rng = np.random.default_rng(0)
    return len(bucketed_epoch(lengths, batch_size, bucket_batches, rng, max_tokens))


class BatchStream:
    """Endless training batches of one task. Its state is the RNG state at the start of the
    current epoch plus a cursor, so a resumed stream regenerates the epoch and continues (built
    with the same lengths, batch_size, bucket_batches and max_tokens). With `max_tokens`,
    batches are capped by padded tokens too (see `bucketed_epoch`)."""

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        bucket_batches: int,
        rng: np.random.Generator,
        max_tokens: int | None = None,
    ) -> None:
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 (got {max_tokens})")
        self.lengths = lengths
        self.batch_size = batch_size
        self.bucket_batches = bucket_batches
        self.rng = rng
        self.max_tokens = max_tokens
        self._n_batches: int | None = None
        self.epoch = -1
        self._epoch_start_state: dict | None = None
        self._batches: list[np.ndarray] = []
        self._cursor = 0
        self._flat: np.ndarray = np.zeros(0, dtype=np.int64)  # MIXED mode: examples in order
        self._position = 0

    @property
    def n_batches(self) -> int:
        """Batches per epoch: exact without `max_tokens`, else an estimate that does not
        change over the stream's life (see `count_batches`); `epoch_batches` is exact."""
        if self._n_batches is None:
            self._n_batches = count_batches(
                self.lengths, self.batch_size, self.bucket_batches, self.max_tokens
            )
        return self._n_batches

    @property
    def epoch_batches(self) -> int:
        """Batches in the current epoch (before the first batch: `n_batches`)."""
        return len(self._batches) if self.epoch >= 0 else self.n_batches

    def next(self) -> np.ndarray:
        if self._cursor == len(self._batches):
            self._start_epoch()
        self._cursor += 1
        return self._batches[self._cursor - 1]

    def take(self, n: int) -> np.ndarray:
        """MIXED mode: the next `n` examples of the epoch order (crossing into the next epoch)."""
        parts = []
        while n > 0:
            if self._position == len(self._flat):
                self._start_epoch()
            part = self._flat[self._position : self._position + n]
            self._position += len(part)
            n -= len(part)
            parts.append(part)
        return np.concatenate(parts) if parts else self._flat[:0]

    def _start_epoch(self) -> None:
        self._epoch_start_state = copy.deepcopy(self.rng.bit_generator.state)
        self._batches = bucketed_epoch(
            self.lengths, self.batch_size, self.bucket_batches, self.rng, self.max_tokens
        )
        self._flat = np.concatenate(self._batches) if self._batches else self._flat[:0]
        self.epoch += 1
        self._cursor = 0
        self._position = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "cursor": self._cursor,
            "position": self._position,
            "rng": self._epoch_start_state or copy.deepcopy(self.rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        if state["epoch"] >= 0:
            self._start_epoch()
            self.epoch = state["epoch"]
            self._cursor = state["cursor"]
            self._position = state["position"]


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches: every example once, longest first (less padding, stable memory)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on `device`; to a GPU from pinned memory without blocking, so the copy
    overlaps the work already queued."""
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
