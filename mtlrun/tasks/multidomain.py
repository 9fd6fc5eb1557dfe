"""The 16-domain sentiment benchmark (the QLS paper §5.1; Liu, Qiu & Huang 2017 "FDU-MTL").

Canonical files: `<domain>.task.train` and `<domain>.task.test` (optionally `.gz`), one example
per line, `label<TAB>text`, label 0/1, text lower-cased and tokenised. The train file holds
train + dev: its last `dev_size` lines are the dev split (1400/200/400 for most domains).
"""

from __future__ import annotations

from pathlib import Path

from mtlrun.errors import DataError
from mtlrun.tasks.sources import local_dir
from mtlrun.tasks.spec import Kind, Metric, Split, Task
from mtlrun.tasks.text_files import file_digests, find_file, is_dir, read_lines, split_tokens

HOW_TO_GET = (
    "put <domain>.task.train and <domain>.task.test (or .gz) there, from the FDU-MTL release "
    "(github.com/FrankWork/fudan_mtl_reviews, data/fudan-mtl-dataset.tar.gz): run "
    "`python scripts/download_data.py multidomain16 --to <data_dir>/fdu_mtl_16domain`, "
    "or point data_dir=... at a directory holding fdu_mtl_16domain/"
)


def read_labelled_lines(path: Path) -> Split:
    tokens, labels = [], []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab or label.strip() not in ("0", "1"):
            shown = line if len(line) < 60 else line[:57] + "..."
            raise DataError(
                f"{path}:{number}: expected 'label<TAB>text' with label 0 or 1, got {shown!r}"
            )
        tokens.append(split_tokens(text))
        labels.append(int(label))
    return Split(tokens, labels)


def load_domain(directory: Path, domain: str, dev_size: int) -> Task:
    files = {split: find_file(directory, f"{domain}.task.{split}") for split in ("train", "test")}
    missing = [f"{domain}.task.{s}" for s, f in files.items() if f is None]
    if missing:
        raise DataError(f"missing {', '.join(missing)} in {directory}: {HOW_TO_GET}")
    train_dev = read_labelled_lines(files["train"])
    if len(train_dev) <= dev_size:
        raise DataError(
            f"{files['train']}: {len(train_dev)} examples, too few to split off {dev_size} for dev"
        )
    cut = len(train_dev) - dev_size
    return Task(
        name=domain,
        kind=Kind.CLASSIFICATION,
        label_names=["negative", "positive"],
        metric=Metric.ACCURACY,
        train=Split(train_dev.tokens[:cut], train_dev.labels[:cut]),
        dev=Split(train_dev.tokens[cut:], train_dev.labels[cut:]),
        test=read_labelled_lines(files["test"]),
        fingerprint={
            "dev_size": dev_size,
            "files": file_digests(files.values()),
        },
    )


def load_multidomain16(cfg, data_dir: str | None) -> list[Task]:
    directory = local_dir(data_dir, cfg.path)
    if directory is None:
        raise DataError(
            f"multidomain16 has no Hugging Face hub copy: set data_dir=...; {HOW_TO_GET}"
        )
    if not is_dir(directory):
        raise DataError(f"no 16-domain sentiment data: {directory} does not exist; {HOW_TO_GET}")
    return [load_domain(directory, domain, cfg.dev_size) for domain in cfg.domains]
