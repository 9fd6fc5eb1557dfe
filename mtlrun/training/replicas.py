"""N replicas of the LSTM multi-task model, trained at once on one device (QLS's parallel
learning episodes, docs/learned_schedulers.md).

The encoder's parameters are stacked along a leading replica axis and the (bi)LSTM recurrence
runs as batched matrix products over it, so one forward / backward trains N models. Each
replica keeps its own task heads (`heads[i][k]`, classification heads: one nn.Linear each):
the heads a replica did not train this step get no gradient, so a stock optimizer over these
parameters skips them exactly as the serial model's optimizer does. Adam, AdamW and SGD are
elementwise, so one optimizer over the stacked tensors equals N independent ones; gradient
clipping is the one cross-element operation and is done per replica (`clip_grad_norm_per_replica`).

Scope: `model=lstm` with `pooling=last` and classification tasks (the QLS paper's setting)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mtlrun.config import LSTMConfig
from mtlrun.errors import ConfigError
from mtlrun.models import Batch, MultiTaskModel
from mtlrun.tasks.encode import IGNORE
from mtlrun.tasks.spec import Kind, Task

LSTM_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # torch's names, per layer


def check_replicable(model_cfg, tasks: list[Task]) -> None:
    """Refuse, in one line, a model or task that ReplicatedLSTMModel does not reproduce."""
    need = "scheduler.parallel_episodes > 1 needs"
    if not isinstance(model_cfg, LSTMConfig):
        raise ConfigError(f"{need} model=lstm (got model={model_cfg.name})")
    if model_cfg.pooling != "last":
        raise ConfigError(f"{need} model.pooling=last (got {model_cfg.pooling})")
    other = [t.name for t in tasks if t.kind != Kind.CLASSIFICATION]
    if other:
        raise ConfigError(f"{need} classification tasks; {', '.join(other)} are not")


def stack_batches(batches: list[Batch], device: torch.device | str = "cpu") -> Batch:
    """One Batch per replica (on the CPU) -> ids [N, B, T], lengths [N, B], labels [N, B] on
    `device`. Rows and columns are padded to the largest batch; a padding row has length 0 and
    label IGNORE."""
    rows = max(len(b.lengths) for b in batches)
    width = max(b.ids.shape[1] for b in batches)
    ids = torch.zeros(len(batches), rows, width, dtype=torch.long)
    lengths = torch.zeros(len(batches), rows, dtype=torch.long)
    labels = torch.full((len(batches), rows), IGNORE, dtype=torch.long)
    for i, b in enumerate(batches):
        n, t = b.ids.shape
        ids[i, :n, :t], lengths[i, :n], labels[i, :n] = b.ids, b.lengths, b.labels
    return Batch(ids.to(device), lengths, labels.to(device))


class ReplicatedLSTMModel(nn.Module):
    """N copies of an LSTM `MultiTaskModel` (classification heads, last-state pooling) as one
    module. `models[i]` gives replica i's initial weights (they are copied, not shared)."""

    def __init__(self, models: list[MultiTaskModel]) -> None:
        super().__init__()
        first = models[0].encoder
        self.n = len(models)
        self.layers = first.lstm.num_layers
        self.directions = 2 if first.lstm.bidirectional else 1
        self.dropout = first.dropout.p
        self.embedding = nn.Parameter(
            torch.stack([m.encoder.embedding.weight.detach() for m in models]),
            requires_grad=first.embedding.weight.requires_grad,
        )
        # lstm[f"{name}_l{layer}"]: [N, directions, ...], torch's per-direction tensors stacked
        self.lstm = nn.ParameterDict({
            f"{name}_l{layer}": nn.Parameter(torch.stack([
                torch.stack([getattr(m.encoder.lstm, f"{name}_l{layer}{suffix}").detach()
                             for suffix in self._suffixes()])
                for m in models
            ]))
            for layer in range(self.layers) for name in LSTM_WEIGHTS
        })  # fmt: skip
        self.heads = nn.ModuleList(copy.deepcopy(m.heads) for m in models)  # heads[i][k]

    def _suffixes(self) -> list[str]:
        return ["", "_reverse"][: self.directions]

    # --- parameters, as the optimizer and the clipping see them --------------------------------
    def stacked_parameters(self) -> list[nn.Parameter]:
        """The shared encoder's parameters, each [N, ...] (replica i = slice i)."""
        return [self.embedding, *self.lstm.values()]

    def head_parameters(self, task: int) -> list[nn.Parameter]:
        """Task `task`'s head in every replica."""
        return [p for heads in self.heads for p in heads[task].parameters()]

    def replica_state_dict(self, i: int, grads: bool = False) -> dict[str, torch.Tensor]:
        """Replica i as a serial `MultiTaskModel.state_dict()` (same keys, copies); with
        `grads`, its gradients instead (None where a parameter has none)."""

        def value(p: torch.Tensor, *index: int) -> torch.Tensor | None:
            tensor = p.grad if grads else p.detach()
            return None if tensor is None else tensor[index].clone()

        state = {"encoder.embedding.weight": value(self.embedding, i)}
        for key, p in self.lstm.items():
            name, layer = key.rsplit("_l", 1)
            for d, suffix in enumerate(self._suffixes()):
                state[f"encoder.lstm.{name}_l{layer}{suffix}"] = value(p, i, d)
        for k, head in enumerate(self.heads[i]):
            state.update({f"heads.{k}.{n}": value(p) for n, p in head.named_parameters()})
        return state

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, tasks: Sequence[int], batch: Batch) -> torch.Tensor:
        """Replica i trains task tasks[i] on batch row i: the per-replica mean cross-entropy
        [N] (rows labelled IGNORE, i.e. padding rows, left out)."""
        dropout = self.dropout if self.training else 0.0
        pooled = self._encode(batch.ids, batch.lengths, list(range(self.n)), dropout)
        order, losses = [], []
        for k in sorted(set(tasks)):  # heads differ in size: one group per task
            group = [i for i, a in enumerate(tasks) if a == k]
            index = torch.tensor(group, device=pooled.device)
            logits = self._logits(k, pooled[index], group)
            labels = batch.labels[index]
            ce = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE,
                                 reduction="none")  # fmt: skip
            losses.append(ce.sum(1) / (labels != IGNORE).sum(1))
            order += group
        inverse = torch.argsort(torch.tensor(order, device=pooled.device))
        return torch.cat(losses)[inverse]

    @torch.no_grad()
    def evaluate(
        self, task: int, batch: Batch, replicas: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval mode (no dropout) on one batch ([B, T], shared by the replicas): softmax
        probabilities [R, B, C] and cross-entropy [R, B] of task `task` in each replica."""
        r = len(replicas)
        ids = batch.ids.expand(r, -1, -1)
        pooled = self._encode(ids, batch.lengths.expand(r, -1), list(replicas), 0.0)
        log_probs = F.log_softmax(self._logits(task, pooled, replicas), -1)
        labels = batch.labels.expand(r, -1)
        ce = F.nll_loss(log_probs.transpose(1, 2), labels, reduction="none")
        return log_probs.exp(), ce

    def _logits(self, task: int, pooled: torch.Tensor, replicas: Sequence[int]) -> torch.Tensor:
        """pooled [R, B, H] through task `task`'s head of each listed replica -> [R, B, C]."""
        heads = [self.heads[i][task] for i in replicas]
        weight = torch.stack([h.linear.weight for h in heads])  # [R, C, H]
        bias = torch.stack([h.linear.bias for h in heads])  # [R, C]
        return torch.baddbmm(bias[:, None, :], pooled, weight.transpose(1, 2))

    def _encode(
        self, ids: torch.Tensor, lengths: torch.Tensor, replicas: list[int], dropout: float
    ) -> torch.Tensor:
        """ids [R, B, T] of the listed replicas -> the top layer's final states
        [R, B, directions · hidden], as LSTMEncoder's `last` pooling (with its dropouts)."""
        index = torch.tensor(replicas, device=ids.device)
        table = self.embedding.view(-1, self.embedding.shape[-1])  # replica i's rows at i·V
        offsets = index[:, None, None] * self.embedding.shape[1]
        x = _dropout(F.embedding(ids + offsets, table), dropout)
        lengths = lengths.to(ids.device)
        steps = torch.arange(ids.shape[-1], device=ids.device)
        valid = steps < lengths[..., None]  # [R, B, T]
        # reading position of the backward direction: each sequence reversed within its length
        reverse = torch.where(valid, lengths[..., None] - 1 - steps, steps)
        every = replicas == list(range(self.n))  # then use the parameters without a copy
        for layer in range(self.layers):
            w = {name: self.lstm[f"{name}_l{layer}"] for name in LSTM_WEIGHTS}
            if not every:
                w = {name: p[index] for name, p in w.items()}
            last = layer == self.layers - 1
            states, final = self._layer(x, w, valid, reverse, last)
            x = None if last else _dropout(states, dropout)  # torch's inter-layer dropout
        return _dropout(final, dropout)

    def _layer(
        self, x: torch.Tensor, w: dict[str, torch.Tensor], valid: torch.Tensor,
        reverse: torch.Tensor, last: bool,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:  # fmt: skip
        """One (bi)LSTM layer over x [R, B, T, in]. Both directions run as one recurrence
        (directions folded into the batched-matmul axis). Returns the per-position outputs
        [R, B, T, D·H] (None for the top layer, whose outputs nobody reads) and the final
        states [R, B, D·H] (forward: at each sequence's true length; backward: at position 0)."""
        inputs = [x]
        if self.directions == 2:
            inputs.append(x.gather(2, reverse[..., None].expand_as(x)))
        xd = torch.stack(inputs, 1)  # [R, D, B, T, in]
        proj = torch.einsum("rdbti,rdgi->rdbtg", xd, w["weight_ih"])
        proj = proj + (w["bias_ih"] + w["bias_hh"])[:, :, None, None, :]
        r, d, b, t, _ = proj.shape
        outputs, h = _recurrence(proj.reshape(r * d, b, t, -1), w["weight_hh"].flatten(0, 1),
                                 valid.repeat_interleave(d, 0), keep_outputs=not last)  # fmt: skip
        final = h.view(r, d, b, -1).transpose(1, 2).reshape(r, b, -1)
        if last:
            return None, final
        outputs = outputs.view(r, d, b, t, -1)
        directions = [outputs[:, 0]]
        if d == 2:  # back to the original positions (reversal within length is an involution)
            back = outputs[:, 1]
            directions.append(back.gather(2, reverse[..., None].expand_as(back)))
        return torch.cat(directions, -1), final


def _dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    return F.dropout(x, p, training=p > 0)


def _recurrence(proj: torch.Tensor, w_hh: torch.Tensor, valid: torch.Tensor, keep_outputs: bool):
    """LSTM cells over time for M independent sequences-of-batches: proj [M, B, T, 4H] (input
    projections plus biases), w_hh [M, 4H, H], valid [M, B, T]. A position past a sequence's
    length leaves (h, c) unchanged, as packed sequences do. Gate order i, f, g, o (torch's)."""
    m, b, t, four_h = proj.shape
    n = four_h // 4
    h = proj.new_zeros(m, b, n)
    c = torch.zeros_like(h)
    w = w_hh.transpose(1, 2)  # [M, H, 4H]
    # time-major blocks; unbind, not indexing: its backward stacks the T gradients once, where
    # T index backwards would each write a full-size zero tensor
    inputs = proj.permute(2, 0, 1, 3).contiguous().unbind(0)
    outputs = []
    for step in range(t):
        gates = torch.baddbmm(inputs[step], h, w)
        sig = torch.sigmoid(gates)  # one kernel for the i, f, o gates (g's slice unused)
        c_new = sig[..., n : 2 * n] * c + sig[..., :n] * torch.tanh(gates[..., 2 * n : 3 * n])
        h_new = sig[..., 3 * n :] * torch.tanh(c_new)
        keep = valid[:, :, step, None]
        c, h = torch.where(keep, c_new, c), torch.where(keep, h_new, h)
        if keep_outputs:
            outputs.append(h)
    return (torch.stack(outputs, 2) if keep_outputs else None), h


def clip_grad_norm_per_replica(model: ReplicatedLSTMModel, max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` applied to each replica's own gradients (its slice of
    every stacked parameter plus its heads); returns the N norms before clipping."""
    squares = torch.zeros(model.n, device=model.embedding.device)
    stacked = [p.grad for p in model.stacked_parameters() if p.grad is not None]
    for g in stacked:
        squares += g.flatten(1).pow(2).sum(1)
    heads = [[p.grad for p in h.parameters() if p.grad is not None] for h in model.heads]
    for i, grads in enumerate(heads):
        for g in grads:
            squares[i] += g.pow(2).sum()
    norms = squares.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # torch's clip coefficient
    for g in stacked:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))
    for i, grads in enumerate(heads):
        for g in grads:
            g.mul_(scale[i])
    return norms
