"""GLUE readers and suites: handmade TSV/JSON fixtures (BOM, stray quotes, malformed rows,
labels, MNLI's "-" rows), fixed dev halves and train samples, the offline QNLI message, hub
conversion without network, the yaml options, and the real files' counts in ../shared/data."""

import json
import lzma
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from hydra import compose, initialize_config_dir

from mtlrun.config import register_configs, validate
from mtlrun.errors import ConfigError, DataError
from mtlrun.paths import config_dir
from mtlrun.tasks import load_tasks
from mtlrun.tasks.glue import (
    GlueTasksConfig,
    fixed_split,
    load_glue,
    read_glue_tsv,
    read_mnli,
    split_from_dataset,
)
from mtlrun.tasks.spec import Kind, Metric

register_configs()


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def write_xz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def mnli_record(s1, s2, label):
    return {"sentence1": s1, "sentence2": s2, "gold_label": label, "genre": "fiction"}


@pytest.fixture
def glue_dir(tmp_path):
    """A miniature GLUE folder: SST-2 with 20 train / 9 dev rows, RTE, MRPC (BOM), MNLI."""
    root = tmp_path / "glue"
    sst = "".join(f"sentence number {i} .\t{i % 2}\n" for i in range(20))
    write(root / "SST-2/train.tsv", "sentence\tlabel\n" + sst)
    write(root / "SST-2/dev.tsv", "sentence\tlabel\n" + sst[: sst.index("sentence number 9 ")])
    rte = "".join(f"{i}\tpremise {i} .\thypothesis {i} .\t"
                  f"{'entailment' if i % 3 else 'not_entailment'}\n" for i in range(7))  # fmt: skip
    write(root / "RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n" + rte)
    write(root / "RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n" + rte)
    mrpc = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said .\tHe said it .\n"
    write(root / "MRPC/train.tsv", mrpc + "0\t3\t4\tA b .\tC d .\n", bom=True)
    write(root / "MRPC/dev.tsv", mrpc, bom=True)
    records = [mnli_record(f"p{i}", f"h{i}", ["entailment", "neutral", "-"][i % 3])
               for i in range(9)]  # fmt: skip
    write_xz(root / "MNLI/mnli_train_10k_split.json.xz", json.dumps(records, indent=4))
    write_xz(
        root / "MNLI/mnli_dev_matched.jsonl.xz", "".join(json.dumps(r) + "\n" for r in records)
    )
    return root


# --- readers ---------------------------------------------------------------------------------
def test_bom_is_stripped_and_columns_are_chosen_by_header(glue_dir):
    split = read_glue_tsv(glue_dir / "MRPC/train.tsv", "mrpc")
    assert split.tokens == [["He", "said", "."], ["A", "b", "."]]
    assert split.pair == [["He", "said", "it", "."], ["C", "d", "."]]
    assert split.labels == [1, 0]  # Quality 1 = equivalent (label 1)


def test_stray_quote_is_text_not_a_field_quote(tmp_path):
    rows = '0\tWhat is "x?\tIt is "y" .\tentailment\n1\tWho?\tMe .\tnot_entailment\n'
    path = write(tmp_path / "dev.tsv", "index\tquestion\tsentence\tlabel\n" + rows)
    split = read_glue_tsv(path, "qnli")
    assert split.tokens[0] == ["What", "is", '"', "x", "?"]
    assert split.pair[0] == ["It", "is", '"', "y", '"', "."]
    assert split.labels == [0, 1] and len(split) == 2


def test_wrong_field_count_names_file_and_line(tmp_path):
    path = write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n")
    with pytest.raises(DataError, match=r"train.tsv:3: expected 2 TAB-separated fields, got 3"):
        read_glue_tsv(path, "sst2")


def test_unknown_label_names_file_and_line(tmp_path):
    path = write(tmp_path / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(DataError, match=r"dev.tsv:2: unknown label 'maybe'"):
        read_glue_tsv(path, "rte")


def test_missing_column_is_an_error(tmp_path):
    path = write(tmp_path / "dev.tsv", "text\tlabel\na\t1\n")
    with pytest.raises(DataError, match=r"dev.tsv:1: .*lacks the column\(s\) \['sentence'\]"):
        read_glue_tsv(path, "sst2")


def test_labels_map_to_the_hub_order(glue_dir):
    assert read_glue_tsv(glue_dir / "SST-2/train.tsv", "sst2").labels[:4] == [0, 1, 0, 1]
    rte = read_glue_tsv(glue_dir / "RTE/train.tsv", "rte")
    assert rte.labels[:4] == [1, 0, 0, 1]  # not_entailment = 1, entailment = 0


def test_mnli_drops_no_majority_rows_in_both_formats(glue_dir):
    for name in ("mnli_train_10k_split.json.xz", "mnli_dev_matched.jsonl.xz"):
        split = read_mnli(glue_dir / "MNLI" / name)
        assert len(split) == 6 and split.labels == [0, 1] * 3
        assert split.tokens[:2] == [["p0"], ["p1"]] and split.pair[1] == ["h1"]


def test_bad_json_line_names_file_and_line(tmp_path):
    good = json.dumps(mnli_record("a", "b", "neutral"))
    path = write_xz(tmp_path / "dev.jsonl.xz", f"{good}\n{good[:-3]}\n")
    with pytest.raises(DataError, match=r"dev.jsonl.xz:2: not valid JSON"):
        read_mnli(path)
    path = write_xz(tmp_path / "dev2.jsonl.xz", json.dumps(mnli_record("a", "b", "maybe")))
    with pytest.raises(DataError, match=r"dev2.jsonl.xz:1: unknown label 'maybe'"):
        read_mnli(path)


# --- fixed splits and the suite -------------------------------------------------------------------
def test_fixed_split_is_disjoint_covering_and_seeded():
    a, b = fixed_split(277, 138, seed=0)
    assert (len(a), len(b)) == (138, 139) and sorted(a + b) == list(range(277))
    assert (a, b) == fixed_split(277, 138, seed=0) and a != fixed_split(277, 138, seed=1)[0]
    a, b = fixed_split(9, 4, seed=0, groups=[i // 3 for i in range(9)])  # groups of 3 together
    assert len(a) == 6 and {i // 3 for i in a}.isdisjoint({i // 3 for i in b})


def test_dev_halves_are_disjoint_and_cover_the_dev_set(glue_dir):
    cfg = GlueTasksConfig(tasks=["sst2", "rte"])
    for task in load_glue(cfg, str(glue_dir.parent)):
        full = read_glue_tsv(glue_dir / {"sst2": "SST-2", "rte": "RTE"}[task.name] / "dev.tsv",
                             task.name)  # fmt: skip
        assert len(task.dev) == len(full) // 2 and len(task.test) == len(full) - len(full) // 2
        halves = [tuple(t) for t in task.dev.tokens + task.test.tokens]
        assert sorted(halves) == sorted(tuple(t) for t in full.tokens)
    whole = load_glue(GlueTasksConfig(tasks=["rte"], dev_as_test=False), str(glue_dir.parent))[0]
    assert whole.dev is whole.test and len(whole.dev) == 7


def test_downsampling_is_deterministic_and_of_the_right_size(glue_dir):
    cfg = GlueTasksConfig(tasks=["sst2"], train_size={"sst2": 8})
    first, again = (load_glue(cfg, str(glue_dir.parent))[0] for _ in range(2))
    assert len(first.train) == 8 and first.train.tokens == again.train.tokens
    other = load_glue(GlueTasksConfig(tasks=["sst2"], train_size={"sst2": 8}, split_seed=1),
                      str(glue_dir.parent))[0]  # fmt: skip
    assert other.train.tokens != first.train.tokens
    assert first.fingerprint != other.fingerprint
    with pytest.raises(DataError, match="train_size.sst2=50, but sst2 train has 20"):
        load_glue(GlueTasksConfig(tasks=["sst2"], train_size={"sst2": 50}), str(glue_dir.parent))


def test_metrics_kinds_and_primary(glue_dir, caplog):
    cfg = GlueTasksConfig(tasks=["rte", "mnli", "sst2"], primary="rte",
                          extra_metrics=["binary_f1"])  # fmt: skip
    rte, mnli, sst2 = load_glue(cfg, str(glue_dir.parent))
    assert (rte.primary, mnli.primary, sst2.primary) == (True, False, False)
    assert rte.extra_metrics == [Metric.BINARY_F1] and mnli.extra_metrics == []
    assert (sst2.kind, rte.kind, mnli.kind) == (
        Kind.CLASSIFICATION, Kind.PAIR_CLASSIFICATION, Kind.PAIR_CLASSIFICATION)  # fmt: skip
    assert mnli.label_names == ["entailment", "neutral", "contradiction"]
    assert "10,000-example sample" in caplog.text
    assert "mnli_train_10k_split.json.xz" in str(mnli.fingerprint)


def test_qnli_without_train_fails_at_once_saying_what_to_do(glue_dir):
    write(glue_dir / "QNLI/dev.tsv", "index\tquestion\tsentence\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(DataError) as e:
        load_glue(GlueTasksConfig(tasks=["rte", "qnli"], primary="rte"), str(glue_dir.parent))
    message = str(e.value)
    assert "QNLI/train.tsv is missing" in message
    assert "data_dir=null" in message and "nyu-mll/glue config qnli" in message
    assert "put GLUE's QNLI/train.tsv there" in message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tasks": ["sst2", "cola"]}, "tasks.tasks"),
        ({"tasks": []}, "tasks.tasks"),
        ({"tasks": ["rte"], "primary": "mrpc"}, "tasks.primary"),
        ({"tasks": ["rte"], "train_size": {"sst2": 5}}, "tasks.train_size"),
        ({"tasks": ["rte"], "train_size": {"rte": 0}}, "must be > 0"),
        ({"tasks": ["rte", "mnli"], "metric": "roc_auc"}, "mnli has 3 labels"),
        ({"metric": "f1"}, "tasks.metric"),
        ({"extra_metrics": ["bleu"]}, "tasks.extra_metrics"),
        ({"mnli_train": "full"}, "tasks.mnli_train"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        GlueTasksConfig(**kwargs)


# --- hub ---------------------------------------------------------------------------------------
def test_hub_datasets_convert_and_hidden_test_labels_are_dropped():
    from datasets import ClassLabel, Dataset, Features, Value

    pair = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                     "label": ClassLabel(names=["entailment", "not_entailment"]),
                     "idx": Value("int32")})  # fmt: skip
    ds = Dataset.from_dict({"sentence1": ["A cat .", "B", "C"], "sentence2": ["x", "y", "z"],
                            "label": [1, 0, -1], "idx": [0, 1, 2]}, features=pair)  # fmt: skip
    split = split_from_dataset(ds, ["entailment", "not_entailment"])
    assert split.tokens == [["A", "cat", "."], ["B"]] and split.pair == [["x"], ["y"]]
    assert split.labels == [1, 0]
    single = Features({"sentence": Value("string"),
                       "label": ClassLabel(names=["negative", "positive"])})  # fmt: skip
    ds = Dataset.from_dict({"sentence": ["good film", "bad"], "label": [1, 0]}, features=single)
    split = split_from_dataset(ds, ["negative", "positive"])
    assert split.pair is None and split.labels == [1, 0]
    qnli = Dataset.from_dict({"question": ["Who ?"], "sentence": ["Me ."], "label": [0]})
    assert split_from_dataset(qnli, ["entailment", "not_entailment"]).pair == [["Me", "."]]
    with pytest.raises(DataError, match="differ from the expected"):
        split_from_dataset(ds, ["positive", "negative"])


def test_no_data_dir_and_no_network_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(DataError, match=r"nyu-mll/glue \(rte\).*cannot be reached"):
        load_glue(GlueTasksConfig(tasks=["rte"]), None)
    assert time.monotonic() - start < 5


# --- yaml options --------------------------------------------------------------------------------
def composed(*overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return validate(compose("config", overrides=list(overrides)))


@pytest.mark.parametrize(
    "option, tasks, primary, metric, extra",
    [
        ("glue_fang", ["sst2", "rte", "mrpc"], None, "roc_auc", ["accuracy", "binary_f1"]),
        ("glue_rte_qnli", ["rte", "qnli"], "rte", "accuracy", ["binary_f1"]),
        ("glue_mrpc_qnli", ["mrpc", "qnli"], "mrpc", "accuracy", ["binary_f1"]),
        ("glue_rte_mnli", ["rte", "mnli"], "rte", "accuracy", ["binary_f1"]),
        ("glue_mrpc_mnli", ["mrpc", "mnli"], "mrpc", "accuracy", ["binary_f1"]),
    ],
)
def test_yaml_options_compose(option, tasks, primary, metric, extra):
    cfg = composed(f"tasks={option}").tasks
    assert isinstance(cfg, GlueTasksConfig)
    assert (cfg.tasks, cfg.primary, cfg.metric, cfg.extra_metrics) == (
        tasks,
        primary,
        metric,
        extra,
    )
    assert cfg.train_size == ({"sst2": 8000} if option == "glue_fang" else {})
    assert cfg.dev_as_test and cfg.split_seed == 0


def test_load_tasks_dispatches_to_glue(glue_dir):
    tasks = load_tasks(GlueTasksConfig(tasks=["rte"]), seed=3, data_dir=str(glue_dir.parent))
    assert [t.name for t in tasks] == ["rte"]


# --- real data ---------------------------------------------------------------------------------
GLUE = SHARED_DATA / "glue"


@pytest.mark.parametrize(
    "folder, task, split, counts",
    [
        ("SST-2", "sst2", "train", {0: 29_780, 1: 37_569}),
        ("SST-2", "sst2", "dev", {0: 428, 1: 444}),
        ("MRPC", "mrpc", "train", {1: 2_474, 0: 1_194}),
        ("MRPC", "mrpc", "dev", {1: 279, 0: 129}),
        ("RTE", "rte", "train", {0: 1_249, 1: 1_241}),
        ("RTE", "rte", "dev", {0: 146, 1: 131}),
        ("QNLI", "qnli", "dev", {0: 2_702, 1: 2_761}),
    ],
)
@pytest.mark.realdata
@pytest.mark.skipif(not GLUE.is_dir(), reason=f"real data not found at {GLUE}")
def test_real_glue_counts(folder, task, split, counts):
    data = read_glue_tsv(GLUE / folder / f"{split}.tsv", task)
    assert Counter(data.labels) == counts
    assert all(data.tokens) and (data.pair is None) == (task == "sst2")


@pytest.mark.parametrize(
    "name, counts",
    [
        ("mnli_dev_matched.jsonl.xz", {0: 3_479, 1: 3_123, 2: 3_213}),
        ("mnli_dev_mismatched.jsonl.xz", {0: 3_463, 1: 3_129, 2: 3_240}),
        ("mnli_train_10k_split.json.xz", {0: 3_270, 1: 3_360, 2: 3_370}),
        ("mnli_train_10000_split.jsonl.xz", {0: 3_288, 1: 3_343, 2: 3_369}),
    ],
)
@pytest.mark.realdata
@pytest.mark.skipif(not GLUE.is_dir(), reason=f"real data not found at {GLUE}")
def test_real_mnli_counts(name, counts):
    data = read_mnli(GLUE / "MNLI" / name)
    assert Counter(data.labels) == counts  # 9,815 / 9,832 / 10,000 / 10,000


@pytest.mark.realdata
@pytest.mark.skipif(not GLUE.is_dir(), reason=f"real data not found at {GLUE}")
def test_real_glue_fang_suite():
    cfg = composed("tasks=glue_fang").tasks
    sst2, rte, mrpc = load_glue(cfg, str(SHARED_DATA))
    assert (len(sst2.train), len(sst2.dev), len(sst2.test)) == (8_000, 436, 436)
    assert (len(mrpc.train), len(mrpc.dev), len(mrpc.test)) == (3_668, 204, 204)
    assert len(rte.train) == 2_490 and {len(rte.dev), len(rte.test)} == {138, 139}
    assert sst2.metric == Metric.ROC_AUC and sst2.extra_metrics == [Metric.ACCURACY,
                                                                     Metric.BINARY_F1]  # fmt: skip
    again = load_glue(cfg, str(SHARED_DATA))[0]
    assert again.train.tokens == sst2.train.tokens and again.dev.tokens == sst2.dev.tokens


@pytest.mark.realdata
@pytest.mark.skipif(not GLUE.is_dir(), reason=f"real data not found at {GLUE}")
def test_real_mnli_suite_offline():
    rte, mnli = load_glue(composed("tasks=glue_rte_mnli").tasks, str(SHARED_DATA))
    assert len(mnli.train) == 10_000 and len(mnli.dev) + len(mnli.test) == 9_815
    with pytest.raises(DataError, match="QNLI/train.tsv is missing"):
        load_glue(composed("tasks=glue_rte_qnli").tasks, str(SHARED_DATA))
