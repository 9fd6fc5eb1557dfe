"""Token ids for every split, with a word vocabulary built from the training data.

The vocabulary is a Hugging Face `tokenizers` WordLevel model over the corpora's own
(pre-tokenised) words. Both the tokenizer and the encoded splits are cached under
`cache_dir/encoded/<hash>/`, keyed by a hash of everything that produced them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from mtlrun.tasks.spec import Kind, Split, Task

PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1
CACHE_VERSION = 1
IGNORE = -100  # label of padding positions (torch's cross-entropy ignore_index)

log = logging.getLogger(__name__)


@dataclass
class EncodedSplit:
    """A split as one flat id array plus offsets; tagging labels are flat and aligned with ids."""

    ids: np.ndarray  # int32, all examples concatenated
    offsets: np.ndarray  # int64, len n + 1
    labels: np.ndarray  # int64: [n] for classification, aligned with ids for tagging

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class EncodedTask:
    task: Task
    splits: dict[str, EncodedSplit]


def build_vocab(tasks: list[Task], min_freq: int, max_size: int) -> Tokenizer:
    counts = Counter(w for task in tasks for sentence in task.train.tokens for w in sentence)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    vocab = {PAD: 0, UNK: 1}
    for w in words[: max(0, max_size - 2)]:
        vocab[w] = len(vocab)
    return Tokenizer(WordLevel(vocab, unk_token=UNK))  # no pre-tokenizer: the words are given


def encode_split(tokenizer: Tokenizer, split: Split, kind: Kind, max_length: int) -> EncodedSplit:
    sentences = [s[:max_length] or [PAD] for s in split.tokens]  # an empty text becomes one pad
    encodings = tokenizer.encode_batch(sentences, is_pretokenized=True)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int32, count=offsets[-1])
    if kind == Kind.TAGGING:
        labels = np.fromiter(
            (lab for s, tags in zip(sentences, split.labels, strict=True)
             for lab in (tags[: len(s)] if tags else [IGNORE])),
            dtype=np.int64, count=offsets[-1],
        )  # fmt: skip
    else:
        labels = np.asarray(split.labels, dtype=np.int64)
    return EncodedSplit(ids, offsets, labels)


def cache_key(tasks: list[Task], vocab_cfg, max_length: int) -> str:
    spec = {
        "version": CACHE_VERSION,
        "tasks": [[t.name, t.kind.value, t.fingerprint] for t in tasks],
        "vocab": [vocab_cfg.min_freq, vocab_cfg.max_size],
        "max_length": max_length,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def encode_tasks(
    tasks: list[Task], vocab_cfg, max_length: int, cache_dir: str | Path
) -> tuple[Tokenizer, list[EncodedTask]]:
    """Encode every split of every task, from the cache when the same inputs were seen before."""
    directory = Path(cache_dir).expanduser() / "encoded" / cache_key(tasks, vocab_cfg, max_length)
    if (directory / "tokenizer.json").is_file():
        try:
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
            return tokenizer, [EncodedTask(t, _load_splits(directory, t.name)) for t in tasks]
        except Exception as e:  # a damaged entry: rebuild it
            log.warning("cache entry %s unreadable (%s): rebuilding it", directory, e)
            shutil.rmtree(directory, ignore_errors=True)
    tokenizer = build_vocab(tasks, vocab_cfg.min_freq, vocab_cfg.max_size)
    encoded = [
        EncodedTask(t, {s: encode_split(tokenizer, t.split(s), t.kind, max_length)
                        for s in ("train", "dev", "test")})
        for t in tasks
    ]  # fmt: skip
    _save(directory, tokenizer, encoded)
    return tokenizer, encoded


def _load_splits(directory: Path, task_name: str) -> dict[str, EncodedSplit]:
    splits = {}
    for s in ("train", "dev", "test"):
        with np.load(directory / f"{task_name}.{s}.npz") as z:
            splits[s] = EncodedSplit(z["ids"], z["offsets"], z["labels"])
    return splits


def _save(directory: Path, tokenizer: Tokenizer, encoded: list[EncodedTask]) -> None:
    """Write into a temp directory, then rename it into place: no half-written cache entries."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
    try:
        for et in encoded:
            for s, e in et.splits.items():
                np.savez(tmp / f"{et.task.name}.{s}.npz", ids=e.ids, offsets=e.offsets,
                         labels=e.labels)  # fmt: skip
        tokenizer.save(str(tmp / "tokenizer.json"))  # written last: marks the entry complete
        os.replace(tmp, directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race, or no space
        if not (directory / "tokenizer.json").is_file():
            raise
