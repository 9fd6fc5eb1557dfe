"""XNLI cross-lingual transfer (Sundararaman et al. Table 1): English NLI (MNLI train) + one target
language, from local files under data_dir or, with data_dir=null, the hub (`facebook/xnli`).

Local formats (README, Data), each split taken from the first that is present:
- XNLI-1.0 `xnli.{dev,test}.tsv` (also under `XNLI-1.0/`): a header row naming language,
  gold_label, sentence1, sentence2 among others; rows are filtered by language.
- myXNLI labelled tests `sw.genre.test.tsv`, `ur.genre.test.tsv` and `my.genre.test.tsv` (the
  English test, columns sentence1_en / sentence2_en): header `genre label sentence1_<l> ...`.
- XTREME `dev-<lang>.tsv` (premise TAB hypothesis TAB label, no header) and `test-<lang>.tsv`
  (premise TAB hypothesis: XTREME strips test labels). All XNLI languages share the same test
  rows in the same order, so row i of an unlabelled test takes the label of row i of
  `sw.genre.test.tsv` (README §7b; how th and hi get labels here).
- Translate-train: XNLI-MT-1.0 `multinli.train.<lang>.tsv` (also under
  `XNLI-MT-1.0/multinli/`; header premise hypo label). The shared data has none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mtlrun.errors import ConfigError, DataError
from mtlrun.tasks import glue
from mtlrun.tasks.glue import NLI_LABELS, fixed_split, hub_split, read_header_tsv
from mtlrun.tasks.sources import local_dir
from mtlrun.tasks.spec import Kind, Metric, Split, Task
from mtlrun.tasks.text_files import file_digests, find_file, is_dir, is_file, word_tokens

log = logging.getLogger(__name__)

HUB_ID = "facebook/xnli"
LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi",
             "zh")  # fmt: skip
# myXNLI files holding a labelled test set, and the language suffix of their text columns
MYXNLI = {"sw": "sw.genre.test.tsv", "ur": "ur.genre.test.tsv", "en": "my.genre.test.tsv"}
ALIGNED_LABELS = "sw.genre.test.tsv"  # the label column shared by every language's test rows


@dataclass
class XnliTasksConfig:
    name: str = "xnli"
    path: str = "xnli"  # under data_dir (an absolute path is used as it is)
    mnli_path: str = "glue/MNLI"  # the English train set
    language: str = "sw"  # the target language; English is always the second task
    # translate_train: the target trains on machine-translated MNLI (XNLI-MT, Sundararaman et al.);
    # dev_split: on a fixed share of its own dev set (offline, where there is no translate-train)
    target_train: str = "translate_train"
    dev_split_fraction: float = 0.5  # dev_split: the share of dev-<lang> kept as dev
    split_seed: int = 0
    mnli_train: str = "sample_10k"  # offline MNLI train file: sample_10k or sample_10000

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES or self.language == "en":
            choices = [lang for lang in LANGUAGES if lang != "en"]
            raise ConfigError(
                f"tasks.language must be an XNLI language other than en (English is always "
                f"included): one of {choices} (got {self.language!r})"
            )
        if self.target_train not in ("translate_train", "dev_split"):
            raise ConfigError(
                f"tasks.target_train must be translate_train or dev_split ({self.target_train!r})"
            )
        if not 0 < self.dev_split_fraction < 1:
            raise ConfigError(
                f"tasks.dev_split_fraction must be in (0, 1) (got {self.dev_split_fraction})"
            )
        glue.check_mnli_train(self.mnli_train)


# --- readers ---------------------------------------------------------------------------------
def read_xtreme(path: Path) -> tuple[list, list, list | None]:
    """(premises, hypotheses, labels or None) of an XTREME file without header: 3 fields per
    row (dev) or 2 (test, labels stripped)."""
    premises, hypotheses, labels = [], [], []
    for number, fields in glue.tsv_rows(path):
        if len(fields) not in (2, 3):
            raise DataError(f"{path}:{number}: expected premise<TAB>hypothesis[<TAB>label]")
        premises.append(word_tokens(fields[0]))
        hypotheses.append(word_tokens(fields[1]))
        if len(fields) == 3:
            labels.append(glue.label_index(fields[2], NLI_LABELS, f"{path}:{number}"))
    return premises, hypotheses, labels if labels else None


def read_xtreme_labelled(path: Path) -> Split:
    premises, hypotheses, labels = read_xtreme(path)
    if labels is None:
        raise DataError(f"{path}: no label column (expected premise<TAB>hypothesis<TAB>label)")
    return Split(premises, labels, hypotheses)


def read_xnli10(path: Path, language: str) -> Split:
    """The rows of one language in XNLI-1.0's xnli.dev.tsv / xnli.test.tsv."""
    columns = ("sentence1", "sentence2", "gold_label", "language")
    rows = glue.tsv_rows(path)
    _, header = next(rows, (1, []))
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}:1: header {header} lacks the column(s) {missing}")
    first, second, label, lang = (header.index(c) for c in columns)
    tokens, pair, labels = [], [], []
    for number, fields in rows:
        if fields[lang] == language:
            tokens.append(word_tokens(fields[first]))
            pair.append(word_tokens(fields[second]))
            labels.append(glue.label_index(fields[label], NLI_LABELS, f"{path}:{number}"))
    if not tokens:
        raise DataError(f"{path}: no rows with language {language!r}")
    return Split(tokens, labels, pair)


def read_myxnli(path: Path, language: str) -> Split:
    columns = (f"sentence1_{language}", f"sentence2_{language}", "label")
    return read_header_tsv(path, columns, NLI_LABELS)


def aligned_labels(labels_file: Path, texts: Path, n: int) -> list[int]:
    """The labels of an unlabelled XTREME test (`texts`, n rows): row i takes the label of row i
    of another language's labelled test (README §7b), so the row counts must agree."""
    labels = read_myxnli(labels_file, labels_file.name.split(".")[0]).labels
    if len(labels) != n:
        raise DataError(
            f"{texts}: {n} rows, but {labels_file} has {len(labels)} labelled rows; row i's "
            f"label is taken from row i there, so the counts must match"
        )
    return labels


def read_xnli_mt(path: Path) -> Split:
    """XNLI-MT-1.0 translate-train: header premise hypo label, label `contradictory`."""
    labels = ["entailment", "neutral", "contradictory"]
    return read_header_tsv(path, ("premise", "hypo", "label"), labels)


# --- local files -------------------------------------------------------------------------------
def _first(directory: Path, *names: str) -> Path | None:
    for name in names:
        found = find_file(directory, name)
        if found is not None:
            return found
    return None


def local_dev(directory: Path, language: str) -> tuple[Split, list[Path]]:
    xnli10 = _first(directory, "xnli.dev.tsv", "XNLI-1.0/xnli.dev.tsv")
    if xnli10 is not None:
        return read_xnli10(xnli10, language), [xnli10]
    xtreme = find_file(directory, f"dev-{language}.tsv")
    if xtreme is None:
        raise DataError(
            f"XNLI {language} dev: neither xnli.dev.tsv (XNLI-1.0) nor dev-{language}.tsv "
            f"(XTREME) is in {directory}; put one there, or set data_dir=null (needs internet: "
            f"{HUB_ID})"
        )
    return read_xtreme_labelled(xtreme), [xtreme]


def local_test(directory: Path, language: str) -> tuple[Split, list[Path]]:
    """The labelled test: XNLI-1.0, else myXNLI, else XTREME (its own labels or aligned ones)."""
    xnli10 = _first(directory, "xnli.test.tsv", "XNLI-1.0/xnli.test.tsv")
    if xnli10 is not None:
        return read_xnli10(xnli10, language), [xnli10]
    labelled = find_file(directory, MYXNLI[language]) if language in MYXNLI else None
    if labelled is not None:
        return read_myxnli(labelled, language), [labelled]
    texts = find_file(directory, f"test-{language}.tsv")
    aligned = find_file(directory, ALIGNED_LABELS)
    if texts is not None:
        premises, hypotheses, labels = read_xtreme(texts)
        if labels is not None:
            return Split(premises, labels, hypotheses), [texts]
        if aligned is not None:
            labels = aligned_labels(aligned, texts, len(premises))
            return Split(premises, labels, hypotheses), [texts, aligned]
    raise DataError(
        f"XNLI {language} test: no labelled test in {directory}; put xnli.test.tsv (XNLI-1.0) "
        f"there, or test-{language}.tsv with {ALIGNED_LABELS} (its labels), or set "
        f"data_dir=null (needs internet: {HUB_ID})"
    )


def local_translate_train(directory: Path, language: str) -> tuple[Split, list[Path]]:
    name = f"multinli.train.{language}.tsv"
    path = _first(directory, name, f"XNLI-MT-1.0/multinli/{name}")
    if path is None:
        raise DataError(
            f"XNLI {language} translate-train: {name} (XNLI-MT-1.0) is not in {directory}. "
            f"Set tasks.target_train=dev_split to train {language} on part of its dev set "
            f"(not comparable with the paper), or data_dir=null (needs internet: {HUB_ID} "
            f"{language} train), or put XNLI-MT-1.0's {name} there"
        )
    return read_xnli_mt(path), [path]


# --- the suite ---------------------------------------------------------------------------------
def _hub(language: str, split: str, what: str):
    local = f"xnli/ (dev-{language}.tsv, test labels; see README, Data)"
    return hub_split(HUB_ID, language, split, NLI_LABELS, what=what, local=local)


def _splits(cfg: XnliTasksConfig, data_dir: str | None, language: str, train: bool):
    """(train or None, dev, test, fingerprint) of one language."""
    directory = local_dir(data_dir, cfg.path)
    if directory is None:
        parts = [_hub(language, s, f"XNLI {language} {s}") for s in ("validation", "test")]
        if train:
            parts.insert(0, _hub(language, "train", f"XNLI {language} translate-train"))
        splits = [s for s, _ in parts]
        return (splits[0] if train else None, *splits[-2:], [fp for _, fp in parts])
    if not is_dir(directory):
        raise DataError(f"no XNLI data: {directory} does not exist; set data_dir=... or null")
    # translate-train first: when it is missing, nothing else needs reading
    train_split, train_files = local_translate_train(directory, language) if train else (None, [])
    dev, dev_files = local_dev(directory, language)
    test, test_files = local_test(directory, language)
    return train_split, dev, test, file_digests([*train_files, *dev_files, *test_files])


def _english_train(cfg: XnliTasksConfig, data_dir: str | None):
    directory = local_dir(data_dir, cfg.mnli_path)
    if directory is None:
        return glue.hub_mnli_train(local=cfg.mnli_path)
    path = glue.mnli_train_file(directory, cfg.mnli_train)
    if not is_file(path):
        raise DataError(
            f"XNLI en train (MNLI): {path} is missing; put it there, point tasks.mnli_path at "
            f"the MNLI folder, or set data_dir=null (needs internet: nyu-mll/glue mnli)"
        )
    glue.warn_if_sample(path)
    return glue.read_mnli(path), file_digests([path])


def _task(name: str, train: Split, dev: Split, test: Split, fingerprint, primary: bool) -> Task:
    return Task(name=name, kind=Kind.PAIR_CLASSIFICATION, label_names=list(NLI_LABELS),
                metric=Metric.ACCURACY, train=train, dev=dev, test=test,
                fingerprint=fingerprint, primary=primary)  # fmt: skip


def load_xnli(cfg: XnliTasksConfig, data_dir: str | None) -> list[Task]:
    """Two tasks: `en` (MNLI train, XNLI en dev and test) and the target language (primary)."""
    lang = cfg.language
    translate = cfg.target_train == "translate_train"
    train, dev, test, target_fp = _splits(cfg, data_dir, lang, train=translate)
    settings = {"target_train": cfg.target_train, "split_seed": cfg.split_seed}
    if not translate:
        log.warning(
            "XNLI %s trains on %.0f%% of its own dev set (tasks.target_train=dev_split): the "
            "scores are not comparable with Sundararaman et al.'s translate-train setting",
            lang,
            100 * (1 - cfg.dev_split_fraction),
        )
        # premises come in threes: keep each premise's examples on one side
        n_train = round(len(dev) * (1 - cfg.dev_split_fraction))
        train_index, dev_index = fixed_split(len(dev), n_train, cfg.split_seed,
                                             groups=[tuple(p) for p in dev.tokens])  # fmt: skip
        train, dev = dev.subset(train_index), dev.subset(dev_index)
        settings["dev_split_fraction"] = cfg.dev_split_fraction
    en_train, en_train_fp = _english_train(cfg, data_dir)
    _, en_dev, en_test, en_fp = _splits(cfg, data_dir, "en", train=False)
    return [
        _task("en", en_train, en_dev, en_test, {"train": en_train_fp, "eval": en_fp}, False),
        _task(lang, train, dev, test, {"source": target_fp, **settings}, True),
    ]
