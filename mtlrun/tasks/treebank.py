"""Reader for NLTK's 10% sample of the Penn Treebank (WSJ files wsj_0001-wsj_0199, 3,914
sentences): (words, PTB POS tags) per sentence, read straight from the NLTK zip without nltk.

Source: `dependency_treebank.zip`, members `dependency_treebank/wsj_NNNN.dp`, one token per
line as `word TAB POS TAB head`, a blank line between sentences. Of the three file families in
NLTK's two zips this is the most reliable: its sentences and tags are exactly those of
`treebank/combined/*.mrg` with the `-NONE-` trace tokens removed (checked on all 199 files),
with no brackets to parse, while `treebank/tagged/*.pos` breaks lines on NP chunks rather than
sentences (4,979 blank-line blocks) and has ambiguous tags like `VBG|NN`. The .dp files hold
no `-NONE-` tokens; any that did appear would be dropped.

Split by WSJ file number, so that the sentences of one file never cross splits (fixed; about
78/11/11 by sentences, 3,068 / 433 / 413 on NLTK's files):

    train  wsj_0001-wsj_0139  (139 files)
    dev    wsj_0140-wsj_0169  (30 files)
    test   wsj_0170-wsj_0199  (30 files)
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from mtlrun.errors import DataError
from mtlrun.tasks.text_files import READ_ERRORS, check_text, is_file, read_raw, reading

ZIP_NAME = "dependency_treebank.zip"
MEMBER = re.compile(r"dependency_treebank/wsj_(\d{4})\.dp")
SPLITS = {"train": range(1, 140), "dev": range(140, 170), "test": range(170, 200)}
TRACE = "-NONE-"

TaggedSentence = tuple[list[str], list[str]]


def split_of(file_number: int) -> str:
    """The split ("train", "dev" or "test") of WSJ file `wsj_<file_number>`."""
    for split, numbers in SPLITS.items():
        if file_number in numbers:
            return split
    raise ValueError(f"wsj_{file_number:04d} is not in the NLTK sample (wsj_0001-wsj_0199)")


def read_dp(data: bytes, member: str) -> list[TaggedSentence]:
    """(words, tags) per sentence of one .dp file's bytes; `member` (zip path/member name)
    names it in errors."""
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            line = raw.rstrip(b"\r").decode("latin-1")
        if not line.strip():
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not all(fields) or not fields[2].isdigit():
            raise DataError(f"{member}:{number}: expected `word TAB POS TAB head`, got {line!r}")
        if fields[1] != TRACE:
            words.append(fields[0])
            tags.append(fields[1])
    if words:
        sentences.append((words, tags))
    return sentences


def read_ptb_files(directory: Path) -> dict[int, list[TaggedSentence]]:
    """WSJ file number -> (words, PTB tags) per sentence, from
    `directory/dependency_treebank.zip` (e.g. <nltk_data>/corpora), in file order."""
    path = Path(directory) / ZIP_NAME
    if not is_file(path):
        raise DataError(
            f"{ZIP_NAME} not found in {path.parent}: get it with `python -m nltk.downloader "
            f"dependency_treebank` (it lands in nltk_data/corpora/) or from the nltk_data "
            f"repository's packages/corpora/{ZIP_NAME}"
        )
    files: dict[int, list[TaggedSentence]] = {}
    raw = read_raw(path)  # hashed as read: the fingerprint is of these bytes
    with reading(path), zipfile.ZipFile(io.BytesIO(raw)) as archive:
        for member in sorted(archive.namelist()):
            match = MEMBER.fullmatch(member)
            if not match:
                continue
            number = int(match.group(1))
            if not 1 <= number <= 199:
                raise DataError(f"{path}: {member} is outside the NLTK sample (0001-0199)")
            where = f"{path}/{member}"
            try:
                data = archive.read(member)
            except (NotImplementedError, RuntimeError) as e:  # unknown compression, encrypted
                raise DataError(f"{where}: cannot extract ({e})") from None
            except READ_ERRORS as e:  # bad CRC, bad deflate data, cut short
                raise DataError(f"{where}: corrupted zip member ({e})") from None
            check_text(data, where)
            files[number] = read_dp(data, where)
    if not files:
        raise DataError(f"{path}: no dependency_treebank/wsj_NNNN.dp members")
    return files


def read_ptb_sample(directory: Path) -> dict[str, list[TaggedSentence]]:
    """{"train", "dev", "test"} -> (words, PTB tags) per sentence, split by WSJ file number as
    above, from `directory/dependency_treebank.zip` (e.g. <nltk_data>/corpora)."""
    splits: dict[str, list[TaggedSentence]] = {split: [] for split in SPLITS}
    for number, sentences in read_ptb_files(directory).items():
        splits[split_of(number)].extend(sentences)
    return splits
