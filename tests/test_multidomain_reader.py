import gzip
from pathlib import Path

import pytest

from mtlrun.config import MultiDomain16Config
from mtlrun.errors import DataError
from mtlrun.tasks.multidomain import load_domain, load_multidomain16
from mtlrun.tasks.text_files import read_lines


def write_domain(directory: Path, domain: str, train: bytes, test: bytes, gz: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for split, data in (("train", train), ("test", test)):
        path = directory / f"{domain}.task.{split}"
        if gz:
            with gzip.open(f"{path}.gz", "wb") as f:
                f.write(data)
        else:
            path.write_bytes(data)


# Latin-1 bytes (0xe9 = é) and 0x85 (NEL) inside lines, as in MR.task.* of the real corpus.
LATIN1_TRAIN = (
    b"1\tune caf\xe9 tr\xe8s bien\n"
    b"0\tbad \x85 really bad\n"
    b"1\tplain ascii line\n"
    b"0\tanother \x85\x85 one\n"
    b"1\tlast line is dev\n"
)
TEST = b"0\tnope\n1\tyes \x85 yes\n"


@pytest.mark.parametrize("gz", [False, True])
def test_latin1_and_nel_bytes_do_not_split_lines(tmp_path, gz):
    write_domain(tmp_path, "MR", LATIN1_TRAIN, TEST, gz)
    task = load_domain(tmp_path, "MR", dev_size=2)
    assert len(task.train) == 3 and len(task.dev) == 2 and len(task.test) == 2
    assert task.train.labels == [1, 0, 1] and task.dev.labels == [0, 1]
    assert task.train.tokens[0] == ["une", "café", "très", "bien"]
    assert task.train.tokens[1] == ["bad", "\x85", "really", "bad"]  # 0x85 stays a token
    assert task.test.tokens[1] == ["yes", "\x85", "yes"]


def test_read_lines_splits_on_newline_only(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"a\x85b\r\nc\x0bd\ne")
    assert list(read_lines(path)) == [(1, "a\x85b"), (2, "c\x0bd"), (3, "e")]


def test_malformed_line_names_file_and_line(tmp_path):
    write_domain(
        tmp_path, "books", b"1\tgood\n0\tbad\nthis line has no label\n1\tok\n", TEST, False
    )
    with pytest.raises(DataError, match=r"books\.task\.train:3: expected 'label<TAB>text'"):
        load_domain(tmp_path, "books", dev_size=1)


def test_bad_label_is_malformed(tmp_path):
    write_domain(tmp_path, "books", b"1\tgood\n2\tbad\n", TEST, False)
    with pytest.raises(DataError, match=r"books\.task\.train:2"):
        load_domain(tmp_path, "books", dev_size=1)


def test_missing_directory_says_where_and_how(tmp_path):
    cfg = MultiDomain16Config(path=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"nowhere does not exist.*download_data\.py"):
        load_multidomain16(cfg, None)


def test_missing_file_is_named(tmp_path):
    write_domain(tmp_path, "books", LATIN1_TRAIN, TEST, False)
    (tmp_path / "books.task.test").unlink()
    with pytest.raises(DataError, match=r"missing books\.task\.test"):
        load_domain(tmp_path, "books", dev_size=1)


def test_too_small_for_dev_split(tmp_path):
    write_domain(tmp_path, "books", b"1\ta\n0\tb\n", TEST, False)
    with pytest.raises(DataError, match="too few"):
        load_domain(tmp_path, "books", dev_size=2)
