"""Models: shared encoders and per-task heads. `build_model` picks the encoder by the `model=`
schema: a word-level (bi)LSTM or Transformer (WORD_ENCODERS, by `model.name`), or a pretrained
Hugging Face encoder."""

from __future__ import annotations

import torch

from mtlrun.models.multitask import Batch, MultiTaskModel, Output
from mtlrun.tasks.spec import Task

__all__ = ["Batch", "MultiTaskModel", "Output", "build_model", "uses_subwords"]


def uses_subwords(cfg) -> bool:
    """Whether the model reads a pretrained subword vocabulary (else a word vocabulary)."""
    from mtlrun.config import BertConfig

    return isinstance(cfg, BertConfig)


def word_encoders() -> dict[str, type]:
    """Encoders over a word vocabulary, by `model.name`: each takes (embedding, cfg)."""
    from mtlrun.models.lstm import LSTMEncoder
    from mtlrun.models.transformer import TransformerEncoder

    return {"lstm": LSTMEncoder, "transformer": TransformerEncoder}


def build_model(cfg, vocab: list[str] | None, tasks: list[Task], seed: int) -> MultiTaskModel:
    torch.manual_seed(seed)  # parameter initialisation depends on the run seed only
    if uses_subwords(cfg):
        from mtlrun.models.bert import BertEncoder

        encoder = BertEncoder(cfg)
    else:
        from mtlrun.models.embeddings import build_embedding

        generator = torch.Generator().manual_seed(seed)
        encoder = word_encoders()[cfg.name](build_embedding(vocab, cfg.embeddings, generator), cfg)
    from mtlrun.kinds import HeadContext, kind_of

    context = HeadContext(vocab_size=len(vocab) if vocab else None)
    heads = [kind_of(t).head(encoder, t, cfg, context) for t in tasks]
    for task, head in zip(tasks, heads, strict=True):
        kind_of(task).finish_head(head, task, cfg)
    return MultiTaskModel(encoder, heads)
