"""The task-kind seam (mtlrun/kinds): every kind registered, collation per kind, heads' own and
shared parameters, and checkpoints written before the seam still loading."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import model_for
from torch import nn

from mtlrun.config import DecoderConfig, LSTMConfig
from mtlrun.kinds import KINDS, HeadContext, kind_of
from mtlrun.models.lstm import LSTMEncoder
from mtlrun.models.multitask import MultiTaskModel
from mtlrun.tasks.encode import IGNORE, EncodedSplit
from mtlrun.tasks.spec import Kind, Metric, Split, Task

CPU = torch.device("cpu")


def test_every_kind_has_its_module():
    assert set(KINDS) == set(Kind)
    assert all(kind.kind == k for k, kind in KINDS.items())


def test_tagging_collate_pads_ids_and_tag_labels():
    split = EncodedSplit(ids=np.array([5, 6, 7, 8, 9, 10], dtype=np.int32),
                         offsets=np.array([0, 3, 4, 6]),
                         labels=np.array([1, 2, 3, 4, 5, 6]))  # fmt: skip
    batch = KINDS[Kind.TAGGING].collate(split, np.array([2, 0]), CPU)
    assert batch.ids.tolist() == [[9, 10, 0], [5, 6, 7]]
    assert batch.lengths.tolist() == [2, 3]
    assert batch.labels.tolist() == [[5, 6, IGNORE], [1, 2, 3]]
    assert KINDS[Kind.TAGGING].rows(batch).tolist() == [2, 3]


def test_classification_collate_takes_one_label_per_example_and_pair_segments():
    split = EncodedSplit(ids=np.array([5, 6, 7, 8], dtype=np.int32), offsets=np.array([0, 3, 4]),
                         labels=np.array([1, 0]),
                         segments=np.array([0, 0, 1, 0], np.int8))  # fmt: skip
    batch = KINDS[Kind.PAIR_CLASSIFICATION].collate(split, np.array([1, 0]), CPU)
    assert batch.labels.tolist() == [0, 1]
    assert batch.segments.tolist() == [[0, 0, 0], [0, 0, 1]]


def test_seq2seq_collate_reads_outputs_through_their_own_offsets():
    split = EncodedSplit(ids=np.array([5, 6, 7, 8], dtype=np.int32), offsets=np.array([0, 3, 4]),
                         labels=np.array([11, 12, 13, 2, 14, 2]),
                         label_offsets=np.array([0, 4, 6]))  # fmt: skip
    batch = KINDS[Kind.SEQ2SEQ].collate(split, np.array([1, 0]), CPU)
    assert batch.ids.tolist() == [[8, 0, 0], [5, 6, 7]]
    assert batch.labels.tolist() == [[14, 2, IGNORE, IGNORE], [11, 12, 13, 2]]
    assert KINDS[Kind.SEQ2SEQ].rows(batch).tolist() == [2, 4]
    assert split.batch_lengths.tolist() == [4, 2]  # the longer of source and output


def lstm() -> LSTMEncoder:
    cfg = LSTMConfig(hidden_size=8, dropout=0.0)
    return LSTMEncoder(nn.Embedding(20, 4), cfg)


def seq2seq_task(name: str, symbols: list[str] | None = None) -> Task:
    empty = Split([], [])
    return Task(name, Kind.SEQ2SEQ, symbols or [], Metric.BLEU, empty, empty, empty)


def test_a_shared_decoder_counts_as_shared_and_every_parameter_is_listed_once():
    cfg = SimpleNamespace(crf=False, decoder=DecoderConfig(sharing="shared", hidden_size=8,
                                                           embedding_dim=8))  # fmt: skip
    encoder, context = lstm(), HeadContext(vocab_size=20)
    tasks = [seq2seq_task("de"), seq2seq_task("fr"), seq2seq_task("pos", ["NN", "VB"])]
    model = MultiTaskModel(encoder, [kind_of(t).head(encoder, t, cfg, context) for t in tasks])
    assert model.heads[0].decoder is model.heads[1].decoder
    assert model.heads[2].decoder is not model.heads[0].decoder
    own = [model.task_parameters(k) for k in range(3)]
    assert own[0] == [] and own[1] == []  # the shared decoder is nobody's own
    listed = [id(p) for p in model.shared_parameters()] + [id(p) for ps in own for p in ps]
    assert sorted(listed) == sorted(id(p) for p in model.parameters())  # each exactly once
    assert model.heads[2].decoder.embedding.num_embeddings == 3 + 2  # </s> etc. + symbols


def test_checkpoints_from_before_the_seam_load_into_the_kinds_heads():
    torch.manual_seed(0)
    model = model_for(lstm(), [Kind.CLASSIFICATION, Kind.TAGGING], [3, 4], crf=True)
    state = model.state_dict()
    old = {}  # the names the model used before kinds owned the heads
    for key, value in state.items():
        key = key.replace("heads.0.linear.", "heads.0.").replace("heads.1.linear.", "heads.1.")
        old[key.replace("heads.1.crf.", "crfs.1.")] = value.clone() + 1
    assert "crfs.1.transitions" in old and "heads.0.weight" in old
    fresh = model_for(lstm(), [Kind.CLASSIFICATION, Kind.TAGGING], [3, 4], crf=True)
    fresh.load_state_dict(old)  # strict
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key] + 1), key


def test_checkpoint_selection_turns_lower_is_better_metrics(monkeypatch):
    from mtlrun.training.trainer import selection_score

    assert selection_score([0.2, 0.6], [Metric.ACCURACY, Metric.BLEU]) == pytest.approx(0.4)
    monkeypatch.setattr(Metric, "higher_is_better", property(lambda m: m != Metric.BLEU))
    # a lower-is-better metric counts negated: 0.2 BLEU beats 0.6 BLEU at equal accuracy
    assert selection_score([0.5, 0.2], [Metric.ACCURACY, Metric.BLEU]) > selection_score(
        [0.5, 0.6], [Metric.ACCURACY, Metric.BLEU]
    )


def test_a_task_can_have_its_own_decoder_dropout_unless_it_shares_the_decoder():
    from mtlrun.errors import ConfigError

    dec = DecoderConfig(hidden_size=8, embedding_dim=8, dropout=0.1, task_dropout={"de": 0.25})
    encoder, context = lstm(), HeadContext(vocab_size=20)
    heads = [kind_of(t).head(encoder, t, SimpleNamespace(decoder=dec), context)
             for t in (seq2seq_task("de"), seq2seq_task("fr"))]  # fmt: skip
    rates = [{m.p for m in h.modules() if isinstance(m, nn.Dropout)} for h in heads]
    assert rates == [{0.25}, {0.1}]
    shared = SimpleNamespace(decoder=DecoderConfig(sharing="shared", task_dropout={"de": 0.25}))
    with pytest.raises(ConfigError, match="task_dropout.de: the task shares its decoder"):
        kind_of(seq2seq_task("de")).head(encoder, seq2seq_task("de"), shared, HeadContext(20))
