"""Hard parameter sharing: one shared encoder, one head per task, and what a head returns.

Heads know nothing of schedulers; each task kind (mtlrun/kinds) builds its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T], 0 = padding
    lengths: torch.Tensor  # [B]
    labels: torch.Tensor  # [B] (classification) or [B, T] with IGNORE at padding (tagging,
    # and seq2seq, whose T is the output length)
    segments: torch.Tensor | None = None  # [B, T] 0/1: which text of a pair (pair tasks)


@dataclass
class Output:
    """What a task head returns. Losses are per example, or per labelled token for tagging
    (a CRF's sentence NLL is shared out evenly over its tokens) and per output token for
    seq2seq, so their mean is L_k."""

    example_losses: torch.Tensor  # [N]
    example_labels: torch.Tensor  # [N] the gold labels of those examples / tokens
    _log_probs: Callable[[], torch.Tensor]  # [N, C]; lazy: a CRF's marginals cost a pass
    _predict: Callable[[], object]  # [B] or [B, T]; seq2seq: a list of id lists

    @property
    def loss(self) -> torch.Tensor:
        """The task's minibatch loss L_k: the mean over examples (tokens for tagging)."""
        return self.example_losses.mean()

    @cached_property
    def example_log_probs(self) -> torch.Tensor:
        """log p(label) per example / labelled token: softmax, or a CRF's posterior marginals."""
        return self._log_probs()

    def predictions(self):
        """Argmax labels, [B] or [B, T] (Viterbi paths under a CRF); decoded output sequences
        for seq2seq."""
        return self._predict()


class MultiTaskModel(nn.Module):
    """The shared encoder and one head per task; each head comes from its task's kind
    (mtlrun/kinds). Heads of several tasks may share modules (a decoder shared by all
    translation tasks): those count as shared parameters, not as any one task's."""

    def __init__(self, encoder: nn.Module, heads: list[nn.Module]) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleList(heads)
        self._register_load_state_dict_pre_hook(_old_head_keys)

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        """Everything that belongs to task `task` alone: its head (and CRF)."""
        others = {id(p) for k, h in enumerate(self.heads) if k != task for p in h.parameters()}
        return [p for p in self.heads[task].parameters() if id(p) not in others]

    def shared_parameters(self) -> list[nn.Parameter]:
        """The encoder's parameters, then those of modules that several heads share."""
        own = {id(p) for k in range(len(self.heads)) for p in self.task_parameters(k)}
        heads = {id(p): p for h in self.heads for p in h.parameters() if id(p) not in own}
        return [*self.encoder.parameters(), *heads.values()]

    def forward(self, task: int, batch: Batch) -> Output:
        states, pooled = self.encoder(batch.ids, batch.lengths, batch.segments)
        return self.heads[task](states, pooled, batch)


def _old_head_keys(state_dict, prefix, *args) -> None:
    """Checkpoints written before task kinds owned their heads hold each head's linear layer
    as `heads.<k>.weight` / `.bias` and CRFs as `crfs.<k>.`: load them under today's names,
    `heads.<k>.linear.` and `heads.<k>.crf.`."""
    for key in list(state_dict):
        parts = key[len(prefix) :].split(".")
        if not key.startswith(prefix) or len(parts) < 3 or not parts[1].isdigit():
            continue
        if parts[0] == "heads" and len(parts) == 3 and parts[2] in ("weight", "bias"):
            state_dict[f"{prefix}heads.{parts[1]}.linear.{parts[2]}"] = state_dict.pop(key)
        elif parts[0] == "crfs":
            rest = ".".join(parts[2:])
            state_dict[f"{prefix}heads.{parts[1]}.crf.{rest}"] = state_dict.pop(key)
