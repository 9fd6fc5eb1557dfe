"""Output decoders of seq2seq tasks, reading the shared encoder's token states (the memory).

Two decoders share one API. `forward(memory, memory_pad, inputs)` is teacher forcing: `inputs`
is EOS followed by the target shifted right (EOS doubles as the start symbol, as in fairseq)
and the logits [B, T, V] predict the target. `start(memory, memory_pad)` returns the state of
incremental decoding, a dict of batch-first tensors; `step(state, tokens)` feeds the previous
tokens [B] and returns the next logits [B, V] and a new state (the old one is not modified);
`reorder(state, index)` selects / repeats batch rows, which beam search uses. In eval mode the
logits of `step` equal those of `forward` position by position.

LSTMAttentionDecoder follows the RNNsearch decoder of Bahdanau, Cho and Bengio (2015), "Neural
Machine Translation by Jointly Learning to Align and Translate", ICLR 2015, in Bahdanau's form
rather than Luong's input feeding: at step i the additive attention
e_ij = v^T tanh(W_s s_{i-1} + W_h h_j) reads the previous top-layer state s_{i-1}, the context
c_i = sum_j softmax(e_i)_j h_j and the previous token's embedding are the LSTM's input,
s_i = LSTM(s_{i-1}, [E y_{i-1}; c_i]), and the output layer maps [s_i; c_i] through a tanh layer
(in place of Bahdanau's maxout) to embedding_dim and then to the vocabulary. The initial state
is s_0 = tanh(W_0 mean_j h_j) over the non-padding memory (Bahdanau used the first backward
state; the mean also suits a Transformer encoder), one projection per layer, cells at zero.

TransformerDecoder is the decoder of Vaswani et al. (2017), "Attention Is All You Need",
NIPS 2017: target embeddings scaled by sqrt(d_model) plus sinusoidal positions, dropout,
then `num_layers` post-norm layers (causal self-attention, attention over the memory, ReLU
feed-forward network). `hidden_size` is d_model; the memory is projected to d_model when its
size differs, as are embeddings of another size (and back before the output layer). Its `step`
keeps the prefix of tokens in the state and recomputes every layer over it: quadratic in the
output length, but simple and exactly the teacher-forced computation.

With `tie_embeddings` the output layer's weight is the target embedding matrix (Press and Wolf
2017, "Using the Output Embedding to Improve Language Models", EACL 2017). The label-smoothed
loss belongs to the task heads, search to models/decoding.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mtlrun.models.transformer import sinusoids

PAD = 0
EOS = 2  # end of sentence, also the start symbol fed at step 0

State = dict[str, torch.Tensor]


def _embedding(vocab_size: int, dim: int) -> nn.Embedding:
    """N(0, dim^-1/2) as in fairseq: unit-scale logits when the output layer is tied."""
    embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD)
    nn.init.normal_(embedding.weight, std=dim**-0.5)
    with torch.no_grad():
        embedding.weight[PAD].zero_()
    return embedding


def _output_layer(embedding: nn.Embedding, tie: bool) -> nn.Linear:
    vocab_size, dim = embedding.weight.shape
    output = nn.Linear(dim, vocab_size)
    nn.init.zeros_(output.bias)
    if tie:
        output.weight = embedding.weight
    return output


def _clean_memory(memory: torch.Tensor, memory_pad: torch.Tensor):
    """Zero the padding states (whatever the encoder left there) and unmask rows that are all
    padding, which would otherwise give NaN attention weights."""
    memory_pad = memory_pad.bool() & ~memory_pad.bool().all(1, keepdim=True)
    return memory.masked_fill(memory_pad.unsqueeze(-1), 0.0), memory_pad


def reorder_state(state: State, index: torch.Tensor) -> State:
    return {key: value.index_select(0, index) for key, value in state.items()}


class LSTMAttentionDecoder(nn.Module):
    def __init__(self, vocab_size: int, memory_size: int, cfg) -> None:
        super().__init__()
        dim, hidden, layers = cfg.embedding_dim, cfg.hidden_size, cfg.num_layers
        self.embedding = _embedding(vocab_size, dim)
        self.dropout = nn.Dropout(cfg.dropout)  # on the embeddings and the pre-output layer
        self.init_state = nn.Linear(memory_size, layers * hidden)
        self.attn_state = nn.Linear(hidden, hidden, bias=False)  # W_s
        self.attn_memory = nn.Linear(memory_size, hidden)  # W_h (its bias is the score's bias)
        self.attn_v = nn.Linear(hidden, 1, bias=False)  # v
        self.lstm = nn.LSTM(dim + memory_size, hidden, num_layers=layers, batch_first=True,
                            dropout=cfg.dropout if layers > 1 else 0.0)  # fmt: skip
        self.pre_output = nn.Linear(hidden + memory_size, dim)
        self.output = _output_layer(self.embedding, cfg.tie_embeddings)
        self.num_layers, self.hidden_size = layers, hidden

    def start(self, memory: torch.Tensor, memory_pad: torch.Tensor) -> State:
        memory, memory_pad = _clean_memory(memory, memory_pad)
        count = (~memory_pad).sum(1, keepdim=True).clamp(min=1)
        mean = memory.sum(1) / count
        h = torch.tanh(self.init_state(mean)).view(-1, self.num_layers, self.hidden_size)
        return {
            "memory": memory,
            "memory_pad": memory_pad,
            "keys": self.attn_memory(memory),  # W_h h_j, the same at every step
            "h": h,
            "c": torch.zeros_like(h),
        }

    def _advance(self, state: State, embedded: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One LSTM step from embedded previous tokens [B, E]; returns the pre-output [B, E]."""
        query = self.attn_state(state["h"][:, -1])  # W_s s_{i-1}, top layer
        scores = self.attn_v(torch.tanh(state["keys"] + query.unsqueeze(1))).squeeze(-1)
        weights = scores.masked_fill(state["memory_pad"], float("-inf")).softmax(-1)
        context = torch.bmm(weights.unsqueeze(1), state["memory"]).squeeze(1)
        hc = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        out, (h, c) = self.lstm(torch.cat([embedded, context], -1).unsqueeze(1), hc)
        pre = torch.tanh(self.pre_output(torch.cat([out.squeeze(1), context], -1)))
        return self.dropout(pre), {**state, "h": h.transpose(0, 1), "c": c.transpose(0, 1)}

    def forward(
        self, memory: torch.Tensor, memory_pad: torch.Tensor, inputs: torch.Tensor
    ) -> torch.Tensor:
        state = self.start(memory, memory_pad)
        embedded = self.dropout(self.embedding(inputs))
        pre = []
        for t in range(inputs.shape[1]):  # attention needs s_{i-1}: one step at a time
            out, state = self._advance(state, embedded[:, t])
            pre.append(out)
        return self.output(torch.stack(pre, 1))

    def step(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State]:
        out, state = self._advance(state, self.dropout(self.embedding(tokens)))
        return self.output(out), state

    def reorder(self, state: State, index: torch.Tensor) -> State:
        return reorder_state(state, index)


class TransformerDecoder(nn.Module):
    max_positions = 1024  # the table of positions grows when an output is longer

    def __init__(self, vocab_size: int, memory_size: int, cfg) -> None:
        super().__init__()
        d, dim = cfg.hidden_size, cfg.embedding_dim
        self.embedding = _embedding(vocab_size, dim)
        self.project_in = nn.Identity() if dim == d else nn.Linear(dim, d, bias=False)
        self.project_out = nn.Identity() if dim == d else nn.Linear(d, dim, bias=False)
        self.project_memory = nn.Identity() if memory_size == d else nn.Linear(memory_size, d)
        self.scale = math.sqrt(d)
        self.register_buffer("positions", sinusoids(self.max_positions, d), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerDecoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout,
                                           activation="relu", batch_first=True)  # fmt: skip
        self.layers = nn.TransformerDecoder(layer, cfg.num_layers)
        for p in self.layers.parameters():  # Xavier, as the reference implementation
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.output = _output_layer(self.embedding, cfg.tie_embeddings)

    def _decode(self, memory: torch.Tensor, memory_pad: torch.Tensor, inputs: torch.Tensor):
        """Logits over the projected memory; trailing target padding needs no mask, the causal
        mask already keeps it out of every real position."""
        width = inputs.shape[1]
        positions = self.positions
        if width > len(positions):
            positions = sinusoids(width, positions.shape[1]).to(positions)
        x = self.project_in(self.embedding(inputs)) * self.scale + positions[:width]
        causal = torch.ones(width, width, dtype=torch.bool, device=inputs.device).triu(1)
        x = self.layers(self.dropout(x), memory, tgt_mask=causal, tgt_is_causal=True,
                        memory_key_padding_mask=memory_pad)  # fmt: skip
        return self.output(self.project_out(x))

    def forward(
        self, memory: torch.Tensor, memory_pad: torch.Tensor, inputs: torch.Tensor
    ) -> torch.Tensor:
        memory, memory_pad = _clean_memory(memory, memory_pad)
        return self._decode(self.project_memory(memory), memory_pad, inputs)

    def start(self, memory: torch.Tensor, memory_pad: torch.Tensor) -> State:
        memory, memory_pad = _clean_memory(memory, memory_pad)
        prefix = torch.empty(memory.shape[0], 0, dtype=torch.long, device=memory.device)
        return {"memory": self.project_memory(memory), "memory_pad": memory_pad, "prefix": prefix}

    def step(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State]:
        prefix = torch.cat([state["prefix"], tokens.long().unsqueeze(1)], 1)
        logits = self._decode(state["memory"], state["memory_pad"], prefix)[:, -1]
        return logits, {**state, "prefix": prefix}

    def reorder(self, state: State, index: torch.Tensor) -> State:
        return reorder_state(state, index)


DECODERS: dict[str, type[nn.Module]] = {
    "lstm": LSTMAttentionDecoder,
    "transformer": TransformerDecoder,
}


def build_decoder(vocab_size: int, memory_size: int, cfg) -> nn.Module:
    return DECODERS[cfg.name](vocab_size, memory_size, cfg)
