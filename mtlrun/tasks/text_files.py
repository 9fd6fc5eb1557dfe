"""Reading user data files. Every file and directory access of a reader goes through here, so a
damaged, unreadable or missing file ends as one DataError naming the path (and the line, where
there is one), never a traceback; errors of other kinds are bugs and propagate as they are.

Text files are read as bytes, optionally compressed (.gz, .xz, .bz2), and split into lines.
The bytes read are hashed as they are read (`content_digest`): task fingerprints, and so the
encode cache's keys, depend on the content, not on size and mtime.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mtlrun.errors import DataError

# What opening, listing, decompressing or decoding a damaged or unreadable file raises.
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, UnicodeError)
FORMATS = {".gz": "gzip", ".xz": "xz", ".bz2": "bzip2", ".zip": "zip"}
_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}  # path or file object

# Digests of files hashed in this process, by what identifies one version of a file (ctime
# changes on any write or utime). Never stored: a new process hashes again.
_DIGESTS: dict[tuple, str] = {}
_LAST_READ: dict[str, str] = {}  # absolute path -> digest of the bytes last read from it


def shown(path) -> str:
    """`path` for a message: bytes that are not UTF-8 (surrogate escapes) as \\x.. escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def expand_user(path) -> Path:
    """`path` with ~ expanded; `~nobody/...` of an unknown user is a DataError, not a crash."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise DataError(f"{shown(path)}: cannot expand ~ (unknown user)") from None


def _blocked_directory(path) -> Path | None:
    """The outermost directory above `path` this process may not enter, if any."""
    for parent in reversed(Path(os.path.abspath(path)).parents):
        if not os.access(parent, os.X_OK):
            return parent
    return None


def data_error(path, error: BaseException, line: int | None = None) -> DataError:
    """One line saying what is wrong with reading `path` (at `line`), from the error it raised."""
    where = shown(path) + (f":{line}" if line else "")
    kind = FORMATS.get(Path(path).suffix.lower())
    if isinstance(error, PermissionError):
        blocked = _blocked_directory(path)
        if blocked is not None:
            return DataError(f"{shown(blocked)}: permission denied (needed to reach {where})")
        why = "permission denied"
    elif isinstance(error, IsADirectoryError):
        why = "is a directory, not a file"
    elif isinstance(error, FileNotFoundError):
        why = "no such file (removed while being read?)"
    elif isinstance(error, EOFError):
        why = f"truncated {kind + ' data' if kind else 'file'} ({error})"
    elif isinstance(error, UnicodeDecodeError):
        why = f"not UTF-8 text ({error.reason} at byte {error.start} of the file)"
    elif isinstance(error, zipfile.BadZipFile):
        why = f"cannot read: not a valid zip archive ({error})"
    elif isinstance(error, OSError) and error.errno is not None:
        why = f"cannot read ({error.strerror})"
    else:  # zlib.error, LZMAError, BadGzipFile, bz2's OSError: the bytes are bad
        why = f"corrupted {kind} data ({error})" if kind else f"cannot read ({error})"
    return DataError(f"{where}: {why}")


@contextmanager
def reading(path, line: int | None = None):
    """Turn the errors of a damaged or unreadable `path` into a DataError naming it."""
    try:
        yield
    except READ_ERRORS as e:
        raise data_error(path, e, line) from None


def is_file(path) -> bool:
    with reading(path):
        return Path(path).is_file()


def is_dir(path) -> bool:
    with reading(path):
        return Path(path).is_dir()


def find_file(directory: Path, name: str) -> Path | None:
    """`name` or `name.gz` inside `directory`, whichever exists."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if is_file(candidate):
            return candidate
        if is_dir(candidate):  # else "missing", which would send the user looking elsewhere
            raise DataError(f"{shown(candidate)}: is a directory, not a file")
    return None


def _version(path, st: os.stat_result) -> tuple:
    return (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns)  # fmt: skip


def read_raw(path) -> bytes:
    """The bytes of `path` as stored (compressed or not), hashed as they are read: the
    fingerprint (`file_digests`) is then of exactly these bytes, not of a later version."""
    with reading(path), open(path, "rb") as f:
        before = os.fstat(f.fileno())
        raw = f.read()
        after = os.fstat(f.fileno())
    digest = hashlib.sha256(raw).hexdigest()
    _LAST_READ[os.path.abspath(path)] = digest
    if _version(path, before) == _version(path, after):  # not written to while being read
        _DIGESTS[_version(path, after)] = digest
    return raw


def read_bytes(path) -> bytes:
    """The content of `path`, decompressed when its suffix is .gz, .xz or .bz2."""
    raw = read_raw(path)
    opener = _OPENERS.get(Path(path).suffix.lower())
    if opener is None:
        return raw
    with reading(path), opener(io.BytesIO(raw), "rb") as f:
        return f.read()


def open_stream(path):
    """A binary file object over the content of `path` (decompressed by suffix); use it inside
    `reading(path)`."""
    opener = _OPENERS.get(Path(path).suffix.lower())
    return open(path, "rb") if opener is None else opener(path, "rb")


def stream_lines(path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes without the line end) of a file too big to hold in
    memory (pretrained vectors), decompressed by suffix; an error names the line it hit."""
    if Path(path).suffix.lower() == ".zip":
        raise DataError(f"{shown(path)}: a zip archive; unzip it and give one of its files")
    number, opened = 0, False
    try:
        with open_stream(path) as f:
            opened = True
            for number, raw in enumerate(f, start=1):
                yield number, raw.rstrip(b"\r\n")
    except READ_ERRORS as e:
        raise data_error(path, e, number + 1 if opened else None) from None


def content_digest(path) -> str:
    """SHA-256 of the bytes of `path`, once per version of the file in a process (never
    remembered across runs); free for a file `read_raw` has just read.

    Cost, measured: 0.6-0.7 GB/s reading from the page cache on one core (SHA-256 alone
    0.9-1.1 GB/s with the CPU's SHA extensions, BLAKE2b half that): all 68 MB of the real
    corpora (GLUE, XNLI, FDU-MTL, CoNLL, UD, NLTK; 115 files) in 0.10-0.11 s, the 32 files
    (7.7 MB) of the 16-domain suite in 0.02 s; a 1 GB vectors file would take about 1.5 s."""
    with reading(path):
        key = _version(path, os.stat(path))
        if key not in _DIGESTS:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
                if _version(path, os.fstat(f.fileno())) == key:
                    _DIGESTS[key] = digest
            return digest
    return _DIGESTS[key]


def file_digests(paths) -> dict:
    """Path -> SHA-256 of the bytes last read from it in this process (else of its bytes now):
    what a task's fingerprint, its cache key, records. An edited file is never served stale
    encodings, whatever its size and mtime, even when it changes after being read."""
    return {str(p): _LAST_READ.get(os.path.abspath(p)) or content_digest(p) for p in paths}


def decode_utf8(data: bytes, path) -> str:
    """`data` as UTF-8 text, or a DataError naming the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise data_error(path, e, data.count(b"\n", 0, e.start) + 1) from None


def check_text(data: bytes, path) -> None:
    """A NUL byte never occurs in the text corpora: refuse binary files given as text."""
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise DataError(f"{shown(path)}:{line}: binary data (a NUL byte), not a text file")


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) splitting on b"\\n" only.

    Some corpora hold Latin-1 bytes and 0x85 (NEL) inside lines; `str.splitlines()` would cut
    there. Each line is decoded as UTF-8, falling back to Latin-1 for lines that are not UTF-8.
    """
    data = read_bytes(path)
    check_text(data, path)
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
