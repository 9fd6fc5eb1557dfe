"""The embedded synthetic suite: generated from the seed, no files, built so scheduling matters.

Classification tasks ("sentiment" in different "domains") share a lexicon of polar words (the
common signal), each has its own polar words (task-specific signal), and each flips the
polarity of a few shared words (a conflict, so tasks also hurt each other). Training sets
differ in size by 40x and in label noise, so the smallest task can only learn the shared
lexicon from the others, and how often each task is drawn changes what each one learns.

The tagging task marks entity spans (BIO): entity words are ambiguous and the span's type is
given by the trigger word in front of it, so a tagger needs context.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mtlrun.tasks.spec import Kind, Metric, Split, Task

N_SHARED_POLAR = 120  # shared lexicon: half positive, half negative
N_TASK_POLAR = 16  # each task's own polar words
N_FLIPPED = 6  # shared words whose polarity a task reverses
N_FILLER = 400
N_ENTITY = 60
TRIGGERS = {"PER": ["mr", "mrs", "dr"], "LOC": ["in", "at", "near"], "ORG": ["from", "by"]}


class Lexicon:
    def __init__(self, rng: np.random.Generator, n_tasks: int) -> None:
        self.shared = [f"s{i}" for i in range(N_SHARED_POLAR)]
        self.shared_polarity = np.where(np.arange(N_SHARED_POLAR) % 2 == 0, 1.0, -1.0)
        self.filler = [f"f{i}" for i in range(N_FILLER)]
        self.task_words = [[f"t{k}_{i}" for i in range(N_TASK_POLAR)] for k in range(n_tasks)]
        self.task_polarity = np.where(np.arange(N_TASK_POLAR) % 2 == 0, 1.0, -1.0)
        self.flipped = [
            rng.choice(N_SHARED_POLAR, N_FLIPPED, replace=False) for _ in range(n_tasks)
        ]
        self.entities = [f"e{i}" for i in range(N_ENTITY)]


def sentiment_split(lex: Lexicon, k: int, n: int, noise: float, rng: np.random.Generator) -> Split:
    polarity = lex.shared_polarity.copy()
    polarity[lex.flipped[k]] *= -1
    tokens, labels = [], []
    for _ in range(n):
        length = int(rng.integers(8, 21))
        kind = rng.choice(3, size=length, p=[0.5, 0.35, 0.15])  # filler, shared, task word
        shared = rng.integers(0, N_SHARED_POLAR, size=length)
        own = rng.integers(0, N_TASK_POLAR, size=length)
        filler = rng.integers(0, N_FILLER, size=length)
        words, score = [], 0.0
        for j in range(length):
            if kind[j] == 1:
                words.append(lex.shared[shared[j]])
                score += polarity[shared[j]]
            elif kind[j] == 2:
                words.append(lex.task_words[k][own[j]])
                score += 1.5 * lex.task_polarity[own[j]]
            else:
                words.append(lex.filler[filler[j]])
        label = int(score > 0) if score != 0 else int(rng.integers(0, 2))
        if rng.random() < noise:
            label = 1 - label
        tokens.append(words)
        labels.append(label)
    return Split(tokens, labels)


TAG_NAMES = ["O"] + [f"{p}-{t}" for t in TRIGGERS for p in ("B", "I")]


def tagging_split(lex: Lexicon, n: int, rng: np.random.Generator) -> Split:
    tag_id = {name: i for i, name in enumerate(TAG_NAMES)}
    types = list(TRIGGERS)
    tokens, labels = [], []
    for _ in range(n):
        words, tags = [], []
        for _ in range(int(rng.integers(1, 4))):  # 1-3 entity mentions per sentence
            for _ in range(int(rng.integers(1, 5))):
                words.append(lex.filler[int(rng.integers(0, N_FILLER))])
                tags.append(tag_id["O"])
            etype = types[int(rng.integers(0, len(types)))]
            words.append(TRIGGERS[etype][int(rng.integers(0, len(TRIGGERS[etype])))])
            tags.append(tag_id["O"])
            for j in range(int(rng.integers(1, 4))):
                words.append(lex.entities[int(rng.integers(0, N_ENTITY))])
                tags.append(tag_id[f"{'B' if j == 0 else 'I'}-{etype}"])
        words.append(lex.filler[int(rng.integers(0, N_FILLER))])
        tags.append(tag_id["O"])
        tokens.append(words)
        labels.append(tags)
    return Split(tokens, labels)


def load_synthetic(cfg, seed: int) -> list[Task]:
    rng = np.random.default_rng([seed, 7919])  # the suite depends only on the run seed
    n_cls = len(cfg.train_sizes)
    lex = Lexicon(rng, n_cls)
    # the generator's own source is part of the key: editing it invalidates cached encodings
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    fingerprint = {"generator": source, "seed": seed, "cfg": repr(cfg)}
    tasks = []
    for k, (n, noise) in enumerate(zip(cfg.train_sizes, cfg.label_noise, strict=True)):
        splits = [
            sentiment_split(lex, k, m, r, rng)
            for m, r in ((n, noise), (cfg.dev_size, noise), (cfg.test_size, 0.0))
        ]  # clean test labels
        tasks.append(
            Task(
                f"sent{k}",
                Kind.CLASSIFICATION,
                ["negative", "positive"],
                Metric.ACCURACY,
                *splits,
                fingerprint=fingerprint,
            )
        )
    if cfg.tagging_train_size > 0:
        splits = [
            tagging_split(lex, m, rng)
            for m in (cfg.tagging_train_size, cfg.dev_size, cfg.test_size)
        ]
        tasks.append(
            Task(
                "entities",
                Kind.TAGGING,
                TAG_NAMES,
                Metric.SPAN_F1,
                *splits,
                fingerprint=fingerprint,
            )
        )
    return tasks
