"""Token ids for every split of every task, cached on disk.

Two text encoders share one output format (`EncodedSplit`): `WordEncoder`, a word vocabulary
built from the training data (LSTM), and `SubwordEncoder` (in `subwords.py`), a pretrained
Hugging Face tokenizer (BERT). The encoded splits are cached under `cache_dir/encoded/<hash>/`,
keyed by a hash of everything that produced them: the tasks' fingerprints (for local data, the
SHA-256 of every file's bytes, see `text_files.content_digest`), the encoder's settings and, for
pretrained vectors, the vectors file's bytes.

The cache is shared by concurrent runs. An entry is written into `.tmp-<host>-<pid>-<random>`
and renamed into place; the temp directories a killed run leaves behind are removed by a later
run: at once when their process is gone (same host), after a day otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from mtlrun.errors import DataError
from mtlrun.tasks.spec import Kind, Split, Task
from mtlrun.tasks.text_files import content_digest, expand_user, is_file, shown

PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1 of a word vocabulary
CACHE_VERSION = 3  # 3: task fingerprints hold file digests, not size and mtime
IGNORE = -100  # label of positions without one (torch's cross-entropy ignore_index)
EOS = "</s>"
SPECIALS = [PAD, UNK, EOS]  # ids 0, 1, 2 of any vocabulary of a run with seq2seq tasks
PAD_ID, UNK_ID, EOS_ID = 0, 1, 2
SYMBOL_OFFSET = len(SPECIALS)  # a symbol output's index i is target id 3 + i


def is_text_output(labels: list) -> bool:
    """Whether seq2seq `labels` are word lists (a text output) rather than ints into
    `Task.label_names` (a symbol output); empty outputs say neither and count as symbols."""
    kinds = {isinstance(x, str) for seq in labels for x in seq}
    if len(kinds) > 1:
        raise ValueError("seq2seq labels mix words and symbol indices")
    return kinds == {True}


def seq2seq_targets(
    words_to_ids: Callable[[list[list[str]]], list[list[int]]], labels: list, max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """The targets of a seq2seq split: flat int64 ids and int64 offsets (len n + 1). A text
    output's words become `words_to_ids(labels)` (ids of the encoder's own vocabulary), a symbol
    output's index i becomes `3 + i`; each target is cut to `max_length - 1` and ends with
    `</s>` (id 2), so it holds at most `max_length` ids and at least one."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1 (got {max_length})")
    if is_text_output(labels):
        rows = words_to_ids([list(seq) for seq in labels])
    else:
        rows = [[SYMBOL_OFFSET + int(i) for i in seq] for seq in labels]
    return flatten([row[: max_length - 1] + [EOS_ID] for row in rows], np.int64)


def task_texts(task: Task) -> Iterator[list[str]]:
    """The training texts a joint vocabulary is learned on: the sources (both texts of a pair)
    and, for a seq2seq task with a text output, the outputs."""
    split = task.train
    yield from split.tokens
    yield from split.pair or []
    if task.kind == Kind.SEQ2SEQ and not task.label_names and is_text_output(split.labels):
        yield from split.labels


log = logging.getLogger(__name__)


@dataclass
class EncodedSplit:
    """A split as one flat id array plus offsets; tagging labels are flat and aligned with ids.
    Pair tasks mark each position's text in `segments` (0 = first, 1 = second)."""

    ids: np.ndarray  # int32, all examples concatenated
    offsets: np.ndarray  # int64, len n + 1
    labels: np.ndarray  # int64: [n] for classification, aligned with ids for tagging
    segments: np.ndarray | None = None  # int8 aligned with ids (pair tasks and subword models)
    # seq2seq: `labels` holds the output ids of all examples, each ending with </s>; these
    # offsets (int64, len n + 1) delimit them
    label_offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def batch_lengths(self) -> np.ndarray:
        """What batching sorts and counts by: the source length, or for seq2seq the longer of
        source and output."""
        if self.label_offsets is None:
            return self.lengths
        return np.maximum(self.lengths, np.diff(self.label_offsets))


@dataclass
class EncodedTask:
    task: Task
    splits: dict[str, EncodedSplit]
    # the run's text encoder: what turns a seq2seq task's output ids back into text
    encoder: TextEncoder | None = None


class TextEncoder(Protocol):
    def cache_spec(self) -> dict: ...  # what determines the ids, besides the data
    def fit(self, tasks: list[Task]) -> None: ...  # learn a vocabulary (or nothing)
    def encode(self, split: Split, kind: Kind) -> EncodedSplit: ...
    def save(self, directory: Path) -> None: ...
    def load(self, directory: Path) -> None: ...
    def decode(self, ids: list[int]) -> str: ...  # output ids -> text (seq2seq tasks)


def load_tokenizer_json(directory: Path) -> Tokenizer:
    """`directory/tokenizer.json`; a damaged file is a ValueError (the cache rebuilds it)."""
    text = (directory / "tokenizer.json").read_text(encoding="utf-8")
    try:
        return Tokenizer.from_str(text)
    except Exception as e:  # `tokenizers` raises a bare Exception for a damaged file
        if type(e) is not Exception:
            raise
        raise ValueError(f"tokenizer.json: {e}") from None


def encoded_pairs(first: list[list[int]], second: list[list[int]], labels) -> EncodedSplit:
    """Pairs as one sequence each, the first text's ids then the second's, segments 0 / 1."""
    ids, offsets = flatten([a + b for a, b in zip(first, second, strict=True)], np.int32)
    segments, _ = flatten(
        [[0] * len(a) + [1] * len(b) for a, b in zip(first, second, strict=True)], np.int8
    )
    return EncodedSplit(ids, offsets, np.asarray(labels, np.int64), segments)


def flatten(rows: list[list[int]], dtype) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return np.fromiter((i for r in rows for i in r), dtype=dtype, count=offsets[-1]), offsets


class WordEncoder:
    """Words -> ids of a WordLevel vocabulary: the training data's words (most frequent first,
    `min_freq`, `max_size`), then every other word of any split that has a pretrained vector
    (exactly or lower-cased), so unseen test words keep their vectors (Lample et al. 2016).
    A pair is the first text's ids followed by the second's; each text keeps `max_length`."""

    def __init__(self, vocab_cfg, max_length: int, pretrained: str | None = None,
                 pretrained_words: Callable[[], set[str]] = set) -> None:  # fmt: skip
        self.min_freq, self.max_size = vocab_cfg.min_freq, vocab_cfg.max_size
        self.max_length = max_length
        self.pretrained, self.pretrained_words = pretrained, pretrained_words
        self.tokenizer: Tokenizer | None = None

    @property
    def vocab(self) -> list[str]:
        ids = self.tokenizer.get_vocab()
        return sorted(ids, key=ids.get)  # words in id order

    def cache_spec(self) -> dict:
        # the vectors file decides which dev/test words join the vocabulary: key on its bytes
        vectors = expand_user(self.pretrained) if self.pretrained else None
        digest = content_digest(vectors) if vectors and is_file(vectors) else None
        return {"word_vocab": [self.min_freq, self.max_size], "max_length": self.max_length,
                "pretrained": [self.pretrained, digest]}  # fmt: skip

    def fit(self, tasks: list[Task]) -> None:
        counts = Counter(w for t in tasks for s in task_texts(t) for w in s)
        words = sorted((w for w, c in counts.items() if c >= self.min_freq),
                       key=lambda w: (-counts[w], w))  # fmt: skip
        # </s> only where a task outputs sequences: other runs keep their ids as they were
        seq2seq = any(t.kind == Kind.SEQ2SEQ for t in tasks)
        vocab = {w: i for i, w in enumerate(SPECIALS if seq2seq else SPECIALS[:2])}
        for w in words[: max(0, self.max_size - len(vocab))]:
            vocab[w] = len(vocab)
        if self.pretrained:
            known = self.pretrained_words()
            seen = sorted({w for t in tasks for split in (t.train, t.dev, t.test)
                           for s in (*split.tokens, *(split.pair or [])) for w in s})  # fmt: skip
            for w in seen:
                if w not in vocab and (w in known or w.lower() in known):
                    vocab[w] = len(vocab)
        self.tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK))  # the words are given

    def _ids(self, texts: list[list[str]]) -> list[list[int]]:
        cut = [s[: self.max_length] or [PAD] for s in texts]  # an empty text becomes one pad
        return self.encode_words(cut)

    def encode_words(self, texts: list[list[str]]) -> list[list[int]]:
        """Word ids, uncut; an empty text gives no ids."""
        encodings = self.tokenizer.encode_batch([t or [PAD] for t in texts], is_pretokenized=True)
        return [e.ids if t else [] for t, e in zip(texts, encodings, strict=True)]

    def decode(self, ids: list[int]) -> str:
        """The words of `ids` joined by spaces, special tokens left out."""
        vocab = self.vocab
        return " ".join(vocab[i] for i in ids if i >= len(SPECIALS) or vocab[i] not in SPECIALS)

    def encode(self, split: Split, kind: Kind) -> EncodedSplit:
        first = self._ids(split.tokens)
        if split.pair is not None:
            second = self._ids(split.pair)
            return encoded_pairs(first, second, split.labels)
        ids, offsets = flatten(first, np.int32)
        if kind == Kind.SEQ2SEQ:
            labels, label_offsets = seq2seq_targets(self.encode_words, split.labels,
                                                    self.max_length)  # fmt: skip
            return EncodedSplit(ids, offsets, labels, label_offsets=label_offsets)
        if kind == Kind.TAGGING:
            rows = [tags[: len(i)] if tags else [IGNORE]
                    for i, tags in zip(first, split.labels, strict=True)]  # fmt: skip
            labels, _ = flatten(rows, np.int64)
        else:
            labels = np.asarray(split.labels, dtype=np.int64)
        return EncodedSplit(ids, offsets, labels)

    def save(self, directory: Path) -> None:
        self.tokenizer.save(str(directory / "tokenizer.json"))

    def load(self, directory: Path) -> None:
        self.tokenizer = load_tokenizer_json(directory)


def cache_key(tasks: list[Task], encoder: TextEncoder) -> str:
    spec = {
        "version": CACHE_VERSION,
        "tasks": [[t.name, t.kind.value, t.fingerprint] for t in tasks],
        "encoder": encoder.cache_spec(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


SPLITS = ("train", "dev", "test")
DONE = "complete"  # written last: marks a cache entry whole
TMP = ".tmp-"  # temp directories (and probe files): .tmp-<host>-<pid>-<random>
STALE_AFTER_S = 24 * 3600  # a temp directory this old is abandoned, whoever made it
# what reading a damaged cache entry raises (np.load of a cut or garbled .npz, a missing
# array, a tokenizer.json that is not one); the entry is then rebuilt
DAMAGED = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def _tmp_prefix() -> str:
    return f"{TMP}{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: no signal, only the check
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temp_dirs(encoded_dir: Path) -> list[Path]:
    """Remove what killed runs left in `encoded_dir`: temp entries of this host whose process
    is gone, and any older than a day. Never a live process's: concurrent runs share the cache
    (a recycled pid keeps its entry until the day is over)."""
    try:
        entries = [e for e in encoded_dir.iterdir() if e.name.startswith(TMP)]
    except OSError:
        return []  # nothing to clean, or not ours to list; writing is checked separately
    removed = []
    for entry in entries:
        host, pid, _ = (entry.name[len(TMP) :].split("-") + ["", "", ""])[:3]
        try:
            age = time.time() - entry.lstat().st_mtime
        except FileNotFoundError:
            continue  # another run removed it first
        dead = host == _host() and pid.isdigit() and int(pid) > 0 and not _alive(int(pid))
        if dead or age > STALE_AFTER_S:
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()  # a probe file
            except OSError:
                continue  # removed by another run meanwhile, or not ours to remove
            removed.append(entry)
    if removed:
        log.info("removed %d abandoned temp entries from %s", len(removed), encoded_dir)
    return removed


def _not_writable(root: Path, e: OSError) -> DataError:
    in_the_way = isinstance(e, FileExistsError | NotADirectoryError)  # cache_dir or a parent
    why = "a file is in the way" if in_the_way else e.strerror or str(e)
    return DataError(
        f"cache_dir={shown(root)}: not writable ({why}); set cache_dir=<a writable directory>"
    )


def check_cache_writable(cache_dir: str | Path) -> Path:
    """Create `cache_dir/encoded` and a probe file in it, so an unwritable cache fails before
    any data is encoded; returns the expanded cache directory."""
    root = expand_user(cache_dir)
    try:
        (root / "encoded").mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root / "encoded", prefix=_tmp_prefix())
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _not_writable(root, e) from None
    return root


def encode_tasks(
    tasks: list[Task], encoder: TextEncoder, cache_dir: str | Path
) -> list[EncodedTask]:
    """Encode every split of every task (fitting `encoder` first), from the cache when the
    same inputs were seen before (then `encoder` is loaded from it)."""
    root = check_cache_writable(cache_dir)
    remove_stale_temp_dirs(root / "encoded")
    directory = root / "encoded" / cache_key(tasks, encoder)
    if is_file(directory / DONE):
        try:
            encoder.load(directory)
            return [EncodedTask(t, _load_splits(directory, t.name), encoder) for t in tasks]
        except DAMAGED as e:  # a damaged entry: rebuild it
            log.warning("cache entry %s unreadable (%s): rebuilding it", directory, e)
            shutil.rmtree(directory, ignore_errors=True)
    examples = sum(len(t.split(s)) for t in tasks for s in SPLITS)
    log.info("encoding %d examples of %d tasks (the first time only: then from %s)", examples,
             len(tasks), directory)  # fmt: skip
    encoder.fit(tasks)
    encoded = [EncodedTask(t, {s: encoder.encode(t.split(s), t.kind) for s in SPLITS}, encoder)
               for t in tasks]  # fmt: skip
    try:
        _save(directory, encoder, encoded)
    except OSError as e:  # a full disk, say
        raise _not_writable(root, e) from None
    return encoded


def _load_splits(directory: Path, task_name: str) -> dict[str, EncodedSplit]:
    splits = {}
    for s in SPLITS:
        with np.load(directory / f"{task_name}.{s}.npz") as z:
            optional = {key: z[key] for key in ("segments", "label_offsets") if key in z.files}
            splits[s] = EncodedSplit(z["ids"], z["offsets"], z["labels"], **optional)
    return splits


def _save(directory: Path, encoder: TextEncoder, encoded: list[EncodedTask]) -> None:
    """Write into a temp directory, then rename it into place: no half-written cache entries."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=_tmp_prefix()))
    try:
        for et in encoded:
            for s, e in et.splits.items():
                arrays = {"ids": e.ids, "offsets": e.offsets, "labels": e.labels}
                for key in ("segments", "label_offsets"):
                    if getattr(e, key) is not None:
                        arrays[key] = getattr(e, key)
                np.savez(tmp / f"{et.task.name}.{s}.npz", **arrays)
        encoder.save(tmp)
        (tmp / DONE).write_text("")
        os.replace(tmp, directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race, or no space
        if not is_file(directory / DONE):
            raise
