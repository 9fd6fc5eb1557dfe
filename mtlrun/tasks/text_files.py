"""Reading canonical text files line by line, as bytes, optionally gzip-compressed."""

from __future__ import annotations

import gzip
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from mtlrun.errors import DataError


def find_file(directory: Path, name: str) -> Path | None:
    """`name` or `name.gz` inside `directory`, whichever exists."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def file_stats(paths) -> dict:
    """Path -> [size, mtime] of each file: what a task's fingerprint (its cache key) records."""
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) splitting on b"\\n" only.

    Some corpora hold Latin-1 bytes and 0x85 (NEL) inside lines; `str.splitlines()` would cut
    there. Each line is decoded as UTF-8, falling back to Latin-1 for lines that are not UTF-8.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        raw = raw.rstrip(b"\r")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        yield number, text


def split_tokens(text: str) -> list[str]:
    """Split pre-tokenised text on ASCII spaces and tabs only (str.split() would also cut at
    0x85 and 0xA0, which are characters inside tokens in these corpora)."""
    return [t for t in text.replace("\t", " ").split(" ") if t]


def word_tokens(text: str) -> list[str]:
    """Words of raw text (GLUE, XNLI), with each punctuation mark or symbol its own token: what
    the word-level LSTM vocabulary sees; subword models split the words further. Combining
    marks stay inside their word (Hindi vowel signs, Thai tone marks), which `\\w` would not."""
    tokens = []
    for chunk in text.split():
        if chunk.isalnum():  # the common case, no per-character work
            tokens.append(chunk)
            continue
        word = ""
        for ch in chunk:
            if unicodedata.category(ch)[0] in "PS":
                tokens.extend([word, ch] if word else [ch])
                word = ""
            else:
                word += ch
        if word:
            tokens.append(word)
    return tokens
