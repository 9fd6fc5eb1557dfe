"""Subword ids from a pretrained Hugging Face tokenizer (BERT and friends).

Texts arrive as words; the tokenizer splits them further. A pair becomes
`[CLS] a [SEP] b [SEP]` with token types 0/1, truncated longest-first to `max_length`. Tagging
labels go to each word's first subword; the other subwords and the special tokens get IGNORE.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mtlrun.models.pretrained import load_tokenizer
from mtlrun.tasks.encode import IGNORE, EncodedSplit, flatten
from mtlrun.tasks.spec import Kind, Split, Task


class SubwordEncoder:
    def __init__(self, name: str, max_length: int) -> None:
        self.tokenizer = load_tokenizer(name)
        self.max_length = max_length

    def cache_spec(self) -> dict:
        rules = self.tokenizer.backend_tokenizer.to_str().encode()
        return {"subwords": hashlib.sha256(rules).hexdigest()[:20], "max_length": self.max_length}

    def fit(self, tasks: list[Task]) -> None:
        pass  # the vocabulary is the pretrained one

    def encode(self, split: Split, kind: Kind) -> EncodedSplit:
        enc = self.tokenizer(split.tokens, split.pair, is_split_into_words=True, truncation=True,
                             max_length=self.max_length)  # fmt: skip
        ids, offsets = flatten(enc["input_ids"], np.int32)
        segments = None
        if split.pair is not None and "token_type_ids" in enc:
            segments, _ = flatten(enc["token_type_ids"], np.int8)
        if kind != Kind.TAGGING:
            return EncodedSplit(ids, offsets, np.asarray(split.labels, np.int64), segments)
        rows = []
        for i, tags in enumerate(split.labels):
            words = enc.word_ids(i)  # None for special tokens
            first = [w is not None and (j == 0 or words[j - 1] != w) for j, w in enumerate(words)]
            rows.append([tags[w] if f else IGNORE for w, f in zip(words, first, strict=True)])
        labels, _ = flatten(rows, np.int64)
        return EncodedSplit(ids, offsets, labels, segments)

    def save(self, directory: Path) -> None:
        (directory / "tokenizer.txt").write_text(self.tokenizer.name_or_path + "\n")

    def load(self, directory: Path) -> None:
        pass  # nothing to restore: the tokenizer is the pretrained one
