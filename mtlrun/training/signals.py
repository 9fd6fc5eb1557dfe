"""Dev-set signals for the schedulers that observe the model (QLS, REINFORCE, active
uncertainty): per-row softmax outputs, MC-dropout samples, loss and primary metric over chosen
dev examples. Computed only when a scheduler asks (`Scheduler.wants_signals`), batched, under
no_grad, and in a forked torch RNG so that measuring never changes the training run's dropout.

MC dropout (`SignalRequest.mc_samples > 0`) has one contract for every encoder,
`mc_dropout_modules`: the model is in eval mode except for the modules that draw dropout masks,
which are put in training mode (their own flag only, not their children's). `mc_dropout="all"`
samples every dropout of the model; `"heads"` only the dropout right before the task heads
(the encoder's `head_dropout`, FANG-CODE's task-specific `DropoutWrapper`), so the encoder
body runs deterministically. See `mc_dropout_modules` for what an encoder declares.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from mtlrun.errors import ConfigError
from mtlrun.kinds import kind_of
from mtlrun.models import Batch, MultiTaskModel
from mtlrun.schedulers import SignalRequest, Signals, TaskOutputs
from mtlrun.schedulers.uncertainty import MC_DROPOUT_SCOPES
from mtlrun.tasks.encode import EncodedTask
from mtlrun.tasks.spec import Metric


def dev_rows(selection: np.ndarray | None, n: int) -> np.ndarray:
    return np.arange(n) if selection is None else np.unique(np.asarray(selection, dtype=np.int64))


def dev_batches(examples: np.ndarray, lengths: np.ndarray, size: int) -> list[np.ndarray]:
    ordered = examples[np.argsort(-lengths[examples], kind="stable")]  # longest first
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


# torch modules whose forward reads their own training flag to decide whether to drop: with
# the flag off they skip dropout (nn.MultiheadAttention, nn.RNNBase's between-layer dropout),
# or take a fused fast path that has none (nn.TransformerEncoderLayer / DecoderLayer in eval
# mode under no_grad; nn.TransformerEncoder's nested-tensor path checks its first layer's flag)
_FLAG_GATED = (nn.MultiheadAttention, nn.RNNBase, nn.TransformerEncoderLayer,
               nn.TransformerDecoderLayer)  # fmt: skip


def stochastic_modules(module: nn.Module) -> list[nn.Module]:
    """The modules under `module` (itself included) that draw dropout masks when, and only
    when, their own training flag is set: every nn.Dropout-like layer (`_DropoutNd`) and the
    torch modules in `_FLAG_GATED` (RNNs only with dropout > 0)."""
    return [m for m in module.modules() if _draws_dropout(m)]


def _draws_dropout(m: nn.Module) -> bool:
    if isinstance(m, nn.RNNBase):
        return m.dropout > 0 and m.num_layers > 1  # nn.RNNBase drops between layers only
    return isinstance(m, (nn.modules.dropout._DropoutNd, *_FLAG_GATED))


def mc_dropout_modules(model: nn.Module, scope: str = "all") -> list[nn.Module]:
    """THE MC-dropout contract: the modules of `model` (a MultiTaskModel, or any module with an
    `encoder`) to put in training mode, the rest staying in eval mode.

    An encoder honours it by
    - `head_dropout`: the dropout module applied to its outputs (per-token states and the
      pooled vector) right before the task heads; needed for `scope="heads"`;
    - optionally `mc_dropout_modules() -> list[nn.Module]`: modules whose own training flag
      gates a dropout that `stochastic_modules` cannot see, i.e. that is not an nn.Dropout
      call (BertEncoder: the Hugging Face attention modules, whose attention-probability
      dropout is `self.dropout.p if self.training else 0.0` under SDPA and eager attention).

    `scope="all"`: `stochastic_modules(model)` plus the encoder's declared modules, so every
    dropout of an LSTM (embedding, between layers, head), a BERT (hidden, attention, head) or an
    nn.TransformerEncoder (whose eval-mode fast path ignores dropout) samples.
    `scope="heads"`: the encoder's `head_dropout` plus the stochastic modules of the model
    outside the encoder (dropout inside the task heads, if any); ConfigError without one.
    """
    if scope not in MC_DROPOUT_SCOPES:
        raise ConfigError(f"mc_dropout must be one of {', '.join(MC_DROPOUT_SCOPES)} "
                          f"(got {scope!r})")  # fmt: skip
    encoder = getattr(model, "encoder", model)
    inside = {id(m) for m in encoder.modules()}
    if scope == "all":
        declared = getattr(encoder, "mc_dropout_modules", None)
        modules = stochastic_modules(model) + (list(declared()) if declared else [])
    else:
        head = getattr(encoder, "head_dropout", None)
        if not isinstance(head, nn.Module):
            raise ConfigError(
                f"scheduler.mc_dropout=heads: the {type(encoder).__name__} declares no "
                "head_dropout module (the dropout right before the task heads)"
            )
        outside = [m for m in stochastic_modules(model) if id(m) not in inside]
        modules = stochastic_modules(head) + outside
    unique = {id(m): m for m in modules}
    return list(unique.values())


@contextmanager
def inference(model: nn.Module, dropout: bool, scope: str = "all"):
    """Eval mode; with `dropout`, MC dropout: every module in eval mode except
    `mc_dropout_modules(model, scope)` (FANG-CODE's `apply_dropout` switches its dropout
    wrappers alone). Only those modules' own flags are set (`m.training = True`, not
    `m.train()`), so their children keep eval mode unless listed themselves. The training mode
    of every module is restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    if dropout:
        for m in mc_dropout_modules(model, scope):
            m.training = True
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _tile(batch: Batch, m: int) -> Batch:
    """M copies of a batch stacked along the batch axis: one forward pass draws M dropout masks."""
    return Batch(batch.ids.repeat(m, 1), batch.lengths.repeat(m),
                 batch.labels.repeat(m, *([1] * (batch.labels.dim() - 1))),
                 None if batch.segments is None else batch.segments.repeat(m, 1))  # fmt: skip


class SignalMeter:
    """Answers SignalRequests for one model and its tasks' dev splits."""

    def __init__(self, tasks: list[EncodedTask], batch_size: int, device: torch.device) -> None:
        self.tasks = tasks
        self.batch_size = batch_size
        self.device = device

    @torch.no_grad()
    def measure(self, model: MultiTaskModel, request: SignalRequest, seed: int) -> Signals:
        start = time.perf_counter()
        outputs, scores, losses = {}, {}, {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for k in sorted(set(request.outputs) | set(request.scores)):
                n = len(self.tasks[k].splits["dev"])
                if n == 0:
                    raise ConfigError(
                        f"task {self.tasks[k].task.name} has no dev data, and this scheduler "
                        "measures dev examples; use tasks.missing_metric_policy=holdout"
                    )
                out_rows = dev_rows(request.outputs[k], n) if k in request.outputs else None
                score_rows = dev_rows(request.scores[k], n) if k in request.scores else None
                if request.mc_samples > 0 and out_rows is not None:
                    outputs[k] = self._mc_outputs(
                        model, k, out_rows, request.mc_samples, request.mc_dropout
                    )
                    out_rows = None
                needed = [r for r in (out_rows, score_rows) if r is not None]
                if not needed:
                    continue
                per_example = self._eval_pass(model, k, np.unique(np.concatenate(needed)))
                if out_rows is not None:
                    outputs[k] = _task_outputs([per_example[i] for i in out_rows], out_rows)
                if score_rows is not None:
                    scores[k], losses[k] = self._score(k, [per_example[i] for i in score_rows])
        return Signals(outputs, scores, losses, seconds=time.perf_counter() - start)

    def _eval_pass(
        self, model: MultiTaskModel, k: int, examples: np.ndarray
    ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """example -> (probs [rows, C], cross-entropy [rows], gold [rows]) in eval mode."""
        with inference(model, dropout=False):
            return self._forward(model, k, examples, 1)

    def _mc_outputs(
        self, model: MultiTaskModel, k: int, examples: np.ndarray, m: int, scope: str = "all"
    ):
        with inference(model, dropout=True, scope=scope):
            per_example = self._forward(model, k, examples, m)
        return _task_outputs([per_example[i] for i in examples], examples, mc=True)

    def _forward(self, model, k: int, examples: np.ndarray, m: int) -> dict:
        """Per example: softmax rows ([rows, C] or, with m > 1, [rows, C, M]), the eval-pass
        cross-entropy per row and the gold labels. M copies share one forward pass."""
        split = self.tasks[k].splits["dev"]
        kind = kind_of(self.tasks[k].task)
        if m > 1 and not kind.mc_signals:
            raise ConfigError(
                f"task {self.tasks[k].task.name}: MC-dropout signals need whole output "
                f"distributions, which {kind.kind.value} tasks do not keep; choose a scheduler "
                "that does not sample dropout (not active_uncertainty)"
            )
        result = {}
        size = max(1, self.batch_size // m)
        for index in dev_batches(examples, split.lengths, size):
            batch = kind.collate(split, index, self.device)
            out = model(k, _tile(batch, m) if m > 1 else batch)
            probs, labels = kind.signal_rows(out)
            rows = len(labels) // m  # rows of one copy
            probs = probs.reshape(m, rows, -1).permute(1, 2, 0)  # [rows, C, M]
            probs = probs.cpu().numpy() if m > 1 else probs[..., 0].cpu().numpy()
            ce = out.example_losses[:rows].cpu().numpy()
            gold = labels[:rows].cpu().numpy()
            bounds = np.concatenate([[0], np.cumsum(kind.rows(batch))])
            for j, example in enumerate(index):
                a, b = bounds[j], bounds[j + 1]
                result[int(example)] = (probs[a:b], ce[a:b], gold[a:b])
        return result

    def _score(self, k: int, rows: list[tuple]) -> tuple[float, float]:
        """The task's primary metric and mean cross-entropy over the given examples."""
        task, kind = self.tasks[k].task, kind_of(self.tasks[k].task)
        gold, pred = kind.row_outcomes([g for _, _, g in rows], [p for p, _, _ in rows])
        positive = None  # label 1's probability, for ROC-AUC only
        if task.metric == Metric.ROC_AUC:
            positive = [float(p[0][1]) for p, _, _ in rows]
        ce = np.concatenate([c for _, c, _ in rows])
        score = kind.score(kind.signal_metric(task), gold, pred, self.tasks[k], positive)
        return score, float(ce.mean())


def _task_outputs(rows: list[tuple], examples: np.ndarray, mc: bool = False) -> TaskOutputs:
    counts = [len(g) for _, _, g in rows]
    probs = np.concatenate([p for p, _, _ in rows])
    return TaskOutputs(
        example=np.repeat(examples, counts),
        labels=np.concatenate([g for _, _, g in rows]),
        probs=None if mc else probs,
        mc_probs=probs if mc else None,
    )
