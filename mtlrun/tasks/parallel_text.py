"""Reading a line-aligned parallel corpus: a source file and a target file whose line i
translate each other, as plain text (optionally .gz/.xz/.bz2) or as WMT SGML.

- Plain text: one sentence per line (UTF-8; a line that is not UTF-8 is read as Latin-1, see
  `text_files.read_lines`); a byte-order mark at the start is dropped.
- WMT SGML (`newstest2014-deen-src.en.sgm`): `<seg id="N">text</seg>`, one segment per line,
  inside `<doc>` elements of a `<srcset>`/`<refset>`; XML entities (`&amp;`, `&#39;`, ...) in
  the text are unescaped; every other line (`<doc>`, `<p>`, headers) is markup and skipped.
  Recognised by a `.sgm` suffix (before any compression suffix) or by content: the first
  non-blank line is an `<srcset`, `<refset`, `<tstset`, `<mteval`, `<doc` or `<seg` tag.

Each side is stripped; a pair with an empty side is dropped (counted, and logged once per
corpus). Different numbers of lines (segments) on the two sides are a DataError naming both
files and counts. The pairs come back as lists of words split at any whitespace
(`str.split()`: raw text, so a no-break space separates words too; Multi30k's German side has
47 of them), with the content digests of both files for a task's fingerprint.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from mtlrun.errors import DataError
from mtlrun.tasks.spec import Split
from mtlrun.tasks.text_files import (
    file_digests,
    is_dir,
    is_file,
    read_lines,
    shown,
)

log = logging.getLogger(__name__)

COMPRESSED = (".gz", ".xz", ".bz2")
_SGML_START = re.compile(r"<(srcset|refset|tstset|mteval|doc|seg)\b", re.IGNORECASE)
_SEG = re.compile(r"<seg\b[^>]*>(.*?)</seg\s*>", re.IGNORECASE)
_SEG_OPEN = re.compile(r"<seg\b", re.IGNORECASE)
_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}

Words = list[str]


def unescape_xml(text: str) -> str:
    """`text` with the five XML entities and numeric character references replaced; anything
    else that looks like an entity (`&nbsp;`, a lone `&`) is left as it is."""

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name[0] != "#":
            return _NAMED[name]
        code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
        return chr(code) if 0 < code <= 0x10FFFF else match.group(0)

    return _ENTITY.sub(one, text)


def _base_suffix(path) -> str:
    """The suffix of `path` before a compression suffix: `.sgm` for `x.de.sgm.gz`."""
    p = Path(path)
    if p.suffix.lower() in COMPRESSED:
        p = p.with_suffix("")
    return p.suffix.lower()


def _is_sgml(path, lines: list[tuple[int, str]]) -> bool:
    if _base_suffix(path) == ".sgm":
        return True
    first = next((text.strip() for _, text in lines if text.strip()), "")
    return bool(_SGML_START.match(first))


def _sgml_segments(path, lines: list[tuple[int, str]]) -> list[str]:
    segments = []
    for number, text in lines:
        found = _SEG.findall(text)
        if len(found) != len(_SEG_OPEN.findall(text)):
            raise DataError(f"{shown(path)}:{number}: a <seg> without its </seg> on the same "
                            "line (WMT SGML has one segment per line)")  # fmt: skip
        segments.extend(unescape_xml(s) for s in found)
    if not segments:
        raise DataError(f"{shown(path)}: WMT SGML with no <seg> elements")
    return segments


def read_segments(path) -> list[str]:
    """The sentences of one side of a parallel corpus, in order, unstripped: the lines of a
    text file or the <seg> texts of a WMT SGML file."""
    if not is_file(path):
        why = "is a directory, not a file" if is_dir(path) else "no such file"
        raise DataError(f"{shown(path)}: {why}")
    lines = list(read_lines(Path(path)))
    if lines:
        lines[0] = (lines[0][0], lines[0][1].removeprefix("\ufeff"))
    if _is_sgml(path, lines):
        return _sgml_segments(path, lines)
    return [text for _, text in lines]


@dataclass
class ParallelText:
    """Aligned word lists; `files` = path -> SHA-256 of the bytes read (the fingerprint)."""

    source: list[Words]
    target: list[Words]
    files: dict = field(default_factory=dict)
    dropped: int = 0  # pairs with an empty side

    def __len__(self) -> int:
        return len(self.source)

    def split(self) -> Split:
        """Split.tokens = source words, Split.labels = target words (a text output)."""
        return Split(self.source, self.target)


def align(sources: list[str], targets: list[str], what: str,
          limit: int | None = None) -> tuple[list[Words], list[Words], int]:  # fmt: skip
    """(source words, target words, dropped) of equally long sentence lists: each side
    stripped, pairs with an empty side dropped (and logged once, naming `what`), then the first
    `limit` pairs kept."""
    assert len(sources) == len(targets)
    src, tgt, dropped = [], [], 0
    for s, t in zip(sources, targets, strict=True):
        s, t = s.strip(), t.strip()
        if not s or not t:
            dropped += 1
            continue
        if limit is not None and len(src) >= limit:
            continue  # keep counting the dropped pairs of the whole corpus
        src.append(s.split())
        tgt.append(t.split())
    if dropped:
        log.warning("%s: dropped %d of %d sentence pairs with an empty side", what, dropped,
                    len(sources))  # fmt: skip
    return src, tgt, dropped


def read_parallel(source, target, limit: int | None = None) -> ParallelText:
    """The sentence pairs of two line-aligned files (plain, compressed or WMT SGML), the first
    `limit` of them (after dropping pairs with an empty side) when given."""
    sources, targets = read_segments(source), read_segments(target)
    if len(sources) != len(targets):
        raise DataError(
            f"parallel files differ in length: {shown(source)} has {len(sources)} sentences, "
            f"{shown(target)} has {len(targets)}; they must be line-aligned"
        )
    what = f"{shown(source)} / {Path(target).name}"
    src, tgt, dropped = align(sources, targets, what, limit)
    return ParallelText(src, tgt, file_digests([source, target]), dropped)
