"""What a task is: a typed spec plus its train/dev/test splits as token lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    CLASSIFICATION = "classification"  # one label per text
    TAGGING = "tagging"  # one label per token


class Metric(StrEnum):
    ACCURACY = "accuracy"
    SPAN_F1 = "f1"  # entity-level F1 over BIO spans (seqeval)
    TOKEN_ACCURACY = "token_accuracy"  # for tag sets without spans (POS)


@dataclass
class Split:
    """Examples of one split. `labels[i]` is an int (classification) or a list of ints (tagging)."""

    tokens: list[list[str]]
    labels: list

    def __post_init__(self) -> None:
        assert len(self.tokens) == len(self.labels)

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class Task:
    name: str
    kind: Kind
    label_names: list[str]
    metric: Metric
    train: Split
    dev: Split
    test: Split
    # what produced the data (file paths and stat, or generator settings): keys the token cache
    fingerprint: dict = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> Split:
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]
