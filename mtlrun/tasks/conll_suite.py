"""`tasks=conll`: POS tagging, chunking and NER trained together (the QLS paper §5.2, Table 5).

- pos: UD English-EWT (CoNLL-U; PTB XPOS tags by default, as the WSJ data of the paper) or
  NLTK's 10 % Penn Treebank sample; token accuracy.
- chunking: CoNLL-2000 (`train.txt`, `test.txt`; no dev split, see `missing_dev.py`); span F1.
- ner: CoNLL-2003 (`eng.train`, `eng.testa` = dev, `eng.testb` = test; IOB1 in the files,
  converted to IOB2 before scoring); span F1.

Local files under data_dir, or the hub (`data_dir=null`). Tag sets are the tags seen in
training, sorted, with any tag that appears only in dev/test appended (never dropped).
"""

from __future__ import annotations

from pathlib import Path

from mtlrun.errors import DataError
from mtlrun.tasks.conll import iob1_to_iob2, read_columns, read_conllu
from mtlrun.tasks.sources import load_hub_split, local_dir
from mtlrun.tasks.spec import Kind, Metric, Split, Task
from mtlrun.tasks.text_files import file_digests, find_file, is_file
from mtlrun.tasks.treebank import ZIP_NAME, read_ptb_sample

Tagged = list[tuple[list[str], list[str]]]  # (words, tags) per sentence
SPLITS = ("train", "dev", "test")


def _files(directory: Path, names: dict[str, str], what: str, how: str) -> dict[str, Path]:
    paths = {s: directory / n for s, n in names.items()}
    missing = [str(p) for p in paths.values() if not is_file(p)]
    if missing:
        raise DataError(f"{what}: missing {', '.join(missing)}; {how}")
    return paths


def _ner_local(d: Path) -> tuple[dict[str, Tagged], list[Path]]:
    how = (
        "put eng.train, eng.testa and eng.testb there (the CoNLL-2003 English release), "
        "or set data_dir=null to use the hub"
    )
    paths = _files(d, {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"},
                   "CoNLL-2003 NER", how)  # fmt: skip
    data = {s: [([r[0] for r in sent], iob1_to_iob2([r[3] for r in sent]))
                for sent in read_columns(p, 4)] for s, p in paths.items()}  # fmt: skip
    return data, list(paths.values())


def _chunking_local(d: Path) -> tuple[dict[str, Tagged], list[Path]]:
    paths = _files(d, {"train": "train.txt", "test": "test.txt"}, "CoNLL-2000 chunking",
                   "put train.txt and test.txt there (nltk_data's conll2000.zip), "
                   "or set data_dir=null to use the hub")  # fmt: skip
    out = {s: [([r[0] for r in sent], [r[2] for r in sent]) for sent in read_columns(p, 3)]
           for s, p in paths.items()}  # fmt: skip
    return {**out, "dev": []}, list(paths.values())  # no dev split in the release


def _pos_local(d: Path, tagset: str) -> tuple[dict[str, Tagged], list[Path]]:
    data, paths = {}, []
    for s in SPLITS:
        path = find_file(d, f"en_ewt-ud-{s}.conllu")
        if path is None:
            raise DataError(f"UD English-EWT: missing {d}/en_ewt-ud-{s}.conllu(.gz); put the "
                            "UD_English-EWT release files there, or set data_dir=null to use "
                            "the hub")  # fmt: skip
        data[s] = read_conllu(path, tagset)
        paths.append(path)
    return data, paths


def _from_hub(
    hub_id: str, config: str | None, columns: tuple[str, str], what: str, local: str,
    splits=("train", "validation", "test"), iob1: bool = False,
) -> dict[str, Tagged]:  # fmt: skip
    out = {}
    for ours, theirs in zip(SPLITS, splits, strict=True):
        if theirs is None:
            out[ours] = []
            continue
        ds = load_hub_split(hub_id, config, theirs, what=f"{what} {theirs}", local=local,
                            revision="refs/convert/parquet")  # fmt: skip
        out[ours] = hub_tagged(ds, *columns, iob1=iob1)
    return out


def hub_tagged(ds, words: str, tags: str, iob1: bool = False) -> Tagged:
    """(words, tag names) per row of a hub dataset; ClassLabel tag ids become their names."""
    feature = ds.features[tags]
    names = getattr(getattr(feature, "feature", None), "names", None)
    rows = []
    for row in ds:
        t = [names[i] for i in row[tags]] if names else list(row[tags])
        rows.append((list(row[words]), iob1_to_iob2(t) if iob1 else t))
    return rows


def _task(name: str, data: dict[str, Tagged], metric: Metric, fingerprint: dict,
          max_train: int | None) -> Task:  # fmt: skip
    if max_train is not None:
        data = {**data, "train": data["train"][:max_train]}
    train_tags = sorted({t for _, tags in data["train"] for t in tags})
    unseen = sorted({t for s in ("dev", "test") for _, tags in data[s] for t in tags} -
                    set(train_tags))  # fmt: skip
    names = train_tags + unseen
    index = {t: i for i, t in enumerate(names)}
    splits = [Split([w for w, _ in data[s]], [[index[t] for t in tags] for _, tags in data[s]])
              for s in SPLITS]  # fmt: skip
    return Task(name, Kind.TAGGING, names, metric, *splits, fingerprint=fingerprint)


def load_conll(cfg, data_dir: str | None) -> list[Task]:
    tasks = []
    for name in cfg.tasks:
        if name == "ner":
            d = local_dir(data_dir, cfg.ner_path)
            data, paths = _ner_local(d) if d else (_from_hub(
                "eriktks/conll2003", None, ("tokens", "ner_tags"), "CoNLL-2003 NER",
                "conll2003/eng.{train,testa,testb}"), None)  # fmt: skip
            metric = Metric.SPAN_F1
        elif name == "chunking":
            d = local_dir(data_dir, cfg.chunking_path)
            data, paths = _chunking_local(d) if d else (_from_hub(
                "eriktks/conll2000", None, ("tokens", "chunk_tags"), "CoNLL-2000 chunking",
                "conll2000/{train,test}.txt", splits=("train", None, "test")), None)  # fmt: skip
            metric = Metric.SPAN_F1
        elif cfg.pos_source == "ptb_sample":
            d = local_dir(data_dir, cfg.ptb_path)
            if d is None:
                raise DataError("tasks.pos_source=ptb_sample has no hub copy; set data_dir "
                                f"to a directory holding {cfg.ptb_path}/{ZIP_NAME}")  # fmt: skip
            data, paths, metric = read_ptb_sample(d), [d / ZIP_NAME], Metric.TOKEN_ACCURACY
        else:
            d = local_dir(data_dir, cfg.pos_path)
            data, paths = _pos_local(d, cfg.pos_tagset) if d else (_from_hub(
                "universal-dependencies/universal_dependencies", "en_ewt",
                ("tokens", cfg.pos_tagset), "UD English-EWT",
                "ud_english_ewt/en_ewt-ud-*"), None)  # fmt: skip
            metric = Metric.TOKEN_ACCURACY
        # the digests of exactly the files read (not of everything in their directory)
        files = {"hub": True} if paths is None else file_digests(paths)
        fingerprint = {"files": files, "pos": [cfg.pos_source, cfg.pos_tagset],
                       "max_train": cfg.max_train}  # fmt: skip
        tasks.append(_task(name, data, metric, fingerprint, cfg.max_train))
    return tasks
