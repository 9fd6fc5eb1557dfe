"""Translation task suites (kind SEQ2SEQ, text output, metric BLEU), from line-aligned files
under data_dir (`parallel_text`) or, with data_dir=null, from the Hugging Face hub.

- `tasks=multi30k`: Multi30k English->German (Elliott et al. 2016, "Multi30K: Multilingual
  English-German Image Descriptions"; WMT16 multimodal task 1): train 29,000 / val 1,014 /
  test 2016 Flickr 1,000 pairs, the raw original-case files
  `multi30k_en_de/{train,val,test_2016_flickr}.{en,de}.gz`; hub `bentrevett/multi30k`.
  One task, `multi30k_en_de`.
- `tasks=wmt14_en_de`: WMT'14 English->German; dev newstest2013 (3,000), test newstest2014
  (3,003) from `wmt14_en_de/newstest201{3,4}.{en,de}`; hub `wmt/wmt14` config `de-en` (its rows
  hold both languages; we translate en -> de). The training corpus (4.5M pairs: Europarl,
  Common Crawl, News Commentary) is not in the local data: it comes from the hub
  (data_dir=null), from files named by `train_source` / `train_target`, or, with
  `train=newstest_2009_2012`, from newstest 2009-2012 (11,020 pairs under
  `wmt14_en_de/extra_newstest_2009_2012/`): a small real stand-in so that the suite runs
  offline, NOT the WMT'14 training data; BLEU after training on it is not comparable with
  published WMT'14 numbers. One task, `wmt14_en_de`.
- `tasks=wmt_multilingual`: English->German and English->French trained together, the
  multilingual setting of Jean, Firat & Johnson 2019 (WMT'14 En-De and En-Fr); hub `wmt/wmt14`
  configs `de-en` and `fr-en` (train / newstest2013 / newstest2014), or local files per pair
  and split. Tasks `en_de` and `en_fr`.

Paths in the config are relative to data_dir (an absolute path is used as it is); with
data_dir=null a relative path means "not local": that split comes from the hub, which is never
contacted when data_dir is set. Words are whitespace-split, untokenised text: subword models
split them further (model.vocab.subwords), and BLEU scores detokenised output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from mtlrun.errors import ConfigError, DataError
from mtlrun.tasks.parallel_text import ParallelText, align, read_parallel
from mtlrun.tasks.sources import hub_reachable, load_hub_split, local_dir
from mtlrun.tasks.spec import Kind, Metric, Task
from mtlrun.tasks.text_files import expand_user, is_dir, is_file

log = logging.getLogger(__name__)

MULTI30K_HUB = "bentrevett/multi30k"
WMT14_HUB = "wmt/wmt14"
MULTI30K_FILES = {"train": "train", "dev": "val", "test": "test_2016_flickr"}
WMT14_EVAL = {"dev": "newstest2013", "test": "newstest2014"}
STAND_IN = "newstest_2009_2012"
STAND_IN_DIR = "extra_newstest_2009_2012"
STAND_IN_YEARS = ("newstest2009", "newstest2010", "newstest2011", "newstest2012")
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
SPLITS = ("train", "dev", "test")
# wmt_multilingual: language pair -> target language and wmt/wmt14 config
PAIRS = {"en_de": ("de", "de-en"), "en_fr": ("fr", "fr-en")}
COMPRESSED = ("", ".gz", ".xz", ".bz2")


def check_limits(prefix: str, max_train: int | None, max_eval: int | None) -> None:
    for key, value in (("max_train", max_train), ("max_eval", max_eval)):
        if value is not None and not value > 0:
            raise ConfigError(f"{prefix}{key} must be > 0 or null (got {value})")


def check_file_pair(prefix: str, source: str | None, target: str | None) -> None:
    if (source is None) != (target is None):
        raise ConfigError(f"{prefix}_source and {prefix}_target go together: set both or "
                          f"neither (got {source!r}, {target!r})")  # fmt: skip


@dataclass
class Multi30kConfig:
    name: str = "multi30k"
    path: str = "multi30k_en_de"  # under data_dir
    max_train: int | None = None  # the first N training pairs (CPU budgets)
    max_eval: int | None = None  # the first N pairs of dev and of test
    hub_revision: str | None = None  # data_dir=null: a commit of bentrevett/multi30k

    def __post_init__(self) -> None:
        check_limits("tasks.", self.max_train, self.max_eval)


@dataclass
class Wmt14EnDeConfig:
    name: str = "wmt14_en_de"
    path: str = "wmt14_en_de"  # under data_dir: newstest2013.{en,de}, newstest2014.{en,de}
    # training corpus: null = the files below when set, else the hub (data_dir=null);
    # newstest_2009_2012 = the small offline stand-in (NOT the WMT'14 training data)
    train: str | None = None
    train_source: str | None = None  # English side, absolute or under data_dir
    train_target: str | None = None  # German side, line-aligned with train_source
    max_train: int | None = None
    max_eval: int | None = None
    hub_revision: str | None = None

    def __post_init__(self) -> None:
        check_limits("tasks.", self.max_train, self.max_eval)
        if self.train not in (None, STAND_IN):
            raise ConfigError(f"tasks.train must be null or {STAND_IN} (got {self.train!r})")
        check_file_pair("tasks.train", self.train_source, self.train_target)
        if self.train == STAND_IN and self.train_source is not None:
            raise ConfigError(f"tasks.train={STAND_IN} and tasks.train_source/train_target "
                              "name two training corpora; choose one")  # fmt: skip


@dataclass
class PairFiles:
    """Local files of one language pair; a split whose two keys are null comes from the hub
    (data_dir=null only)."""

    train_source: str | None = None
    train_target: str | None = None
    dev_source: str | None = None
    dev_target: str | None = None
    test_source: str | None = None
    test_target: str | None = None

    def check(self, prefix: str) -> None:
        for split in SPLITS:
            check_file_pair(f"{prefix}.{split}", getattr(self, f"{split}_source"),
                            getattr(self, f"{split}_target"))  # fmt: skip


@dataclass
class WmtMultilingualConfig:
    name: str = "wmt_multilingual"
    pairs: list[str] = field(default_factory=lambda: list(PAIRS))
    en_de: PairFiles = field(default_factory=PairFiles)
    en_fr: PairFiles = field(default_factory=PairFiles)
    primary: str | None = None  # a target pair, or null: every pair counts the same
    max_train: int | None = None  # per pair
    max_eval: int | None = None
    hub_revision: str | None = None

    def __post_init__(self) -> None:
        known = list(PAIRS)
        if not self.pairs or set(self.pairs) - set(known) or len(set(self.pairs)) < len(self.pairs):
            raise ConfigError(f"tasks.pairs: distinct names from {known} (got {self.pairs})")
        if self.primary is not None and self.primary not in self.pairs:
            raise ConfigError(f"tasks.primary {self.primary!r} is not in tasks.pairs {self.pairs}")
        check_limits("tasks.", self.max_train, self.max_eval)
        for pair in known:
            getattr(self, pair).check(f"tasks.{pair}")


# --- pieces ------------------------------------------------------------------------------------
def find_text(directory: Path, name: str) -> Path | None:
    """`name` in `directory`, plain or compressed (.gz, .xz, .bz2), whichever exists."""
    for suffix in COMPRESSED:
        candidate = directory / f"{name}{suffix}"
        if is_file(candidate):
            return candidate
    return None


def local_pairs(directory: Path, stems: dict[str, str], languages: tuple[str, str], what: str,
                how: str) -> dict[str, tuple[Path, Path]]:  # fmt: skip
    """split -> (source path, target path) of `directory/<stem>.<language>` files, or one
    DataError listing every missing file and saying what to do (`how`)."""
    found, missing = {}, []
    for split, stem in stems.items():
        paths = [find_text(directory, f"{stem}.{lang}") for lang in languages]
        missing += [f"{stem}.{lang}" for lang, p in zip(languages, paths, strict=True) if not p]
        found[split] = tuple(paths)
    if missing:
        raise DataError(f"{what}: missing {', '.join(missing)} (or .gz) in {directory}; {how}")
    return found


def limit_of(split: str, max_train: int | None, max_eval: int | None) -> int | None:
    return max_train if split == "train" else max_eval


def hub_pairs(hub_id: str, config: str | None, split: str, languages: tuple[str, str], *,
              what: str, local: str, revision: str | None,
              limit: int | None) -> tuple[ParallelText, dict]:  # fmt: skip
    """(pairs, fingerprint) of one hub split: columns named by language (bentrevett/multi30k)
    or a `translation` column of {language: text} (wmt/wmt14). With `limit`, only the first
    `limit` rows are loaded (`train[:N]`)."""
    theirs = HUB_SPLITS[split] + (f"[:{limit}]" if limit is not None else "")
    ds = load_hub_split(hub_id, config, theirs, what=what, local=local, revision=revision)
    src, tgt = languages
    if "translation" in ds.column_names:
        rows = ds["translation"]
        sources, targets = [r[src] for r in rows], [r[tgt] for r in rows]
    elif {src, tgt} <= set(ds.column_names):
        sources, targets = list(ds[src]), list(ds[tgt])
    else:
        raise DataError(f"{what}: hub dataset {hub_id} columns {ds.column_names} hold neither "
                        f"`translation` nor {src!r} and {tgt!r}")  # fmt: skip
    s, t, dropped = align(sources, targets, f"{what} ({hub_id})", limit)
    fingerprint = {"hub": hub_id, "config": config, "split": theirs, "revision": revision,
                   "fingerprint": getattr(ds, "_fingerprint", None)}  # fmt: skip
    return ParallelText(s, t, {}, dropped), fingerprint


def read_local(paths: tuple[Path, Path], limit: int | None) -> tuple[ParallelText, dict]:
    text = read_parallel(*paths, limit=limit)
    return text, {"files": text.files}


def mt_task(name: str, data: dict[str, ParallelText], fingerprints: dict, cfg,
            primary: bool) -> Task:  # fmt: skip
    for split, text in data.items():
        if not len(text):
            raise DataError(f"{name} {split}: no sentence pairs")
    return Task(
        name=name,
        kind=Kind.SEQ2SEQ,
        label_names=[],  # a text output, encoded with the run's word or subword vocabulary
        metric=Metric.BLEU,
        train=data["train"].split(),
        dev=data["dev"].split(),
        test=data["test"].split(),
        fingerprint={"source": fingerprints, "max_train": cfg.max_train, "max_eval": cfg.max_eval},
        primary=primary,
    )


def _local_root(data_dir: str | None, path: str, what: str) -> Path | None:
    directory = local_dir(data_dir, path)
    if directory is not None and not is_dir(directory):
        raise DataError(f"no {what} data: {directory} does not exist; set data_dir=... or null")
    return directory


def user_path(data_dir: str | None, path: str) -> Path | None:
    """A file named in the config: absolute as it is, else under data_dir; None when data_dir
    is null and the path is relative (the hub then)."""
    p = expand_user(path)
    if p.is_absolute():
        return p
    return None if data_dir is None else expand_user(data_dir) / p


def require_files(paths, what: str, how: str) -> None:
    missing = [str(p) for p in paths if not is_file(p)]
    if missing:
        raise DataError(f"{what}: missing {', '.join(missing)}; {how}")


# --- Multi30k ----------------------------------------------------------------------------------
def load_multi30k(cfg: Multi30kConfig, data_dir: str | None) -> list[Task]:
    languages = ("en", "de")
    directory = _local_root(data_dir, cfg.path, "Multi30k")
    data, fingerprints = {}, {}
    if directory is not None:
        how = ("put the raw files of the multi30k/dataset repository (data/task1/raw/) there, "
               f"or set data_dir=null to load {MULTI30K_HUB} from the hub")  # fmt: skip
        files = local_pairs(directory, MULTI30K_FILES, languages, "Multi30k", how)
        for split, paths in files.items():
            limit = limit_of(split, cfg.max_train, cfg.max_eval)
            data[split], fingerprints[split] = read_local(paths, limit)
    else:
        local = f"{cfg.path}/{{train,val,test_2016_flickr}}.{{en,de}}.gz"
        for split in SPLITS:
            limit = limit_of(split, cfg.max_train, cfg.max_eval)
            data[split], fingerprints[split] = hub_pairs(
                MULTI30K_HUB, None, split, languages, what=f"Multi30k {split}", local=local,
                revision=cfg.hub_revision, limit=limit)  # fmt: skip
    return [mt_task("multi30k_en_de", data, fingerprints, cfg, primary=True)]


# --- WMT'14 En-De ------------------------------------------------------------------------------
def no_train_message(cfg: Wmt14EnDeConfig, why: str) -> str:
    return (f"WMT'14 En-De train: {why}; set tasks.train_source and tasks.train_target (a "
            "line-aligned English/German pair of files, absolute or under data_dir), or "
            f"tasks.train={STAND_IN} (newstest 2009-2012 under {cfg.path}/{STAND_IN_DIR}/: a "
            "small stand-in, not the WMT'14 training data), or data_dir=null with internet "
            f"({WMT14_HUB} de-en)")  # fmt: skip


def _wmt14_train(cfg: Wmt14EnDeConfig, data_dir: str | None,
                 directory: Path | None) -> tuple[ParallelText, dict]:  # fmt: skip
    languages = ("en", "de")
    if cfg.train == STAND_IN:
        if directory is None:
            raise DataError(f"tasks.train={STAND_IN} reads local files: set data_dir to the "
                            f"directory holding {cfg.path}/{STAND_IN_DIR}/")  # fmt: skip
        stand_in = directory / STAND_IN_DIR
        how = f"newstest 2009-2012 .en/.de files belong in {stand_in}"
        files = local_pairs(stand_in, {y: y for y in STAND_IN_YEARS}, languages,
                            f"WMT'14 En-De train ({STAND_IN})", how)  # fmt: skip
        parts = [read_parallel(*files[year]) for year in STAND_IN_YEARS]
        text = ParallelText([w for p in parts for w in p.source],
                            [w for p in parts for w in p.target],
                            {k: v for p in parts for k, v in p.files.items()},
                            sum(p.dropped for p in parts))  # fmt: skip
        if cfg.max_train is not None:
            text.source, text.target = text.source[: cfg.max_train], text.target[: cfg.max_train]
        log.warning("WMT'14 En-De trains on %s: %d pairs of newstest 2009-2012, a small stand-in, "
                    "not the WMT'14 training data", STAND_IN, len(text.source))  # fmt: skip
        return text, {"stand_in": STAND_IN, "files": text.files}
    if cfg.train_source is not None:
        paths = user_path(data_dir, cfg.train_source), user_path(data_dir, cfg.train_target)
        if None in paths:
            raise DataError("tasks.train_source/train_target: a relative path is under data_dir, "
                            "which is null; give absolute paths or set data_dir")  # fmt: skip
        require_files(paths, "WMT'14 En-De train (tasks.train_source/train_target)",
                      "fix the paths (absolute, or relative to data_dir)")  # fmt: skip
        return read_local(paths, cfg.max_train)
    if directory is not None:
        raise DataError(no_train_message(cfg, "no training corpus in the local data"))
    if not hub_reachable():
        raise DataError(no_train_message(cfg, f"data_dir is null, so it would come from the "
                                              f"hub ({WMT14_HUB} de-en), which cannot be reached "
                                              "from here"))  # fmt: skip
    return hub_pairs(WMT14_HUB, "de-en", "train", languages, what="WMT'14 En-De train",
                     local="the training files", revision=cfg.hub_revision,
                     limit=cfg.max_train)  # fmt: skip


def load_wmt14_en_de(cfg: Wmt14EnDeConfig, data_dir: str | None) -> list[Task]:
    languages = ("en", "de")
    directory = _local_root(data_dir, cfg.path, "WMT'14 En-De")
    data, fingerprints = {}, {}
    data["train"], fingerprints["train"] = _wmt14_train(cfg, data_dir, directory)
    if directory is not None:
        how = (f"put newstest2013 and newstest2014 .en/.de there (plain text), "
               f"or set data_dir=null to load {WMT14_HUB} de-en from the hub")  # fmt: skip
        files = local_pairs(directory, WMT14_EVAL, languages, "WMT'14 En-De", how)
        for split, paths in files.items():
            data[split], fingerprints[split] = read_local(paths, cfg.max_eval)
    else:
        local = f"{cfg.path}/newstest201{{3,4}}.{{en,de}}"
        for split in ("dev", "test"):
            data[split], fingerprints[split] = hub_pairs(
                WMT14_HUB, "de-en", split, languages, what=f"WMT'14 En-De {split}", local=local,
                revision=cfg.hub_revision, limit=cfg.max_eval)  # fmt: skip
    return [mt_task("wmt14_en_de", data, fingerprints, cfg, primary=True)]


# --- En-De + En-Fr -----------------------------------------------------------------------------
def load_wmt_multilingual(cfg: WmtMultilingualConfig, data_dir: str | None) -> list[Task]:
    plan: dict[str, dict[str, tuple | None]] = {}
    for pair in cfg.pairs:  # resolve every file before reading any, so a missing one fails at once
        files: PairFiles = getattr(cfg, pair)
        plan[pair] = {}
        for split in SPLITS:
            keys = (f"{split}_source", f"{split}_target")
            names = [getattr(files, k) for k in keys]
            paths = None if names[0] is None else tuple(user_path(data_dir, n) for n in names)
            if paths is not None and None in paths:
                paths = None  # relative paths with data_dir=null: the hub
            if paths is not None:
                what = f"WMT'14 {pair} {split} (tasks.{pair}.{keys[0]}/{keys[1]})"
                require_files(paths, what, "fix the paths (absolute, or relative to data_dir)")
            plan[pair][split] = paths
    # the splits without local files, by their config keys: from the hub, if it can be used
    hub = [f"tasks.{pair}.{split}_source/{split}_target" for pair, splits in plan.items()
           for split, paths in splits.items() if paths is None]  # fmt: skip
    if hub and data_dir is not None:
        raise DataError(f"WMT'14 En-De/En-Fr: no local files for {len(hub)} split(s); set "
                        f"{', '.join(hub)} (absolute or under data_dir), or data_dir=null to "
                        f"load them from the hub ({WMT14_HUB})")  # fmt: skip
    if hub and not hub_reachable():
        raise DataError(f"WMT'14 En-De/En-Fr: data_dir is null, so {len(hub)} split(s) would come "
                        f"from the hub ({WMT14_HUB}), which cannot be reached from here; set "
                        f"data_dir and the files {', '.join(hub)}")  # fmt: skip
    tasks = []
    for pair, splits in plan.items():
        target, hub_config = PAIRS[pair]
        data, fingerprints = {}, {}
        for split, paths in splits.items():
            limit = limit_of(split, cfg.max_train, cfg.max_eval)
            if paths is not None:
                data[split], fingerprints[split] = read_local(paths, limit)
                continue
            data[split], fingerprints[split] = hub_pairs(
                WMT14_HUB, hub_config, split, ("en", target), what=f"WMT'14 {pair} {split}",
                local="the files", revision=cfg.hub_revision, limit=limit)  # fmt: skip
        tasks.append(mt_task(pair, data, fingerprints, cfg, primary=pair == cfg.primary))
    return tasks
