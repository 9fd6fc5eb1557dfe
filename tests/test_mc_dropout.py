"""The MC-dropout contract (training/signals.py `mc_dropout_modules`, `inference`) for every
encoder: the LSTM, a tiny random BERT (built offline) and a plain nn.TransformerEncoder encoder
that declares nothing but its `head_dropout`. Eval passes are identical; MC passes with
`mc_dropout=all` differ in the encoder body and the heads (attention dropout, the LSTM's
between-layer dropout and the Transformer's fast path included); with `heads` the encoder body
is deterministic and only the head outputs differ. Ordinary training draws the same dropout
masks as before the head dropout had its own module."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import model_for, save_tiny_bert
from test_trainer import trainer_for
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mtlrun.config import BertConfig, LSTMConfig
from mtlrun.errors import ConfigError
from mtlrun.models.bert import BertEncoder
from mtlrun.models.lstm import LSTMEncoder
from mtlrun.models.multitask import Batch, MultiTaskModel
from mtlrun.schedulers import SignalRequest
from mtlrun.tasks.spec import Kind
from mtlrun.training.signals import inference, mc_dropout_modules

TEXTS = ["the movie was wonderful and moving", "a dull , tedious film", "it rains in Paris"] * 20
KINDS, LABELS = [Kind.CLASSIFICATION, Kind.TAGGING], [2, 3]
IDS = torch.tensor([[2, 10, 11, 12, 3, 5], [2, 13, 14, 3, 0, 0], [2, 7, 8, 9, 6, 3]])
LENGTHS = torch.tensor([6, 4, 6])
TAGS = torch.tensor([[0, 1, 2, 1, 0, 2], [1, 0, 2, 1, -100, -100], [2, 2, 1, 0, 1, 0]])
P = 0.3


class TransformerStub(nn.Module):
    """An encoder built on nn.TransformerEncoder as a later one would be: it declares its
    `head_dropout` and nothing else, so the generic rule must cover its layers."""

    def __init__(self, dropout: float = P, dim: int = 16) -> None:
        super().__init__()
        self.embedding = nn.Embedding(32, dim, padding_idx=0)
        layer = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=32, dropout=dropout,
                                           batch_first=True)  # fmt: skip
        self.transformer = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head_dropout = nn.Dropout(dropout)
        self.output_size = self.pair_output_size = dim

    def forward(self, ids, lengths, segments=None):
        padding = torch.arange(ids.shape[1])[None, :] >= lengths[:, None]
        states = self.transformer(self.embedding(ids), src_key_padding_mask=padding)
        return self.head_dropout(states), self.head_dropout(states[:, 0])


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"), TEXTS)


def lstm_encoder(**cfg) -> LSTMEncoder:
    cfg = {"hidden_size": 8, "dropout": P, "num_layers": 2, "pooling": "mean", **cfg}
    return LSTMEncoder(nn.Embedding(32, 6, padding_idx=0), LSTMConfig(**cfg))


def build(kind: str, bert_dir=None, encoder: nn.Module | None = None) -> MultiTaskModel:
    torch.manual_seed(0)
    if encoder is None:
        encoder = {
            "lstm": lambda: lstm_encoder(),
            "bert": lambda: BertEncoder(BertConfig(name=str(bert_dir), dropout=P)),
            "transformer": lambda: TransformerStub(),
        }[kind]()
    return model_for(encoder, KINDS, LABELS).train()


def body(model: MultiTaskModel) -> nn.Module:
    """The encoder's last parameterised part: what `heads` must leave deterministic."""
    encoder = model.encoder
    return {LSTMEncoder: lambda: encoder.lstm, BertEncoder: lambda: encoder.bert,
            TransformerStub: lambda: encoder.transformer}[type(encoder)]()  # fmt: skip


def _tensor(output) -> torch.Tensor:
    if isinstance(output, tuple):  # nn.LSTM: (packed states, (h_n, c_n))
        return torch.cat([output[0].data.flatten(), output[1][0].flatten()])
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    return output


def passes(model: MultiTaskModel, n: int = 2) -> list[dict[str, torch.Tensor]]:
    """n forward passes of both tasks: the body's output and each head's log-probabilities."""
    captured = []
    hook = body(model).register_forward_hook(lambda m, i, o: captured.append(_tensor(o).clone()))
    results = []
    try:
        with torch.no_grad():
            for _ in range(n):
                cls = model(0, Batch(IDS, LENGTHS, torch.tensor([0, 1, 1])))
                tag = model(1, Batch(IDS, LENGTHS, TAGS))
                results.append(
                    {"body": captured[-2], "body_tagging": captured[-1],
                     "cls": cls.example_log_probs, "tag": tag.example_log_probs}
                )  # fmt: skip
    finally:
        hook.remove()
    return results


def dropout_layers_only(model: nn.Module) -> None:
    """The contract before: eval mode, only nn.Dropout-like modules in training mode."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train()


ENCODERS = ["lstm", "bert", "transformer"]


@pytest.mark.parametrize("kind", ENCODERS)
def test_eval_passes_are_identical_and_modes_are_restored(kind, bert_dir):
    model = build(kind, bert_dir)
    body(model).eval()  # a mixed state, to be restored exactly
    before = [m.training for m in model.modules()]
    with inference(model, dropout=False):
        a, b = passes(model)
        assert not any(m.training for m in model.modules())
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [m.training for m in model.modules()] == before


@pytest.mark.parametrize("kind", ENCODERS)
def test_mc_passes_sample_in_the_body_and_the_heads(kind, bert_dir):
    model = build(kind, bert_dir)
    with inference(model, dropout=True, scope="all"):
        a, b = passes(model)
    for key in a:
        assert not torch.allclose(a[key], b[key]), key
    assert model.training and all(m.training for m in model.modules())  # restored


@pytest.mark.parametrize("kind", ENCODERS)
def test_heads_samples_only_the_dropout_before_the_heads(kind, bert_dir):
    model = build(kind, bert_dir)
    with inference(model, dropout=False):
        (reference,) = passes(model, 1)
    with inference(model, dropout=True, scope="heads"):
        a, b = passes(model)
        switched = [m for m in model.modules() if m.training]
    assert switched == [model.encoder.head_dropout]
    for key in ("body", "body_tagging"):  # the encoder body ran as in eval mode
        assert torch.equal(a[key], b[key]) and torch.equal(a[key], reference[key]), key
    for key in ("cls", "tag"):
        assert not torch.allclose(a[key], b[key]), key


def test_bert_attention_dropout_samples(bert_dir, tmp_path):
    """Hidden dropout 0, attention dropout 0.3: only the attention modules can make the passes
    differ. They do under the contract; switching the nn.Dropout modules alone (SDPA reads the
    attention module's own flag) leaves the passes identical."""
    path = tmp_path / "attention_only"
    shutil.copytree(bert_dir, path)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=P)
    (path / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = model_for(BertEncoder(BertConfig(name=str(path))), KINDS, LABELS)
    declared = model.encoder.mc_dropout_modules()
    assert declared and {type(m).__name__ for m in declared} == {"BertSelfAttention"}
    assert all(m in mc_dropout_modules(model, "all") for m in declared)
    with inference(model, dropout=True, scope="all"):
        a, b = passes(model)
    assert not torch.allclose(a["body"], b["body"]) and not torch.allclose(a["cls"], b["cls"])
    dropout_layers_only(model)
    a, b = passes(model)
    assert torch.equal(a["body"], b["body"]) and torch.equal(a["cls"], b["cls"])


def test_lstm_between_layer_dropout_samples():
    """Embedding and head dropout off: only nn.LSTM's own dropout between its two layers is
    left, and it samples only when the LSTM module is in training mode."""
    model = build("lstm")
    model.encoder.dropout.p = model.encoder.head_dropout.p = 0.0
    assert model.encoder.lstm in mc_dropout_modules(model, "all")
    with inference(model, dropout=True, scope="all"):
        a, b = passes(model)
    assert not torch.allclose(a["body"], b["body"]) and not torch.allclose(a["tag"], b["tag"])
    dropout_layers_only(model)
    a, b = passes(model)
    assert torch.equal(a["body"], b["body"])
    single = build("lstm", encoder=lstm_encoder(num_layers=1))
    assert single.encoder.lstm not in mc_dropout_modules(single, "all")  # nothing to drop


def test_transformer_fast_path_is_left_for_the_sampling_one():
    """nn.TransformerEncoderLayer in eval mode under no_grad runs a fused kernel without
    dropout: switching its nn.Dropout modules alone samples nothing in the body."""
    model = build("transformer")
    dropout_layers_only(model)
    a, b = passes(model)
    assert torch.equal(a["body"], b["body"])
    with inference(model, dropout=True, scope="all"):
        a, b = passes(model)
    assert not torch.allclose(a["body"], b["body"])


def test_heads_needs_a_head_dropout_and_scopes_are_checked():
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear, self.dropout = nn.Linear(4, 4), nn.Dropout(P)
            self.output_size = self.pair_output_size = 4

    model = model_for(Bare(), [Kind.CLASSIFICATION], [2])
    assert model.encoder.dropout in mc_dropout_modules(model, "all")
    with pytest.raises(ConfigError, match="head_dropout"):
        mc_dropout_modules(model, "heads")
    with pytest.raises(ConfigError, match="mc_dropout must be one of all, heads"):
        mc_dropout_modules(model, "encoder")


def test_training_draws_the_same_masks_in_the_same_order_as_one_shared_dropout():
    """Ordinary training is unchanged: embeddings, then states, then the pooled vector, each
    through a dropout of rate model.dropout, as when one module did all three."""
    encoder = build("lstm", encoder=lstm_encoder(num_layers=1)).encoder
    torch.manual_seed(7)
    states, pooled = encoder(IDS, LENGTHS)
    torch.manual_seed(7)
    x = F.dropout(encoder.embedding(IDS), P, training=True)
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    out, _ = pad_packed_sequence(encoder.lstm(packed)[0], batch_first=True, total_length=6)
    expected_states = F.dropout(out, P, training=True)
    mean = (expected_states * (IDS != 0).unsqueeze(-1)).sum(1) / LENGTHS.unsqueeze(-1)
    torch.testing.assert_close(states, expected_states, rtol=0, atol=0)
    torch.testing.assert_close(pooled, F.dropout(mean, P, training=True), rtol=0, atol=0)


def test_signal_requests_choose_the_scope(tmp_path):
    """End to end through SignalMeter: with the head dropout off, `heads` passes agree (u = 0)
    while `all` passes still differ (embedding dropout)."""
    tr = trainer_for(tmp_path, "model.dropout=0.3")
    tr.model.encoder.head_dropout.p = 0.0

    def spread(scope: str) -> float:
        request = SignalRequest(outputs={0: None}, mc_samples=4, mc_dropout=scope)
        mc = tr.meter.measure(tr.model, request, seed=0).outputs[0].mc_probs
        return float(np.abs(mc - mc[..., :1]).max())

    assert spread("heads") == 0.0
    assert spread("all") > 1e-3
    tr.model.encoder.head_dropout.p = 0.3
    assert spread("heads") > 1e-3
