"""The shared (bi)LSTM encoder of fully shared MTL (the QLS paper §3)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class LSTMEncoder(nn.Module):
    """Embeddings -> dropout -> (bi)LSTM -> head dropout. Returns per-token states and a pooled
    text vector; for a pair, each text is encoded alone (u, v) and the vector is
    [u; v; |u - v|; u * v].

    Dropout: `dropout` on the embeddings and nn.LSTM's own between stacked layers belong to the
    encoder body; `head_dropout` is everything after the LSTM, on the per-token states (the
    tagging heads' input, also what max / mean pooling reads) and on the pooled vector (the
    classification heads' input). All use model.dropout, in the order embeddings, states,
    pooled. MC dropout with `scheduler.mc_dropout=heads` samples only `head_dropout`
    (training/signals.py `mc_dropout_modules`), the LSTM then runs deterministically."""

    def __init__(self, embedding: nn.Embedding, cfg) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(cfg.dropout)  # on the embeddings
        self.head_dropout = nn.Dropout(cfg.dropout)  # on the LSTM's outputs, before the heads
        self.lstm = nn.LSTM(
            embedding.embedding_dim, cfg.hidden_size, num_layers=cfg.num_layers,
            bidirectional=cfg.bidirectional, batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )  # fmt: skip
        self.pooling = cfg.pooling
        self.output_size = cfg.hidden_size * (2 if cfg.bidirectional else 1)
        self.pair_output_size = 4 * self.output_size
        for name, p in self.lstm.named_parameters():  # Xavier initialisation (the QLS paper §4.4)
            if "weight" in name:
                nn.init.xavier_uniform_(p)
            else:
                nn.init.zeros_(p)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The top LSTM layer (both directions): GradNorm's "last shared layer" W."""
        top = f"_l{self.lstm.num_layers - 1}"
        return [p for n, p in self.lstm.named_parameters() if n.endswith((top, f"{top}_reverse"))]

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor, segments: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        if segments is not None:
            return None, self._pair(ids, lengths, segments)
        return self._encode(ids, lengths)

    def _pair(self, ids: torch.Tensor, lengths: torch.Tensor, segments: torch.Tensor):
        """Cut each row [a; b] into its two texts and encode both in one batch of 2B rows."""
        n_b = segments.sum(1).cpu()
        n_a = lengths - n_b
        width = int(max(n_a.max(), n_b.max()))
        cols = torch.arange(width)
        take_b = (n_a[:, None] + cols[None, :]).clamp(max=ids.shape[1] - 1).to(ids.device)
        a = torch.where((cols[None, :] < n_a[:, None]).to(ids.device), ids[:, :width], 0)
        b = torch.where((cols[None, :] < n_b[:, None]).to(ids.device), ids.gather(1, take_b), 0)
        _, pooled = self._encode(torch.cat([a, b]), torch.cat([n_a, n_b]))
        u, v = pooled.chunk(2)
        return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)

    def _encode(self, ids: torch.Tensor, lengths: torch.Tensor):
        x = self.dropout(self.embedding(ids))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        states = self.head_dropout(states)
        if self.pooling == "last":  # final state of each direction of the top layer
            dirs = 2 if self.lstm.bidirectional else 1
            pooled = torch.cat(list(h_n[-dirs:]), dim=-1)
        else:
            mask = (ids != 0).unsqueeze(-1)
            if self.pooling == "max":
                pooled = states.masked_fill(~mask, float("-inf")).amax(dim=1)
            else:
                pooled = (states * mask).sum(1) / lengths.clamp(min=1).unsqueeze(-1)
        return states, self.head_dropout(pooled)
