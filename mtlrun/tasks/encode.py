"""Token ids for every split of every task, cached on disk.

Two text encoders share one output format (`EncodedSplit`): `WordEncoder`, a word vocabulary
built from the training data (LSTM), and `SubwordEncoder` (in `subwords.py`), a pretrained
Hugging Face tokenizer (BERT). The encoded splits are cached under `cache_dir/encoded/<hash>/`,
keyed by a hash of everything that produced them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from mtlrun.tasks.spec import Kind, Split, Task

PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1 of a word vocabulary
CACHE_VERSION = 2
IGNORE = -100  # label of positions without one (torch's cross-entropy ignore_index)

log = logging.getLogger(__name__)


@dataclass
class EncodedSplit:
    """A split as one flat id array plus offsets; tagging labels are flat and aligned with ids.
    Pair tasks mark each position's text in `segments` (0 = first, 1 = second)."""

    ids: np.ndarray  # int32, all examples concatenated
    offsets: np.ndarray  # int64, len n + 1
    labels: np.ndarray  # int64: [n] for classification, aligned with ids for tagging
    segments: np.ndarray | None = None  # int8 aligned with ids (pair tasks and subword models)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class EncodedTask:
    task: Task
    splits: dict[str, EncodedSplit]


class TextEncoder(Protocol):
    def cache_spec(self) -> dict: ...  # what determines the ids, besides the data
    def fit(self, tasks: list[Task]) -> None: ...  # learn a vocabulary (or nothing)
    def encode(self, split: Split, kind: Kind) -> EncodedSplit: ...
    def save(self, directory: Path) -> None: ...
    def load(self, directory: Path) -> None: ...


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
        return {"word_vocab": [self.min_freq, self.max_size], "max_length": self.max_length,
                "pretrained": self.pretrained}  # fmt: skip

    def fit(self, tasks: list[Task]) -> None:
        counts = Counter(w for t in tasks for s in _texts(t.train) for w in s)
        words = sorted((w for w, c in counts.items() if c >= self.min_freq),
                       key=lambda w: (-counts[w], w))  # fmt: skip
        vocab = {PAD: 0, UNK: 1}
        for w in words[: max(0, self.max_size - 2)]:
            vocab[w] = len(vocab)
        if self.pretrained:
            known = self.pretrained_words()
            seen = sorted({w for t in tasks for split in (t.train, t.dev, t.test)
                           for s in _texts(split) for w in s})  # fmt: skip
            for w in seen:
                if w not in vocab and (w in known or w.lower() in known):
                    vocab[w] = len(vocab)
        self.tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK))  # the words are given

    def _ids(self, texts: list[list[str]]) -> list[list[int]]:
        cut = [s[: self.max_length] or [PAD] for s in texts]  # an empty text becomes one pad
        return [e.ids for e in self.tokenizer.encode_batch(cut, is_pretokenized=True)]

    def encode(self, split: Split, kind: Kind) -> EncodedSplit:
        first = self._ids(split.tokens)
        if split.pair is not None:
            second = self._ids(split.pair)
            ids, offsets = flatten([a + b for a, b in zip(first, second, strict=True)], np.int32)
            segments, _ = flatten(
                [[0] * len(a) + [1] * len(b) for a, b in zip(first, second, strict=True)], np.int8
            )
            return EncodedSplit(ids, offsets, np.asarray(split.labels, np.int64), segments)
        ids, offsets = flatten(first, np.int32)
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
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))


def _texts(split: Split):
    yield from split.tokens
    yield from split.pair or []


def cache_key(tasks: list[Task], encoder: TextEncoder) -> str:
    spec = {
        "version": CACHE_VERSION,
        "tasks": [[t.name, t.kind.value, t.fingerprint] for t in tasks],
        "encoder": encoder.cache_spec(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


SPLITS = ("train", "dev", "test")
DONE = "complete"  # written last: marks a cache entry whole


def encode_tasks(
    tasks: list[Task], encoder: TextEncoder, cache_dir: str | Path
) -> list[EncodedTask]:
    """Encode every split of every task (fitting `encoder` first), from the cache when the
    same inputs were seen before (then `encoder` is loaded from it)."""
    directory = Path(cache_dir).expanduser() / "encoded" / cache_key(tasks, encoder)
    if (directory / DONE).is_file():
        try:
            encoder.load(directory)
            return [EncodedTask(t, _load_splits(directory, t.name)) for t in tasks]
        except Exception as e:  # a damaged entry: rebuild it
            log.warning("cache entry %s unreadable (%s): rebuilding it", directory, e)
            shutil.rmtree(directory, ignore_errors=True)
    encoder.fit(tasks)
    encoded = [EncodedTask(t, {s: encoder.encode(t.split(s), t.kind) for s in SPLITS})
               for t in tasks]  # fmt: skip
    _save(directory, encoder, encoded)
    return encoded


def _load_splits(directory: Path, task_name: str) -> dict[str, EncodedSplit]:
    splits = {}
    for s in SPLITS:
        with np.load(directory / f"{task_name}.{s}.npz") as z:
            segments = z["segments"] if "segments" in z.files else None
            splits[s] = EncodedSplit(z["ids"], z["offsets"], z["labels"], segments)
    return splits


def _save(directory: Path, encoder: TextEncoder, encoded: list[EncodedTask]) -> None:
    """Write into a temp directory, then rename it into place: no half-written cache entries."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
    try:
        for et in encoded:
            for s, e in et.splits.items():
                arrays = {"ids": e.ids, "offsets": e.offsets, "labels": e.labels}
                if e.segments is not None:
                    arrays["segments"] = e.segments
                np.savez(tmp / f"{et.task.name}.{s}.npz", **arrays)
        encoder.save(tmp)
        (tmp / DONE).write_text("")
        os.replace(tmp, directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race, or no space
        if not (directory / DONE).is_file():
            raise
