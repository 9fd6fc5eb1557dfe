"""A joint byte-pair-encoding vocabulary learned on the training texts (Sennrich et al. 2016).

One subword vocabulary serves every task: it is learned on the training splits' sources (first
and second texts) and on the outputs of seq2seq tasks with a text output (a translation), as
translation models share one vocabulary between source and target (Jean et al. 2019: 32K).
Texts arrive as words; each word is split into subwords on its own, its first subword marked
with `▁` (the `Metaspace` pre-tokenizer), so decoding gives back the words joined by spaces.

Seq2seq encoding: `ids/offsets` hold the sources; `labels` the targets of all examples, flat,
each ending with `</s>`, delimited by `label_offsets`. A text output's target ids are subwords
of this vocabulary; a symbol output (ints into `Task.label_names`) becomes `3 + index`, after
the specials `[PAD]`=0, `[UNK]`=1, `</s>`=2 (see `seq2seq_targets`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

from mtlrun.tasks.encode import (
    EOS_ID,
    IGNORE,
    PAD_ID,
    SPECIALS,
    UNK,
    UNK_ID,
    EncodedSplit,
    encoded_pairs,
    flatten,
    load_tokenizer_json,
    seq2seq_targets,
    task_texts,
)
from mtlrun.tasks.spec import Kind, Split, Task

BPE_VERSION = 1  # bump when the training or pre-tokenisation recipe changes (keys the cache)
_TRAIN_CHUNK = 1000  # texts per batch handed to the trainer


class BpeEncoder:
    """Words -> subword ids of a BPE vocabulary of `vocab_size` entries (specials and the
    training texts' characters included) learned by `fit`. Each text keeps `max_length`
    subwords (a pair: each of its two texts); an empty text becomes one `[PAD]`. Characters
    never seen in training become `[UNK]`."""

    def __init__(self, vocab_size: int, max_length: int) -> None:
        if vocab_size < len(SPECIALS):
            raise ValueError(f"vocab_size must be >= {len(SPECIALS)} (got {vocab_size})")
        self.vocab_size, self.max_length = vocab_size, max_length
        self.tokenizer: Tokenizer | None = None

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def vocab(self) -> list[str]:
        ids = self._fitted().get_vocab()
        return sorted(ids, key=ids.get)  # subwords in id order

    def cache_spec(self) -> dict:
        # the library's version too: another BPE trainer may learn other merges
        return {"bpe": [self.vocab_size, BPE_VERSION, tokenizers.__version__],
                "max_length": self.max_length}  # fmt: skip

    def fit(self, tasks: list[Task]) -> None:
        tokenizer = Tokenizer(BPE(unk_token=UNK, fuse_unk=True))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = BpeTrainer(vocab_size=self.vocab_size, special_tokens=SPECIALS,
                             show_progress=False)  # fmt: skip
        tokenizer.train_from_iterator(_chunks(t for task in tasks for t in task_texts(task)),
                                      trainer)  # fmt: skip
        vocab = tokenizer.get_vocab()
        assert [vocab.get(s) for s in SPECIALS] == [PAD_ID, UNK_ID, EOS_ID]
        self.tokenizer = tokenizer

    def encode_words(self, texts: list[list[str]]) -> list[list[int]]:
        """The subword ids of each text (a list of words), uncut; an empty text gives []."""
        return [e.ids for e in self._encodings(texts)]

    def decode(self, ids: list[int]) -> str:
        """The words of `ids` joined by single spaces; special tokens are dropped (cut a
        generated sequence at `eos_id` first if what follows it is not wanted)."""
        text = self._fitted().decode([int(i) for i in ids], skip_special_tokens=True)
        return " ".join(w for w in text.split(" ") if w)  # no gaps where an [UNK] was dropped

    def _source(self, texts: list[list[str]]) -> list[list[int]]:
        return [row[: self.max_length] or [PAD_ID] for row in self.encode_words(texts)]

    def encode(self, split: Split, kind: Kind) -> EncodedSplit:
        if kind == Kind.TAGGING:
            return self._encode_tagging(split)
        first = self._source(split.tokens)
        if split.pair is not None:
            second = self._source(split.pair)
            return encoded_pairs(first, second, split.labels)
        ids, offsets = flatten(first, np.int32)
        if kind != Kind.SEQ2SEQ:
            return EncodedSplit(ids, offsets, np.asarray(split.labels, np.int64))
        labels, label_offsets = seq2seq_targets(self.encode_words, split.labels, self.max_length)
        return EncodedSplit(ids, offsets, labels, label_offsets=label_offsets)

    def _encode_tagging(self, split: Split) -> EncodedSplit:
        """Each word's tag on its first subword, IGNORE on its other subwords."""
        rows_ids, rows_labels = [], []
        for e, tags in zip(self._encodings(split.tokens), split.labels, strict=True):
            word_ids = e.word_ids[: self.max_length]
            rows_ids.append(e.ids[: self.max_length] or [PAD_ID])  # an empty text: one pad
            rows_labels.append([tags[w] if j == 0 or word_ids[j - 1] != w else IGNORE
                                for j, w in enumerate(word_ids)] or [IGNORE])  # fmt: skip
        ids, offsets = flatten(rows_ids, np.int32)
        labels, _ = flatten(rows_labels, np.int64)
        return EncodedSplit(ids, offsets, labels)

    def _encodings(self, texts: list[list[str]]) -> list[tokenizers.Encoding]:
        return self._fitted().encode_batch([list(t) for t in texts], is_pretokenized=True,
                                           add_special_tokens=False)  # fmt: skip

    def save(self, directory: Path) -> None:
        self._fitted().save(str(directory / "tokenizer.json"))

    def load(self, directory: Path) -> None:
        self.tokenizer = load_tokenizer_json(directory)

    def _fitted(self) -> Tokenizer:
        if self.tokenizer is None:
            raise RuntimeError("BpeEncoder: call fit (or load) first")
        return self.tokenizer


def _chunks(texts: Iterator[list[str]]) -> Iterator[list[str]]:
    """Texts as space-joined strings, in batches (the trainer's pre-tokenizer splits them at
    the spaces again, as `is_pretokenized` encoding splits them into the words)."""
    batch = []
    for words in texts:
        batch.append(" ".join(words))
        if len(batch) == _TRAIN_CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch
