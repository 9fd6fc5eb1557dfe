import hashlib
import os
import re
import time

import numpy as np
import pytest

from mtlrun.config import VocabConfig
from mtlrun.tasks import encode
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


# --- the cache is keyed on content; temp entries of killed runs are cleaned up ---------------
def multidomain_tasks(directory):
    from mtlrun.tasks.multidomain import load_domain

    return [load_domain(directory, "books", dev_size=1)]


def test_an_edited_file_with_the_same_size_and_mtime_is_encoded_again(tmp_path, monkeypatch):
    from mtlrun.tasks import text_files

    (tmp_path / "books.task.train").write_text("1\tgood film\n0\tpoor plot\n1\tgood cast\n")
    (tmp_path / "books.task.test").write_text("1\tgood\n")
    train = tmp_path / "books.task.train"
    words = WordEncoder(VocabConfig(), 100)
    first = encode_tasks(multidomain_tasks(tmp_path), words, tmp_path / "cache")
    assert "good" in words.vocab
    before = train.stat()
    train.write_text("1\tfine film\n0\tpoor plot\n1\tfine cast\n")  # same size
    os.utime(train, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (train.stat().st_size, train.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    monkeypatch.setattr(text_files, "_DIGESTS", {})  # as a new process: nothing remembered
    monkeypatch.setattr(text_files, "_LAST_READ", {})
    words = WordEncoder(VocabConfig(), 100)
    second = encode_tasks(multidomain_tasks(tmp_path), words, tmp_path / "cache")
    assert [words.vocab[i] for i in second[0].splits["train"].ids] == ["fine", "film", "poor",
                                                                        "plot"]  # fmt: skip
    assert "good" not in words.vocab  # not the stale entry
    assert first[0].task.fingerprint != second[0].task.fingerprint
    assert len(list((tmp_path / "cache" / "encoded").iterdir())) == 2


def test_the_fingerprint_is_of_the_bytes_read(tmp_path):
    from mtlrun.tasks.text_files import content_digest, file_digests, read_lines

    path = tmp_path / "f.txt"
    path.write_bytes(b"abc\n")
    list(read_lines(path))  # hashed while read: no second read for the fingerprint
    path.write_bytes(b"abd\n")  # changed after it was read
    assert file_digests([path]) == {str(path): hashlib.sha256(b"abc\n").hexdigest()}
    assert content_digest(path) == hashlib.sha256(b"abd\n").hexdigest()
    list(read_lines(path))
    assert file_digests([path]) == {str(path): hashlib.sha256(b"abd\n").hexdigest()}


def test_stale_temp_entries_are_removed_and_live_ones_kept(tmp_path):
    encoded = tmp_path / "encoded"
    encoded.mkdir()
    host = encode._host()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # reaped: this pid belongs to no live process now

    class dead:
        pass

    dead.pid = pid
    names = {
        "dead": f".tmp-{host}-{dead.pid}-abc123",
        "live": f".tmp-{host}-{os.getpid()}-def456",
        "elsewhere": f".tmp-otherhost-{dead.pid}-ghi789",  # another host's: its pid says nothing
        "old": f".tmp-otherhost-{dead.pid}-jkl012",
        "old_unnamed": ".tmp-x1y2z3ab",  # the format before host and pid
    }
    for name in names.values():
        (encoded / name).mkdir()
        (encoded / name / "sent0.train.npz").write_bytes(b"partial")
    day_old = time.time() - 25 * 3600
    for key in ("old", "old_unnamed"):
        os.utime(encoded / names[key], (day_old, day_old))
    encode_tasks(toy_tasks(), WordEncoder(VocabConfig(), 100), tmp_path)
    left = {p.name for p in encoded.iterdir() if p.name.startswith(".tmp-")}
    assert left == {names["live"], names["elsewhere"]}


def test_an_interrupted_write_leaves_a_temp_dir_named_for_its_process(tmp_path, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill: no cleanup runs

    monkeypatch.setattr(encode.np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        encode_tasks(toy_tasks(), WordEncoder(VocabConfig(), 100), tmp_path)
    (left,) = (tmp_path / "encoded").iterdir()
    assert re.fullmatch(rf"\.tmp-{re.escape(encode._host())}-{os.getpid()}-[a-z0-9_]+", left.name)


def test_unreadable_tokenizer_in_an_entry_is_rebuilt(tmp_path):
    _, first = _encode(VocabConfig(), 100, tmp_path)
    entry = next((tmp_path / "encoded").iterdir())
    (entry / "tokenizer.json").write_text('{"model": "not a tokenizer"}')
    tok, second = _encode(VocabConfig(), 100, tmp_path)
    assert second[0].splits["dev"].ids.tolist() == first[0].splits["dev"].ids.tolist()
    assert "a" in tok.get_vocab()


def test_a_bug_while_reading_an_entry_is_not_taken_for_damage(tmp_path, monkeypatch):
    _encode(VocabConfig(), 100, tmp_path)

    def broken(directory, task_name):
        raise TypeError("a bug")

    monkeypatch.setattr(encode, "_load_splits", broken)
    with pytest.raises(TypeError, match="a bug"):
        _encode(VocabConfig(), 100, tmp_path)


def test_pretrained_vectors_file_content_is_part_of_the_key(tmp_path):
    vectors = tmp_path / "v.txt"
    vectors.write_text("zzz 1 2\n")
    spec = WordEncoder(VocabConfig(), 100, str(vectors)).cache_spec()
    vectors.write_text("yyy 1 2\n")  # same size
    assert WordEncoder(VocabConfig(), 100, str(vectors)).cache_spec() != spec
