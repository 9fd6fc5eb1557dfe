"""NLTK Penn Treebank sample reader: a handmade zip, errors, and the real
nltk_data/corpora/dependency_treebank.zip in ../shared/data (skipped when absent)."""

import re
import zipfile

import pytest
from conftest import SHARED_DATA

from mtlrun.errors import DataError
from mtlrun.tasks.treebank import SPLITS, read_ptb_files, read_ptb_sample, split_of

FILES = {
    "dependency_treebank/wsj_0001.dp": "Pierre\tNNP\t2\nVinken\tNNP\t0\n\n"
    "He\tPRP\t2\nleft\tVBD\t0\n.\t.\t2\n",
    "dependency_treebank/wsj_0150.dp": "Who\tWP\t2\n*T*-1\t-NONE-\t2\ncame\tVBD\t0\n\n\n",
    "dependency_treebank/wsj_0199.dp": "\nStocks\tNNS\t2\nfell\tVBD\t0\r\n",
    "dependency_treebank/README": "not a .dp file\n",
}


def write_zip(directory, files):
    with zipfile.ZipFile(directory / "dependency_treebank.zip", "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return directory


def test_tiny_zip_split_by_file(tmp_path):
    splits = read_ptb_sample(write_zip(tmp_path, FILES))
    assert splits == {
        "train": [
            (["Pierre", "Vinken"], ["NNP", "NNP"]),
            (["He", "left", "."], ["PRP", "VBD", "."]),
        ],
        "dev": [(["Who", "came"], ["WP", "VBD"])],  # the -NONE- trace token is dropped
        "test": [(["Stocks", "fell"], ["NNS", "VBD"])],
    }  # fmt: skip
    assert list(read_ptb_files(tmp_path)) == [1, 150, 199]


def test_split_boundaries():
    assert [split_of(n) for n in (1, 139, 140, 169, 170, 199)] == [
        "train", "train", "dev", "dev", "test", "test"]  # fmt: skip
    with pytest.raises(ValueError, match="wsj_0200"):
        split_of(200)


def test_missing_zip_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"dependency_treebank.zip not found in .*nltk.downloader"):
        read_ptb_sample(tmp_path)


@pytest.mark.parametrize("bad_line", ["fell\tVBD", "fell VBD 0", "fell\tVBD\troot", "\tVBD\t0"])
def test_malformed_line_names_member_and_line(tmp_path, bad_line):
    files = {**FILES, "dependency_treebank/wsj_0002.dp": f"Stocks\tNNS\t2\n{bad_line}\n"}
    with pytest.raises(
        DataError, match=r"dependency_treebank.zip/dependency_treebank/wsj_0002\.dp:2:"
    ):
        read_ptb_sample(write_zip(tmp_path, files))


def test_not_a_zip_and_empty_zip(tmp_path):
    (tmp_path / "dependency_treebank.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        read_ptb_sample(tmp_path)
    with pytest.raises(DataError, match="no dependency_treebank/wsj_NNNN.dp members"):
        read_ptb_sample(write_zip(tmp_path, {"dependency_treebank/README": "x"}))


CORPORA = SHARED_DATA / "nltk_data" / "corpora"


@pytest.mark.realdata
@pytest.mark.skipif(not CORPORA.is_dir(), reason=f"real data not found at {CORPORA}")
def test_real_sample_counts_and_tags():
    files = read_ptb_files(CORPORA)
    assert list(files) == list(range(1, 200))
    splits = read_ptb_sample(CORPORA)
    counts = {s: (len(v), sum(len(w) for w, _ in v)) for s, v in splits.items()}
    # 94,084 tokens in all: treebank/combined/*.mrg has 100,676 leaves, 6,592 of them -NONE-
    assert counts == {"train": (3068, 73842), "dev": (433, 10627), "test": (413, 9615)}
    for split, numbers in SPLITS.items():  # no split shares a file; each is its files in order
        assert splits[split] == [s for n in numbers for s in files[n]]
    tags = {t for sentences in splits.values() for _, ts in sentences for t in ts}
    assert "-NONE-" not in tags
    assert {"NN", "NNS", "NNP", "VBD", "VBZ", "DT", "IN", "JJ", ",", ".", "-LRB-"} <= tags
    assert len(tags) == 45 and all(
        re.fullmatch(r"[A-Z]{2,4}\$?|[.,:#$`']+|-[LR]RB-", t) for t in tags
    )
    for words, ts in (s for v in splits.values() for s in v):
        assert len(words) == len(ts) >= 1
    assert splits["train"][0][0][:3] == ["Pierre", "Vinken", ","]
