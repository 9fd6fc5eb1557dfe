"""A Transformer encoder trained from scratch (Vaswani et al. 2017) as the shared encoder.

Word embeddings (scaled by √d, projected to d when their size differs) plus sinusoidal
positions, dropout, then `num_layers` post-norm layers (multi-head self-attention and a ReLU
feed-forward network, each followed by residual dropout and LayerNorm) as in the base model;
padding is masked out of attention. A pair is one sequence `a b` with a learned segment
embedding added to each text's tokens, as in BERT. Pooling: the mean of the token states
(default), their maximum, or the first token's state.

MC dropout (training/signals.py): torch's layers are in `_FLAG_GATED`, so `mc_dropout=all`
puts each nn.TransformerEncoderLayer in training mode (their eval-mode fast path has no
dropout) and samples every dropout; `head_dropout` sits on the states and the pooled vector
right before the heads, the one dropout `mc_dropout=heads` samples.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoids(length: int, d: int) -> torch.Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...) (Vaswani et al. §3.5)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(length, d)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : d // 2]
    return table


class TransformerEncoder(nn.Module):
    def __init__(self, embedding: nn.Embedding, cfg) -> None:
        super().__init__()
        d = cfg.d_model
        self.embedding = embedding
        dim = embedding.embedding_dim
        self.project = nn.Identity() if dim == d else nn.Linear(dim, d, bias=False)
        self.scale = math.sqrt(d)
        self.segment = nn.Embedding(2, d)
        nn.init.normal_(self.segment.weight, std=0.02)
        # pairs put two texts of max_length tokens each in one sequence
        self.register_buffer("positions", sinusoids(2 * cfg.max_length, d), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout,
                                           activation="relu", batch_first=True)  # fmt: skip
        self.layers = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.pooling = cfg.pooling
        self.output_size = self.pair_output_size = d
        for p in self.layers.parameters():  # Xavier, as the reference implementation
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The top Transformer layer: GradNorm's "last shared layer" W."""
        return list(self.layers.layers[-1].parameters())

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor, segments: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        width = ids.shape[1]
        pad = torch.arange(width, device=ids.device)[None, :] >= lengths.to(ids.device)[:, None]
        x = self.project(self.embedding(ids)) * self.scale + self.positions[:width]
        if segments is not None:
            x = x + self.segment(segments.long())
        states = self.layers(self.dropout(x), src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1)
        if self.pooling == "first":
            pooled = states[:, 0]
        elif self.pooling == "max":
            pooled = states.masked_fill(~keep, float("-inf")).amax(dim=1)
        else:
            pooled = (states * keep).sum(1) / lengths.to(ids.device).clamp(min=1)[:, None]
        return self.head_dropout(states), self.head_dropout(pooled)
