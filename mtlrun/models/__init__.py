"""Models: shared encoders and per-task heads. `build_model` picks the encoder by `model.name`."""

from __future__ import annotations

import torch

from mtlrun.errors import ConfigError
from mtlrun.models.embeddings import build_embedding
from mtlrun.models.lstm import LSTMEncoder
from mtlrun.models.multitask import Batch, MultiTaskModel, Output
from mtlrun.tasks.spec import Task

__all__ = ["Batch", "MultiTaskModel", "Output", "build_model"]


def build_model(cfg, vocab: list[str], tasks: list[Task], seed: int) -> MultiTaskModel:
    torch.manual_seed(seed)  # parameter initialisation depends on the run seed only
    generator = torch.Generator().manual_seed(seed)
    if cfg.name != "lstm":
        raise ConfigError(f"unknown model {cfg.name!r}")
    encoder = LSTMEncoder(build_embedding(vocab, cfg.embeddings, generator), cfg)
    return MultiTaskModel(encoder, [t.kind for t in tasks], [t.num_labels for t in tasks])
