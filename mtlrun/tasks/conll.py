"""Readers for the CoNLL column formats (issue 5 groundwork): CoNLL-2000 chunking
(`word POS chunk`), CoNLL-2003 NER (`word POS chunk NER`, IOB1 tags, `-DOCSTART-` lines) and
CoNLL-U (UD English-EWT: UPOS or PTB XPOS). Sentences are blank-line separated; a malformed
line is an error naming the file and line."""

from __future__ import annotations

from pathlib import Path

from mtlrun.errors import DataError
from mtlrun.tasks.text_files import read_lines

Sentence = list[list[str]]  # one row of fields per token


def read_columns(path: Path, n_columns: int) -> list[Sentence]:
    """Sentences of a whitespace-separated column file with exactly `n_columns` fields per
    token line; `-DOCSTART-` lines (CoNLL-2003 document breaks) are skipped."""
    sentences: list[Sentence] = []
    current: Sentence = []
    for number, line in read_lines(path):
        fields = line.split()
        if not fields:
            if current:
                sentences.append(current)
                current = []
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if len(fields) != n_columns:
            raise DataError(
                f"{path}:{number}: expected {n_columns} columns, got {len(fields)}: {line!r}"
            )
        current.append(fields)
    if current:
        sentences.append(current)
    return sentences


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 (I- starts a chunk unless it continues one of the same type; B- only between two
    adjacent chunks of one type) to IOB2 (every chunk starts with B-), as CoNLL-2003's files
    need before seqeval scores them."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("I-"):
            previous = out[i - 1] if i else "O"
            if previous == "O" or previous[2:] != tag[2:]:
                tag = "B-" + tag[2:]
        out.append(tag)
    return out


CONLLU_COLUMNS = {"upos": 3, "xpos": 4}


def read_conllu(path: Path, tagset: str = "upos") -> list[tuple[list[str], list[str]]]:
    """(words, tags) per sentence of a CoNLL-U file, with UPOS (column 4) or PTB XPOS
    (column 5). Comments, multiword-token ranges (`3-4`) and empty nodes (`5.1`) are skipped:
    tags belong to syntactic words."""
    if tagset not in CONLLU_COLUMNS:
        raise ValueError(f"tagset must be one of {list(CONLLU_COLUMNS)} (got {tagset!r})")
    column = CONLLU_COLUMNS[tagset]
    sentences, words, tags = [], [], []
    for number, line in read_lines(path):
        if not line.strip():
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise DataError(f"{path}:{number}: a CoNLL-U line has 10 tab-separated fields, "
                            f"this one {len(fields)}")  # fmt: skip
        if "-" in fields[0] or "." in fields[0]:
            continue
        words.append(fields[1])
        tags.append(fields[column])
    if words:
        sentences.append((words, tags))
    return sentences
