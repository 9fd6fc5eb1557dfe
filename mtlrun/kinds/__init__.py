"""Task kinds (classification, pairs, tagging, seq2seq): one module per kind owns its head, its
batches and its scoring; see `base.TaskKind`. Importing this package registers them all."""

from mtlrun.kinds import classification, seq2seq, tagging  # noqa: F401  (each registers its kind)
from mtlrun.kinds.base import KINDS, HeadContext, TaskKind, kind_of

__all__ = ["KINDS", "HeadContext", "TaskKind", "kind_of"]
