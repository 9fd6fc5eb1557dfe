"""GLUE SST-2, MRPC, RTE, QNLI and MNLI (Sundararaman et al.; Fang & Alqatari), from files
under data_dir or, with data_dir=null, from the Hugging Face hub (`nyu-mll/glue`).

Local formats (README, Data):
- GLUE TSVs `<TASK>/{train,dev}.tsv`: a header row, TAB-separated with no quoting (QNLI dev has
  stray `"` that belong to the text), UTF-8 (MRPC starts with a BOM); columns are picked by
  header name. The unlabelled test.tsv files are not used.
- MNLI: GLUE's `MNLI/train.tsv` / `dev_matched.tsv` when present; otherwise the MultiNLI 1.0
  jsonl dev set `mnli_dev_matched.jsonl.xz` (rows with gold_label "-" dropped) and a
  10,000-example train sample: `mnli_train_10k_split.json.xz` (a JSON array, the documented
  sample) or `mnli_train_10000_split.jsonl.xz`.

GLUE's test labels are hidden, so by default each labelled dev set is cut into two fixed halves
(`split_seed`): one is the dev split, the other the test split (Fang & Alqatari §4.1).
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtlrun.errors import ConfigError, DataError
from mtlrun.tasks.sources import load_hub_split, local_dir
from mtlrun.tasks.spec import Kind, Metric, Split, Task
from mtlrun.tasks.text_files import (
    decode_utf8,
    file_digests,
    find_file,
    is_dir,
    is_file,
    read_bytes,
    read_lines,
    word_tokens,
)

log = logging.getLogger(__name__)

NLI_LABELS = ["entailment", "neutral", "contradiction"]
# the ClassLabel orders of nyu-mll/glue, so hub and local files give the same label ids
LABELS = {
    "sst2": ["negative", "positive"],
    "mrpc": ["not_equivalent", "equivalent"],
    "rte": ["entailment", "not_entailment"],
    "qnli": ["entailment", "not_entailment"],
    "mnli": NLI_LABELS,
}
DIRS = {"sst2": "SST-2", "mrpc": "MRPC", "rte": "RTE", "qnli": "QNLI", "mnli": "MNLI"}
# header names of (first text, second text or None, label) in GLUE's TSV files
TSV_COLUMNS = {
    "sst2": ("sentence", None, "label"),
    "mrpc": ("#1 String", "#2 String", "Quality"),
    "rte": ("sentence1", "sentence2", "label"),
    "qnli": ("question", "sentence", "label"),
    "mnli": ("sentence1", "sentence2", "gold_label"),
}
MNLI_SAMPLES = {
    "sample_10k": "mnli_train_10k_split.json.xz",
    "sample_10000": "mnli_train_10000_split.jsonl.xz",
}
HUB_ID = "nyu-mll/glue"
METRICS = ("accuracy", "binary_f1", "roc_auc")
BINARY_ONLY = ("binary_f1", "roc_auc")


@dataclass
class GlueTasksConfig:
    name: str = "glue"
    path: str = "glue"  # under data_dir (an absolute path is used as it is)
    tasks: list[str] = field(default_factory=lambda: ["sst2", "rte", "mrpc"])
    primary: str | None = None  # target task of a target + auxiliary suite (Sundararaman et al.)
    train_size: dict[str, int] = field(default_factory=dict)  # downsample train: {sst2: 8000}
    dev_as_test: bool = True  # dev halves as dev and test; false: the whole dev set is both
    split_seed: int = 0  # fixed, so every run and seed sees the same halves and samples
    metric: str = "accuracy"  # the primary metric: accuracy or roc_auc
    extra_metrics: list[str] = field(default_factory=list)  # binary ones skip 3-class tasks
    mnli_train: str = "sample_10k"  # offline MNLI train file: sample_10k or sample_10000

    def __post_init__(self) -> None:
        known = list(LABELS)
        if not self.tasks or set(self.tasks) - set(known) or len(set(self.tasks)) < len(self.tasks):
            raise ConfigError(f"tasks.tasks: distinct names from {known} (got {self.tasks})")
        if self.primary is not None and self.primary not in self.tasks:
            raise ConfigError(f"tasks.primary {self.primary!r} is not in tasks.tasks {self.tasks}")
        for task, size in self.train_size.items():
            if task not in self.tasks:
                raise ConfigError(f"tasks.train_size: {task!r} is not in tasks.tasks")
            if not size > 0:
                raise ConfigError(f"tasks.train_size.{task} must be > 0 (got {size})")
        if self.metric not in ("accuracy", "roc_auc"):
            raise ConfigError(f"tasks.metric must be accuracy or roc_auc (got {self.metric!r})")
        if self.metric in BINARY_ONLY and "mnli" in self.tasks:
            raise ConfigError(f"tasks.metric={self.metric} needs binary tasks; mnli has 3 labels")
        if set(self.extra_metrics) - set(METRICS):
            raise ConfigError(f"tasks.extra_metrics: choose from {METRICS} ({self.extra_metrics})")
        check_mnli_train(self.mnli_train)


def check_mnli_train(value: str) -> None:
    if value not in MNLI_SAMPLES:
        raise ConfigError(f"tasks.mnli_train must be one of {list(MNLI_SAMPLES)} (got {value!r})")


# --- readers ---------------------------------------------------------------------------------
def tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a TAB-separated file, BOM stripped, empty lines skipped. No
    quote handling: a `"` is text. Every row needs as many fields as the first one."""
    width = None
    for number, line in read_lines(path):
        if number == 1:
            line = line.removeprefix("\ufeff")
        if not line:
            continue
        fields = line.split("\t")
        width = width or len(fields)
        if len(fields) != width:
            raise DataError(
                f"{path}:{number}: expected {width} TAB-separated fields, got {len(fields)}"
            )
        yield number, fields


def label_index(value: str, names: Sequence[str], where: str) -> int:
    """A label given by name ("entailment") or by index ("0", as SST-2 and MRPC write them)."""
    value = value.strip()
    if value in names:
        return names.index(value)
    if value.isdigit() and int(value) < len(names):
        return int(value)
    raise DataError(f"{where}: unknown label {value!r}; expected one of {list(names)}")


def read_header_tsv(path: Path, columns: tuple, label_names: Sequence[str]) -> Split:
    """A TSV with a header row; `columns` = header names of (text, second text or None, label)."""
    rows = tsv_rows(path)
    _, header = next(rows, (1, []))
    missing = [c for c in columns if c is not None and c not in header]
    if missing:
        raise DataError(f"{path}:1: header {header} lacks the column(s) {missing}")
    first, second, label = (None if c is None else header.index(c) for c in columns)
    tokens, pair, labels = [], [], []
    for number, fields in rows:
        tokens.append(word_tokens(fields[first]))
        if second is not None:
            pair.append(word_tokens(fields[second]))
        labels.append(label_index(fields[label], label_names, f"{path}:{number}"))
    return Split(tokens, labels, pair if second is not None else None)


def read_glue_tsv(path: Path, task: str) -> Split:
    return read_header_tsv(path, TSV_COLUMNS[task], LABELS[task])


def _mnli_records(path: Path) -> Iterator[tuple[str, object]]:
    """(where, record) of a MultiNLI jsonl file or JSON array file (xz-compressed or not)."""
    text = decode_utf8(read_bytes(path), path)
    if path.name.removesuffix(".xz").endswith(".jsonl"):
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    yield f"{path}:{number}", json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        return
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON array of records")
    for i, record in enumerate(records):
        yield f"{path}: record {i}", record


def read_mnli(path: Path) -> Split:
    """MNLI examples of a GLUE TSV, MultiNLI jsonl or JSON array file; gold_label "-" (no
    annotator majority) is dropped, as GLUE and the hub do."""
    if path.name.removesuffix(".gz").endswith(".tsv"):
        return read_glue_tsv(path, "mnli")
    tokens, pair, labels = [], [], []
    for where, record in _mnli_records(path):
        if not isinstance(record, dict) or not {"sentence1", "sentence2", "gold_label"} <= set(
            record
        ):
            raise DataError(f"{where}: expected an object with sentence1, sentence2, gold_label")
        if record["gold_label"] == "-":
            continue
        labels.append(label_index(str(record["gold_label"]), NLI_LABELS, where))
        tokens.append(word_tokens(record["sentence1"]))
        pair.append(word_tokens(record["sentence2"]))
    return Split(tokens, labels, pair)


# --- hub ---------------------------------------------------------------------------------------
TEXT_COLUMNS = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question", "sentence"),
                ("sentence", None))  # fmt: skip


def split_from_dataset(ds, label_names: Sequence[str]) -> Split:
    """A `datasets.Dataset` with one or two text columns and an integer `label` as a Split; rows
    labelled -1 (GLUE's hidden test labels) are dropped."""
    names = getattr(ds.features.get("label"), "names", None)
    if names is not None and list(names) != list(label_names):
        raise DataError(f"hub dataset labels {names} differ from the expected {list(label_names)}")
    columns = next((c for c in TEXT_COLUMNS if set(c) - {None} <= set(ds.column_names)), None)
    if columns is None or "label" not in ds.column_names:
        raise DataError(f"hub dataset columns {ds.column_names}: no known text and label columns")
    data = ds.select_columns([c for c in (*columns, "label") if c]).to_dict()
    keep = [i for i, y in enumerate(data["label"]) if y != -1]
    if any(not 0 <= data["label"][i] < len(label_names) for i in keep):
        raise DataError(f"hub dataset has labels outside 0..{len(label_names) - 1}")
    first, second = columns
    return Split(
        [word_tokens(data[first][i]) for i in keep],
        [data["label"][i] for i in keep],
        None if second is None else [word_tokens(data[second][i]) for i in keep],
    )


def hub_split(hub_id: str, config: str, split: str, labels, *, what: str, local: str):
    """(Split, fingerprint) of one hub split."""
    ds = load_hub_split(hub_id, config, split, what=what, local=local)
    fingerprint = {"hub": hub_id, "config": config, "split": split,
                   "fingerprint": getattr(ds, "_fingerprint", None)}  # fmt: skip
    return split_from_dataset(ds, labels), fingerprint


# --- fixed splits ------------------------------------------------------------------------------
def fixed_split(n: int, first: int, seed: int, groups: Sequence | None = None):
    """Two disjoint index lists in data order covering range(n), the first of `first` items
    (at least, with groups), drawn with `seed` alone (never the run seed, so every run sees the
    same data). With `groups`, the items sharing a group key stay on the same side."""
    groups = list(range(n)) if groups is None else list(groups)
    sizes = Counter(groups)
    chosen, size = set(), 0
    for g in random.Random(seed).sample(list(sizes), len(sizes)):
        if size >= first:
            break
        chosen.add(g)
        size += sizes[g]
    return ([i for i, g in enumerate(groups) if g in chosen],
            [i for i, g in enumerate(groups) if g not in chosen])  # fmt: skip


# --- MNLI train (shared with XNLI) ---------------------------------------------------------------
def mnli_train_file(directory: Path, sample: str) -> Path:
    """GLUE's full MNLI/train.tsv when present, else the chosen 10,000-example sample."""
    full = find_file(directory, "train.tsv")
    if full is not None:
        return full
    check_mnli_train(sample)
    return directory / MNLI_SAMPLES[sample]


def warn_if_sample(path: Path) -> None:
    if path.name in MNLI_SAMPLES.values():
        log.warning(
            "MNLI train is %s: a 10,000-example sample, not the full 393k train set "
            "(data_dir=null with internet loads the full one)",
            path,
        )


def hub_mnli_train(local: str):
    return hub_split(HUB_ID, "mnli", "train", NLI_LABELS, what="MNLI train", local=local)


# --- the suite ---------------------------------------------------------------------------------
def local_files(directory: Path, task: str, mnli_train: str) -> dict[str, Path]:
    """The train and dev files of one task, or a DataError that says what to do."""
    folder = directory / DIRS[task]
    if task == "mnli":
        files = {"train": mnli_train_file(folder, mnli_train),
                 "dev": find_file(folder, "dev_matched.tsv")
                 or folder / "mnli_dev_matched.jsonl.xz"}  # fmt: skip
    else:
        files = {s: find_file(folder, f"{s}.tsv") or folder / f"{s}.tsv" for s in ("train", "dev")}
    for split, path in files.items():
        source = "GLUE's " if ".tsv" in path.name else ""
        if not is_file(path):
            raise DataError(
                f"GLUE {task} {split}: {DIRS[task]}/{path.name} is missing in {directory}. "
                f"Either set data_dir=null (needs internet: the hub's {HUB_ID} config {task}), "
                f"or put {source}{DIRS[task]}/{path.name} there"
            )
    return files


def read_local(task: str, path: Path) -> Split:
    return read_mnli(path) if task == "mnli" else read_glue_tsv(path, task)


def make_task(name: str, train: Split, dev: Split, cfg: GlueTasksConfig, fingerprint) -> Task:
    """Downsample train, cut dev into dev and test halves, attach metrics and settings."""
    if name in cfg.train_size:
        size = cfg.train_size[name]
        if size > len(train):
            raise DataError(f"tasks.train_size.{name}={size}, but {name} train has {len(train)}")
        train = train.subset(fixed_split(len(train), size, cfg.split_seed)[0])
    if cfg.dev_as_test:
        dev_index, test_index = fixed_split(len(dev), len(dev) // 2, cfg.split_seed)
        dev, test = dev.subset(dev_index), dev.subset(test_index)
    else:
        test = dev
    binary = len(LABELS[name]) == 2
    return Task(
        name=name,
        kind=Kind.CLASSIFICATION if name == "sst2" else Kind.PAIR_CLASSIFICATION,
        label_names=list(LABELS[name]),
        metric=Metric(cfg.metric),
        train=train,
        dev=dev,
        test=test,
        fingerprint={
            "source": fingerprint,
            "train_size": cfg.train_size.get(name),
            "dev_as_test": cfg.dev_as_test,
            "split_seed": cfg.split_seed,
        },
        primary=name == cfg.primary,
        extra_metrics=[Metric(m) for m in cfg.extra_metrics if binary or m not in BINARY_ONLY],
    )


def load_glue(cfg: GlueTasksConfig, data_dir: str | None) -> list[Task]:
    directory = local_dir(data_dir, cfg.path)
    if directory is not None and not is_dir(directory):
        raise DataError(f"no GLUE data: {directory} does not exist; set data_dir=... or null")
    tasks = []
    if directory is not None:
        # find every file before reading any, so a missing one fails at once
        files = {task: local_files(directory, task, cfg.mnli_train) for task in cfg.tasks}
        for task, paths in files.items():
            if task == "mnli":
                warn_if_sample(paths["train"])
            train, dev = (read_local(task, paths[s]) for s in ("train", "dev"))
            tasks.append(make_task(task, train, dev, cfg, file_digests(paths.values())))
        return tasks
    for task in cfg.tasks:
        where = f"{cfg.path}/{DIRS[task]}/"
        train, train_fp = hub_split(HUB_ID, task, "train", LABELS[task],
                                    what=f"GLUE {task} train", local=where)  # fmt: skip
        dev_name = "validation_matched" if task == "mnli" else "validation"
        dev, dev_fp = hub_split(HUB_ID, task, dev_name, LABELS[task],
                                what=f"GLUE {task} dev", local=where)  # fmt: skip
        tasks.append(make_task(task, train, dev, cfg, [train_fp, dev_fp]))
    return tasks
