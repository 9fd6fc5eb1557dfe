"""Checkpoints, written atomically. `last.pt` holds everything a resumed run needs (model,
optimizer, scheduler, data streams, RNG states, best-so-far); `best.pt` holds the best model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mtlrun.atomic import write_atomic
from mtlrun.errors import MtlrunError


def save(path: Path, state: dict[str, Any]) -> None:
    write_atomic(path, lambda f: torch.save(state, f), mode="wb")


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MtlrunError(
            f"no checkpoint {path}: was the run started with trainer.checkpoints=true?"
        )
    # weights_only=False: the state holds numpy RNG states; these are our own files
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
