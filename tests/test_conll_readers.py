"""CoNLL column readers: handmade fixtures, IOB1 -> IOB2, and the published counts of the real
files in ../shared/data (skipped when absent)."""

import gzip

import numpy as np
import pytest
from conftest import SHARED_DATA

from mtlrun.errors import DataError
from mtlrun.tasks.conll import iob1_to_iob2, read_columns, read_conllu
from mtlrun.tasks.spec import Metric
from mtlrun.training.metrics import compute_metric

CONLL2003 = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
"""


def test_columns_skip_docstart_and_split_sentences(tmp_path):
    path = tmp_path / "eng.train"
    path.write_text(CONLL2003)
    sentences = read_columns(path, 4)
    assert [[row[0] for row in s] for s in sentences] == [
        ["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]  # fmt: skip
    assert sentences[0][2] == ["German", "JJ", "I-NP", "I-MISC"]


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("Confidence NN B-NP\nin IN\n")
    with pytest.raises(DataError, match=r"train.txt:2: expected 3 columns, got 2"):
        read_columns(path, 3)


@pytest.mark.parametrize(
    "iob1, iob2",
    [
        (["I-ORG", "O", "I-MISC", "O"], ["B-ORG", "O", "B-MISC", "O"]),
        (["I-PER", "I-PER"], ["B-PER", "I-PER"]),
        (["I-LOC", "B-LOC", "I-LOC"], ["B-LOC", "B-LOC", "I-LOC"]),  # two adjacent LOCs
        (["I-ORG", "I-PER"], ["B-ORG", "B-PER"]),  # type change starts a chunk
        (["O", "O"], ["O", "O"]),
    ],
)
def test_iob1_to_iob2(iob1, iob2):
    assert iob1_to_iob2(iob1) == iob2


def test_iob1_scored_raw_would_differ():
    """Why the conversion matters: `I-LOC B-LOC` in IOB1 is two chunks; mtlrun's span F1
    (seqeval, IOB2) reads the converted tags as two chunks, and the one-chunk reading
    `B-LOC I-LOC` as a different answer."""
    names = ["O", "B-LOC", "I-LOC"]
    gold = iob1_to_iob2(["I-LOC", "B-LOC"])
    assert gold == ["B-LOC", "B-LOC"]
    gold_ids = [np.array([names.index(t) for t in gold])]
    one_chunk = [np.array([1, 2])]  # B-LOC I-LOC
    assert compute_metric(Metric.SPAN_F1, gold_ids, gold_ids, names) == 1.0
    assert compute_metric(Metric.SPAN_F1, gold_ids, one_chunk, names) == 0.0


CONLLU = """# sent_id = 1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t0:root\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

"""


@pytest.mark.parametrize("tagset, tags", [("upos", ["AUX", "PART", "VERB", "PUNCT"]),
                                          ("xpos", ["VBP", "RB", "VB", "."])])  # fmt: skip
def test_conllu_words_and_tags(tmp_path, tagset, tags):
    path = tmp_path / "x.conllu.gz"
    path.write_bytes(gzip.compress(CONLLU.encode()))
    assert read_conllu(path, tagset) == [(["Do", "n't", "go", "."], tags)]


def test_conllu_bad_line(tmp_path):
    path = tmp_path / "x.conllu"
    path.write_text("1\tDo\tdo\n")
    with pytest.raises(DataError, match="x.conllu:1: a CoNLL-U line has 10"):
        read_conllu(path)


needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")


@needs_data
def test_conll2003_published_counts():
    counts = {}
    for name in ("eng.train", "eng.testa", "eng.testb"):
        sentences = read_columns(SHARED_DATA / "conll2003" / name, 4)
        counts[name] = (len(sentences), sum(map(len, sentences)))
    assert counts == {"eng.train": (14041, 203621), "eng.testa": (3250, 51362),
                      "eng.testb": (3453, 46435)}  # fmt: skip


@needs_data
def test_conll2000_published_counts():
    counts = {}
    for name in ("train.txt", "test.txt"):
        sentences = read_columns(SHARED_DATA / "conll2000" / name, 3)
        counts[name] = (len(sentences), sum(map(len, sentences)))
    assert counts == {"train.txt": (8936, 211727), "test.txt": (2012, 47377)}


@needs_data
def test_ud_english_ewt_published_counts():
    counts = {}
    for split in ("train", "dev", "test"):
        sentences = read_conllu(SHARED_DATA / "ud_english_ewt" / f"en_ewt-ud-{split}.conllu.gz")
        counts[split] = (len(sentences), sum(len(w) for w, _ in sentences))
    assert counts == {"train": (12544, 204577), "dev": (2001, 25147), "test": (2077, 25094)}
