"""What a task is: a typed spec plus its train/dev/test splits as token lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    CLASSIFICATION = "classification"  # one label per text
    PAIR_CLASSIFICATION = "pair_classification"  # one label per pair of texts (NLI, paraphrase)
    TAGGING = "tagging"  # one label per token
    SEQ2SEQ = "seq2seq"  # an output sequence per text (translation, tags or a parse as a sequence)


class Metric(StrEnum):
    ACCURACY = "accuracy"
    SPAN_F1 = "f1"  # entity-level F1 over BIO spans (seqeval)
    TOKEN_ACCURACY = "token_accuracy"  # for tag sets without spans (POS)
    BINARY_F1 = "binary_f1"  # F1 of the positive class (label 1) of a binary task (MRPC)
    ROC_AUC = "roc_auc"  # area under the ROC curve of label 1's probability (binary tasks)
    BLEU = "bleu"  # corpus BLEU of detokenised output (sacrebleu, 13a tokenisation, cased)

    @property
    def higher_is_better(self) -> bool:
        return True  # every metric so far; a loss-like metric would return False


@dataclass
class Split:
    """Examples of one split. `labels[i]` is an int (classification) or a list of ints (tagging);
    pair tasks hold the second text of each pair in `pair`. A seq2seq task's `labels[i]` is its
    output sequence: a list of words (a text output, e.g. a translation, encoded with the run's
    word or subword vocabulary) or a list of ints indexing `Task.label_names` (a symbol output,
    e.g. POS tags or a linearised parse)."""

    tokens: list[list[str]]
    labels: list
    pair: list[list[str]] | None = None

    def __post_init__(self) -> None:
        assert len(self.tokens) == len(self.labels)
        assert self.pair is None or len(self.pair) == len(self.tokens)

    def subset(self, index) -> Split:
        """The examples at positions `index`, in that order."""
        pick = lambda xs: [xs[i] for i in index]  # noqa: E731
        return Split(pick(self.tokens), pick(self.labels),
                     None if self.pair is None else pick(self.pair))  # fmt: skip

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
    primary: bool = False  # the target task of a target + auxiliary suite (Sundararaman et al.)
    # metrics reported besides the primary one (Fang & Alqatari reports ROC-AUC, accuracy and F1)
    extra_metrics: list[Metric] = field(default_factory=list)
    # a task without dev data (§1.4.6 neutral / zero): how the trainer scores it at evaluation
    missing_dev: str | None = None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> Split:
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]
