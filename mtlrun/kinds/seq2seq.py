"""An output sequence per text: translation (a text output, scored by BLEU), or tags and
linearised parses as sequences (a symbol output over `Task.label_names`, scored by token
accuracy position by position), as Kiperwasser & Ballesteros (2018) and Meshgi et al. (2022)
train syntax alongside translation.

The head is a decoder (models/decoders.py) over the shared encoder's token states; by
`model.decoder.sharing` each task has its own (Jean et al. 2019's working setting) or the tasks
with a text output share one. Training is teacher-forced token-level cross-entropy, label-smoothed
in training mode only (dev losses are plain NLL); a task's loss L_k is the mean over its output
tokens (</s> included).
Evaluation decodes (greedy, or beam search with `model.decoder.beam_size`) and scores the
detokenised text against the split's references with sacrebleu.

Dev-set signals (QLS, REINFORCE) see each output token as a row, teacher-forced. A row would be
a distribution over the whole vocabulary (a 32K vocabulary over a 3K-sentence dev set is about
11 GB), so a row keeps only the K largest probabilities (`SIGNAL_TOP`, not renormalised) and
its label is the gold token's column, K when the gold token is not among them (never a hit).
Margin and least confidence are exact on these rows; entropy over them is a partial sum, a
lower bound. A signal's score is teacher-forced token accuracy, not BLEU.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtlrun.errors import ConfigError
from mtlrun.kinds.base import HeadContext, TaskKind, padded_source, register
from mtlrun.models.decoders import EOS, PAD, build_decoder
from mtlrun.models.decoding import beam_search, greedy
from mtlrun.models.multitask import Batch, Output
from mtlrun.tasks.encode import IGNORE, SYMBOL_OFFSET, EncodedSplit, EncodedTask
from mtlrun.tasks.spec import Kind, Metric, Task
from mtlrun.training.batches import to_device

SIGNAL_TOP = 32  # the largest output probabilities kept per signal row


class Seq2SeqHead(nn.Module):
    def __init__(self, decoder: nn.Module, cfg) -> None:
        super().__init__()
        self.decoder = decoder
        self.label_smoothing = cfg.label_smoothing
        self.beam_size, self.length_penalty = cfg.beam_size, cfg.length_penalty
        self.max_output_ratio = cfg.max_output_ratio

    def forward(self, states: torch.Tensor, pooled: torch.Tensor, batch: Batch) -> Output:
        width = states.shape[1]
        lengths = batch.lengths.to(states.device)
        memory_pad = torch.arange(width, device=states.device)[None, :] >= lengths[:, None]
        targets = batch.labels
        keep = targets != IGNORE
        previous = torch.cat([torch.full_like(targets[:, :1], EOS), targets[:, :-1]], dim=1)
        logits = self.decoder(states, memory_pad, previous.masked_fill(previous == IGNORE, PAD))
        gold = targets[keep]
        smoothing = self.label_smoothing if self.training else 0.0  # dev losses: plain NLL
        losses = F.cross_entropy(logits[keep].float(), gold, reduction="none",
                                 label_smoothing=smoothing)  # fmt: skip
        return Output(losses, gold, lambda: F.log_softmax(logits[keep].float(), -1),
                      lambda: self.generate(states, memory_pad, lengths))  # fmt: skip

    def generate(self, memory: torch.Tensor, memory_pad: torch.Tensor,
                 lengths: torch.Tensor) -> list[list[int]]:  # fmt: skip
        """Output ids per example (without </s>): greedy, or beam search."""
        limit = (lengths.float() * self.max_output_ratio).ceil().long() + 10
        if self.beam_size == 1:
            return greedy(self.decoder, memory, memory_pad, limit)
        return beam_search(self.decoder, memory, memory_pad, self.beam_size,
                           self.length_penalty, limit)  # fmt: skip


def _same_length(gold: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both padded to the longer with values that never match: a missing token and an extra
    token each count as one wrong position."""
    n = max(len(gold), len(pred))
    return (np.pad(gold, (0, n - len(gold)), constant_values=-1),
            np.pad(pred, (0, n - len(pred)), constant_values=-2))  # fmt: skip


def text_output(task: Task) -> bool:
    """A text output (words of the run's vocabulary) rather than symbols of label_names."""
    return not task.label_names


@register
class Seq2Seq(TaskKind):
    kind = Kind.SEQ2SEQ
    mc_signals = False  # rows keep only the top of each distribution

    def head(self, encoder: nn.Module, task: Task, cfg, context: HeadContext) -> nn.Module:
        dec = cfg.decoder
        if text_output(task):
            size = context.vocab_size
            if dec.sharing == "shared":  # one decoder for every task with a text output
                if task.name in (dec.task_dropout or {}):
                    raise ConfigError(
                        f"model.decoder.task_dropout.{task.name}: the task shares its decoder "
                        "(model.decoder.sharing=shared), so it has no dropout of its own"
                    )
                if "seq2seq_decoder" not in context.modules:
                    context.modules["seq2seq_decoder"] = build_decoder(size, encoder.output_size,
                                                                       dec)  # fmt: skip
                return Seq2SeqHead(context.modules["seq2seq_decoder"], dec)
        else:
            size = SYMBOL_OFFSET + task.num_labels
        own = dataclasses.replace(dec, dropout=(dec.task_dropout or {}).get(task.name, dec.dropout))
        return Seq2SeqHead(build_decoder(size, encoder.output_size, own), dec)

    def classes(self, task: EncodedTask) -> int:
        """The output vocabulary: the run's (words or subwords), or </s> and the symbols."""
        if text_output(task.task):
            return len(task.encoder.vocab)
        return SYMBOL_OFFSET + task.task.num_labels

    def collate(self, split: EncodedSplit, index: np.ndarray, device: torch.device) -> Batch:
        ids, lengths, segments, _ = padded_source(split, index, device)
        starts = split.label_offsets[index]
        widths = split.label_offsets[index + 1] - starts
        columns = np.arange(int(widths.max()))
        mask = columns[None, :] < widths[:, None]
        labels = np.where(mask, split.labels[np.where(mask, starts[:, None] + columns, 0)], IGNORE)
        return Batch(ids, lengths, to_device(labels, device), segments)

    def rows(self, batch: Batch) -> np.ndarray:
        return (batch.labels != IGNORE).sum(1).cpu().numpy()

    def outcomes(self, out: Output, batch: Batch) -> tuple[list, list]:
        """Gold and decoded output ids per example, </s> left out."""
        labels = batch.labels.cpu().numpy()
        gold = [row[(row != IGNORE) & (row != EOS)] for row in labels]
        return gold, [np.asarray(p, dtype=np.int64) for p in out.predictions()]

    def score(self, metric: Metric, gold: list, pred: list, task: EncodedTask,
              positive_probs=None, split: str | None = None) -> float:  # fmt: skip
        from mtlrun.training.metrics import compute_metric

        if metric == Metric.BLEU:
            hypotheses = [task.encoder.decode(p.tolist()) for p in pred]
            # the split's own references, not the encoded ones (which lose unknown words)
            if split is not None:
                references = [" ".join(words) for words in task.task.split(split).labels]
            else:
                references = [task.encoder.decode(g.tolist()) for g in gold]
            return compute_metric(metric, references, hypotheses, [])
        if metric == Metric.TOKEN_ACCURACY:  # position by position: a missing or extra token
            pairs = [_same_length(g, p) for g, p in zip(gold, pred, strict=True)]
            return compute_metric(metric, [g for g, _ in pairs], [p for _, p in pairs],
                                  task.task.label_names)  # fmt: skip
        raise ValueError(f"{metric.value} does not score a seq2seq task")

    def signal_rows(self, out: Output) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs = out.example_log_probs.float()
        k = min(SIGNAL_TOP, log_probs.shape[-1])
        top, ids = log_probs.topk(k, dim=-1)
        hit = ids == out.example_labels[:, None]
        labels = torch.where(hit.any(-1), hit.int().argmax(-1), k)  # k: not among the top
        return top.exp(), labels

    def row_outcomes(self, gold: list[np.ndarray], probs: list[np.ndarray]) -> tuple[list, list]:
        return gold, [p.argmax(-1) for p in probs]

    def signal_metric(self, task: Task) -> Metric:
        return Metric.TOKEN_ACCURACY
