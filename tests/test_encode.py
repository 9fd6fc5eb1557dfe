import numpy as np

from mtlrun.config import VocabConfig
from mtlrun.tasks.encode import WordEncoder, encode_tasks
from mtlrun.tasks.spec import Kind, Metric, Split, Task


def toy_tasks():
    cls = Task("cls", Kind.CLASSIFICATION, ["n", "p"], Metric.ACCURACY,
               Split([["a", "b", "a"], ["c"]], [0, 1]), Split([["a", "zzz"]], [1]),
               Split([[]], [0]), fingerprint={"v": 1})  # fmt: skip
    tag = Task("tag", Kind.TAGGING, ["O", "B-X"], Metric.SPAN_F1,
               Split([["a", "b", "c", "d"]], [[0, 1, 0, 1]]), Split([["b"]], [[1]]),
               Split([["d", "a"]], [[1, 0]]), fingerprint={"v": 1})  # fmt: skip
    return [cls, tag]


def _encode(vocab_cfg, max_length, cache_dir):
    words = WordEncoder(vocab_cfg, max_length)
    encoded = encode_tasks(toy_tasks(), words, cache_dir)
    return words.tokenizer, encoded


def test_vocab_from_training_data_with_unknown_words(tmp_path):
    tok, enc = _encode(VocabConfig(), 3, tmp_path)
    vocab = tok.get_vocab()
    assert vocab["[PAD]"] == 0 and vocab["[UNK]"] == 1 and vocab["a"] == 2  # most frequent first
    dev = enc[0].splits["dev"]
    assert dev.ids.tolist() == [vocab["a"], 1]  # "zzz" is not in training data
    assert enc[0].splits["test"].lengths.tolist() == [1]  # empty text -> one pad token
    tag_train = enc[1].splits["train"]
    assert tag_train.ids.tolist() == [vocab[w] for w in "abc"]  # truncated to max_length=3
    assert tag_train.labels.tolist() == [0, 1, 0]


def test_min_freq(tmp_path):
    tok, _ = _encode(VocabConfig(min_freq=2), 100, tmp_path)
    assert set(tok.get_vocab()) == {"[PAD]", "[UNK]", "a", "b", "c", "d"} - {"d"}


def test_second_run_reads_the_cache(tmp_path):
    _, first = _encode(VocabConfig(), 100, tmp_path)
    entries = list((tmp_path / "encoded").iterdir())
    assert len(entries) == 1
    # a cache hit reads the files: a marked entry proves it is used
    dev = first[0].splits["dev"]
    np.savez(entries[0] / "cls.dev.npz", ids=dev.ids + 7, offsets=dev.offsets, labels=dev.labels)
    _, second = _encode(VocabConfig(), 100, tmp_path)
    assert second[0].splits["dev"].ids.tolist() == (dev.ids + 7).tolist()


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    _, first = _encode(VocabConfig(), 100, tmp_path)
    entry = next((tmp_path / "encoded").iterdir())
    (entry / "cls.dev.npz").write_bytes(b"garbage")
    _, second = _encode(VocabConfig(), 100, tmp_path)
    assert second[0].splits["dev"].ids.tolist() == first[0].splits["dev"].ids.tolist()


def test_cache_round_trip_is_identical(tmp_path):
    _, first = _encode(VocabConfig(), 100, tmp_path)
    _, second = _encode(VocabConfig(), 100, tmp_path)
    for a, b in zip(first, second, strict=True):
        for s in ("train", "dev", "test"):
            for field in ("ids", "offsets", "labels"):
                assert np.array_equal(getattr(a.splits[s], field), getattr(b.splits[s], field))


def test_different_inputs_use_different_cache_entries(tmp_path):
    _encode(VocabConfig(), 100, tmp_path)
    _encode(VocabConfig(), 50, tmp_path)
    assert len(list((tmp_path / "encoded").iterdir())) == 2


def test_dev_and_test_words_with_pretrained_vectors_join_the_vocabulary(tmp_path):
    """Words only seen in dev/test keep their pretrained vectors instead of becoming [UNK]
    (exact or lower-cased match); words without a vector stay unknown; labels play no part."""
    words = WordEncoder(VocabConfig(), 100, "vectors.txt", lambda: {"zzz", "d"})
    tasks = toy_tasks()
    tasks[0].test.tokens[0] = ["ZZZ", "qqq"]
    encoded = encode_tasks(tasks, words, tmp_path)
    vocab = words.tokenizer.get_vocab()
    assert "zzz" in vocab and "ZZZ" in vocab and "qqq" not in vocab
    assert vocab["zzz"] > vocab["d"]  # after every training word
    assert encoded[0].splits["dev"].ids.tolist() == [vocab["a"], vocab["zzz"]]
    plain = WordEncoder(VocabConfig(), 100)
    encode_tasks(toy_tasks(), plain, tmp_path)
    assert "zzz" not in plain.tokenizer.get_vocab()  # no pretrained file: training words only
