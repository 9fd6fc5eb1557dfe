"""The joint BPE encoder: lossless word round trips, determinism, and the encoding contract."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtlrun.tasks.bpe import BpeEncoder, seq2seq_targets
from mtlrun.tasks.encode import IGNORE, encode_tasks
from mtlrun.tasks.spec import Kind, Metric, Split, Task

EN = [
    "the big house is old .",
    "the street is long , isn't it ?",
    "I like the café near the station !",
    "a naïve question : where is the house ?",
    "the old man walks to the street.",
    '"quoted words" and (brackets) too',
]
DE = [
    "das große Haus ist alt .",
    "die Straße ist lang , nicht wahr ?",
    "ich mag das Café am Bahnhof !",
    "eine naive Frage : wo ist das Haus ?",
    "der alte Mann geht zur Straße.",
    "„zitierte Wörter“ und (Klammern) : Größe , Mädchen , Glück",
]
FR = ["où est la gare ?", "l'élève a déjà mangé à midi.", "Ça coûte très cher , garçon !"]
SPLIT_WORDS = lambda texts: [t.split() for t in texts]  # noqa: E731


def _task(name, kind, train, label_names=(), metric=Metric.ACCURACY):
    return Task(name, kind, list(label_names), metric, train, train, train)


def translation() -> Task:
    src, tgt = SPLIT_WORDS(EN), SPLIT_WORDS(DE)
    return _task("mt", Kind.SEQ2SEQ, Split(src, tgt), metric=Metric.BLEU)


def tasks() -> list[Task]:
    fr = SPLIT_WORDS(FR)
    cls = _task("cls", Kind.CLASSIFICATION, Split(fr, [0, 1, 0]), ["a", "b"])
    pos = _task("pos", Kind.SEQ2SEQ, Split(fr, [[0, 1], [2], []]), ["X", "Y", "Z"])
    return [translation(), cls, pos]


@pytest.fixture(scope="module")
def fitted() -> BpeEncoder:
    encoder = BpeEncoder(vocab_size=300, max_length=64)
    encoder.fit(tasks())
    return encoder


def test_specials_come_first(fitted):
    assert fitted.vocab[:3] == ["[PAD]", "[UNK]", "</s>"]
    assert fitted.eos_id == 2
    assert len(fitted.vocab) <= 300
    assert len(set(fitted.vocab)) == len(fitted.vocab)


@pytest.mark.parametrize("text", EN + DE + FR)
def test_training_texts_round_trip(fitted, text):
    words = text.split()
    assert fitted.decode(fitted.encode_words([words])[0]) == " ".join(words)


@pytest.mark.parametrize(
    "text",
    ["Straße , Größe : Haus.", "déjà où Ça ?", "Haus! Straße? café,", "ß ä ö ü é è à ç ï"],
)
def test_unseen_texts_of_known_characters_round_trip(fitted, text):
    ids = fitted.encode_words([text.split()])[0]
    assert 1 not in ids  # no [UNK]
    assert fitted.decode(ids) == text


def test_unknown_characters_become_unk_and_decode_without_gaps(fitted):
    ids = fitted.encode_words([["Haus", "→", "Straße"]])[0]
    assert 1 in ids
    assert fitted.decode(ids) == "Haus Straße"


def test_decode_drops_special_tokens(fitted):
    ids = fitted.encode_words([["das", "Haus"]])[0]
    assert fitted.decode([0] + ids + [2, 0, 0]) == "das Haus"


def test_joint_vocabulary_learns_target_words():
    """A word only in the outputs of a text-output seq2seq task is learned as one subword; a
    symbol output's label names are not text."""
    src = [["x", "y"]] * 5
    mt = _task("mt", Kind.SEQ2SEQ, Split(src, [["Zielwort"]] * 5), metric=Metric.BLEU)
    sym = _task("sym", Kind.SEQ2SEQ, Split(src, [[0]] * 5), ["Symbolname"])
    encoder = BpeEncoder(vocab_size=100, max_length=8)
    encoder.fit([mt, sym])
    assert "▁Zielwort" in encoder.vocab
    assert not any("Symbol" in t for t in encoder.vocab)
    assert encoder.encode_words([["Zielwort"]]) == [[encoder.vocab.index("▁Zielwort")]]


def test_training_is_deterministic(fitted):
    again = BpeEncoder(vocab_size=300, max_length=64)
    again.fit(tasks())
    assert again.vocab == fitted.vocab
    texts = SPLIT_WORDS(EN + DE + FR)
    assert again.encode_words(texts) == fitted.encode_words(texts)


@pytest.mark.slow
def test_training_is_deterministic_across_processes(fitted, tmp_path):
    """A fresh process (other hash seeds, other thread timing) learns the same merges."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.test_bpe import BpeEncoder, tasks;"
        "e = BpeEncoder(300, 64); e.fit(tasks());"
        "print(json.dumps(json.loads(e.tokenizer.to_str())['model']))"
    )
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})  # fmt: skip
    assert json.loads(out.stdout) == json.loads(fitted.tokenizer.to_str())["model"]


def test_classification_cuts_to_max_length_and_pads_empty_texts():
    encoder = BpeEncoder(vocab_size=300, max_length=4)
    encoder.fit(tasks())
    split = Split([EN[0].split(), [], ["Haus"]], [1, 0, 1])
    enc = encoder.encode(split, Kind.CLASSIFICATION)
    full = encoder.encode_words(split.tokens)
    assert enc.lengths.tolist() == [min(4, len(full[0])), 1, len(full[2])]
    assert enc.ids[enc.offsets[1]] == 0  # the empty text is one [PAD]
    assert enc.ids[: enc.offsets[1]].tolist() == full[0][:4]
    assert enc.labels.tolist() == [1, 0, 1] and enc.ids.dtype == np.int32


def test_pair_is_first_then_second_with_segments(fitted):
    split = Split([["das", "Haus"]], [2], pair=[["the", "house", "."]])
    enc = fitted.encode(split, Kind.PAIR_CLASSIFICATION)
    a, b = fitted.encode_words(split.tokens + split.pair)
    assert enc.ids.tolist() == a + b
    assert enc.segments.tolist() == [0] * len(a) + [1] * len(b)
    assert enc.labels.tolist() == [2]


def test_tagging_labels_go_to_first_subwords(fitted):
    words = ["Bahnhofstraße", "ist", "zauberhaft", "."]
    enc = fitted.encode(Split([words], [[4, 5, 6, 7]]), Kind.TAGGING)
    pieces = [fitted.encode_words([[w]])[0] for w in words]
    assert len(pieces[0]) > 1  # split into several subwords
    expected = [
        tag if j == 0 else IGNORE
        for tag, p in zip([4, 5, 6, 7], pieces, strict=True)
        for j in range(len(p))
    ]
    assert enc.labels.tolist() == expected
    assert enc.ids.tolist() == [i for p in pieces for i in p]


def test_tagging_cuts_ids_and_labels_together():
    encoder = BpeEncoder(vocab_size=300, max_length=3)
    encoder.fit(tasks())
    enc = encoder.encode(Split([["Bahnhofstraße", "ist"], []], [[1, 2], [3]]), Kind.TAGGING)
    assert enc.lengths.tolist() == [3, 1]
    assert len(enc.labels) == len(enc.ids)
    assert enc.labels[0] == 1 and enc.labels[3] == IGNORE  # the empty text: [PAD] untagged


def test_seq2seq_text_output_targets_end_with_eos(fitted):
    split = translation().train
    enc = fitted.encode(split, Kind.SEQ2SEQ)
    assert len(enc) == len(split) and len(enc.label_offsets) == len(split) + 1
    assert enc.label_offsets.dtype == np.int64 and enc.labels.dtype == np.int64
    for i, target in enumerate(split.labels):
        row = enc.labels[enc.label_offsets[i] : enc.label_offsets[i + 1]].tolist()
        assert row[-1] == 2 and 2 not in row[:-1]
        assert fitted.decode(row) == " ".join(target)
        assert (
            enc.ids[enc.offsets[i] : enc.offsets[i + 1]].tolist()
            == fitted.encode_words([split.tokens[i]])[0]
        )


def test_seq2seq_targets_are_cut_to_max_length():
    encoder = BpeEncoder(vocab_size=300, max_length=5)
    encoder.fit(tasks())
    enc = encoder.encode(translation().train, Kind.SEQ2SEQ)
    assert np.diff(enc.label_offsets).max() == 5
    assert enc.labels[enc.label_offsets[1:] - 1].tolist() == [2] * len(enc)
    assert enc.lengths.max() == 5


def test_seq2seq_symbol_output_is_three_plus_index(fitted):
    enc = fitted.encode(Split([["où"], ["est"], ["la"]], [[0, 2], [1], []]), Kind.SEQ2SEQ)
    assert enc.labels.tolist() == [3, 5, 2, 4, 2, 2]
    assert enc.label_offsets.tolist() == [0, 3, 5, 6]


def test_seq2seq_targets_helper():
    vocab = {"a": 7, "b": 8}
    to_ids = lambda texts: [[vocab.get(w, 1) for w in t] for t in texts]  # noqa: E731
    ids, offsets = seq2seq_targets(to_ids, [["a", "b", "zz"], ["b"], []], max_length=3)
    assert ids.tolist() == [7, 8, 2, 8, 2, 2] and offsets.tolist() == [0, 3, 5, 6]
    ids, offsets = seq2seq_targets(to_ids, [[1, 0], [np.int64(4)]], max_length=1)
    assert ids.tolist() == [2, 2] and offsets.tolist() == [0, 1, 2]
    ids, _ = seq2seq_targets(to_ids, [[1, 0], [4]], max_length=10)
    assert ids.tolist() == [4, 3, 2, 7, 2]
    with pytest.raises(ValueError, match="mix"):
        seq2seq_targets(to_ids, [["a"], [1]], max_length=4)


def test_save_and_load_give_the_same_ids(fitted, tmp_path):
    fitted.save(tmp_path)
    loaded = BpeEncoder(vocab_size=300, max_length=64)
    loaded.load(tmp_path)
    texts = SPLIT_WORDS(EN + DE + FR) + [["Größe", "→"]]
    assert loaded.encode_words(texts) == fitted.encode_words(texts)
    assert loaded.vocab == fitted.vocab
    assert loaded.decode(loaded.encode_words([["Straße."]])[0]) == "Straße."
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json"):
        loaded.load(tmp_path)


def test_unfitted_encoder_says_so():
    with pytest.raises(RuntimeError, match="fit"):
        BpeEncoder(100, 8).encode_words([["a"]])


def test_cache_spec_keys_the_settings():
    assert BpeEncoder(300, 64).cache_spec() != BpeEncoder(301, 64).cache_spec()
    assert BpeEncoder(300, 64).cache_spec() != BpeEncoder(300, 65).cache_spec()


def test_encode_tasks_with_the_cache(tmp_path):
    cls = tasks()[1]
    first = encode_tasks([cls], BpeEncoder(200, 16), tmp_path)
    cached_encoder = BpeEncoder(200, 16)
    second = encode_tasks([cls], cached_encoder, tmp_path)  # loaded from the cache
    assert cached_encoder.tokenizer is not None
    for s in ("train", "dev", "test"):
        assert first[0].splits[s].ids.tolist() == second[0].splits[s].ids.tolist()
