"""XNLI readers and suite: XTREME, myXNLI and XNLI-1.0 fixtures, th/hi test labels taken by row
from sw, the offline translate-train error and dev_split, hub conversion without network, the
yaml options, and the real files' counts in ../shared/data."""

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
from mtlrun.tasks.glue import split_from_dataset
from mtlrun.tasks.xnli import (
    XnliTasksConfig,
    load_xnli,
    local_dev,
    local_test,
    read_xnli10,
    read_xtreme,
)

register_configs()

LABELS = ["contradiction", "entailment", "neutral"] * 2  # two premises, three hypotheses each


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def rows(lang: str, labels=LABELS, crlf: bool = False) -> str:
    """XTREME rows: premise TAB hypothesis [TAB label]; a None label leaves the column out."""
    lines = [f"{lang} premise {i // 3} .\t{lang} hypothesis {i} ." + ("" if y is None else f"\t{y}")
             for i, y in enumerate(labels)]  # fmt: skip
    end = "\r\n" if crlf else "\n"
    return "".join(line + end for line in lines)


@pytest.fixture
def data(tmp_path):
    """XTREME dev/test for en, th and sw, myXNLI labelled sw and en tests, a MNLI sample."""
    x = tmp_path / "xnli"
    for lang in ("en", "th", "sw"):
        write(x / f"dev-{lang}.tsv", rows(lang, crlf=True))
        write(x / f"test-{lang}.tsv", rows(lang, [None] * 6, crlf=True))
    sw = "".join(f"fiction\t{label}\tsw p{i // 3}\tsw h{i}\n" for i, label in enumerate(LABELS))
    write(x / "sw.genre.test.tsv", "genre\tlabel\tsentence1_sw\tsentence2_sw\n" + sw)
    my = "".join(f"fiction\t{label}\ten p{i // 3}\ten h{i}\tmy p\tmy h\n"
                 for i, label in enumerate(LABELS))  # fmt: skip
    header = "genre\tlabel\tsentence1_en\tsentence2_en\tsentence1_my\tsentence2_my\n"
    write(x / "my.genre.test.tsv", header + my)
    records = [{"sentence1": f"p{i}", "sentence2": f"h{i}", "gold_label": "neutral"}
               for i in range(5)]  # fmt: skip
    (tmp_path / "glue/MNLI").mkdir(parents=True)
    with lzma.open(tmp_path / "glue/MNLI/mnli_train_10k_split.json.xz", "wt") as f:
        json.dump(records, f)
    return tmp_path


# --- readers ---------------------------------------------------------------------------------
def test_xtreme_dev_and_test(data):
    premises, hypotheses, labels = read_xtreme(data / "xnli/dev-th.tsv")
    assert premises[0] == ["th", "premise", "0", "."] and hypotheses[4][-2] == "4"
    assert labels == [2, 0, 1] * 2  # the facebook/xnli order: entailment, neutral, contradiction
    assert read_xtreme(data / "xnli/test-th.tsv")[2] is None


def test_th_test_labels_come_from_the_sw_rows(data):
    test, files = local_test(data / "xnli", "th")
    assert test.labels == [2, 0, 1] * 2 and test.tokens[0][0] == "th"
    assert [f.name for f in files] == ["test-th.tsv", "sw.genre.test.tsv"]
    write(data / "xnli/test-th.tsv", rows("th", [None] * 5))
    with pytest.raises(DataError, match=r"test-th.tsv: 5 rows, but .*sw.genre.test.tsv has 6"):
        local_test(data / "xnli", "th")


def test_labelled_myxnli_tests_for_sw_and_en(data):
    sw, _ = local_test(data / "xnli", "sw")
    en, files = local_test(data / "xnli", "en")
    assert sw.labels == en.labels == [2, 0, 1] * 2
    assert en.tokens[0] == ["en", "p0"] and en.pair[5] == ["en", "h5"]
    assert files[0].name == "my.genre.test.tsv"


XNLI10 = (
    "language\tgold_label\tsentence1_binary_parse\tsentence1\tsentence2\tpairID\n"
    'en\tneutral\t( x )\tThe "cat .\tA cat .\t1\n'
    "th\tneutral\t( x )\tth cat\tth a cat\t1\n"
    "en\tcontradiction\t( x )\tA dog .\tNo dog .\t2\n"
)


def test_xnli10_rows_are_filtered_by_language(tmp_path):
    path = write(tmp_path / "xnli.dev.tsv", XNLI10)
    en = read_xnli10(path, "en")
    assert en.labels == [1, 2] and en.tokens[0] == ["The", '"', "cat", "."]
    assert read_xnli10(path, "th").pair == [["th", "a", "cat"]]
    with pytest.raises(DataError, match="no rows with language 'sw'"):
        read_xnli10(path, "sw")


def test_xnli10_files_are_preferred_to_xtreme(data):
    write(data / "xnli/XNLI-1.0/xnli.dev.tsv", XNLI10)
    write(data / "xnli/xnli.test.tsv", XNLI10)
    dev, dev_files = local_dev(data / "xnli", "th")
    test, test_files = local_test(data / "xnli", "en")
    assert len(dev) == 1 and dev_files[0].name == "xnli.dev.tsv"
    assert len(test) == 2 and test_files[0].name == "xnli.test.tsv"


# --- the suite ---------------------------------------------------------------------------------
def config(**kwargs) -> XnliTasksConfig:
    return XnliTasksConfig(**{"language": "th", **kwargs})


def test_offline_translate_train_is_an_error_that_offers_dev_split(data):
    with pytest.raises(DataError) as e:
        load_xnli(config(), str(data))
    message = str(e.value)
    assert "translate-train" in message and "tasks.target_train=dev_split" in message
    assert "data_dir=null" in message


def test_dev_split_trains_on_a_fixed_share_of_dev(data, caplog):
    en, th = load_xnli(config(target_train="dev_split"), str(data))
    assert (en.name, en.primary, th.name, th.primary) == ("en", False, "th", True)
    assert len(en.train) == 5 and len(en.dev) == 6 and len(en.test) == 6
    assert len(th.train) == 3 and len(th.dev) == 3 and len(th.test) == 6
    # one premise's three hypotheses stay together, on one side
    assert {p[2] for p in th.train.tokens}.isdisjoint(p[2] for p in th.dev.tokens)
    assert "not comparable with Sundararaman et al." in caplog.text
    again = load_xnli(config(target_train="dev_split"), str(data))[1]
    assert again.train.pair == th.train.pair
    assert th.fingerprint["target_train"] == "dev_split"


def test_translate_train_file_is_read_when_present(data):
    write(data / "xnli/XNLI-MT-1.0/multinli/multinli.train.th.tsv",
          "premise\thypo\tlabel\na\tb\tcontradictory\nc\td\tentailment\n")  # fmt: skip
    th = load_xnli(config(), str(data))[1]
    assert th.train.labels == [2, 0] and len(th.dev) == 6


def test_missing_dev_says_what_to_do(data):
    (data / "xnli/dev-th.tsv").unlink()
    with pytest.raises(DataError, match=r"neither xnli.dev.tsv .* nor dev-th.tsv"):
        load_xnli(config(target_train="dev_split"), str(data))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"language": "en"}, "other than en"),
        ({"language": "xx"}, "tasks.language"),
        ({"target_train": "zero_shot"}, "tasks.target_train"),
        ({"dev_split_fraction": 1.0}, "tasks.dev_split_fraction"),
        ({"mnli_train": "all"}, "tasks.mnli_train"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        config(**kwargs)


def test_hub_xnli_converts_without_network():
    from datasets import ClassLabel, Dataset, Features, Value

    nli = ClassLabel(names=["entailment", "neutral", "contradiction"])
    features = Features({"premise": Value("string"), "hypothesis": Value("string"), "label": nli})
    ds = Dataset.from_dict(
        {"premise": ["P ."], "hypothesis": ["H"], "label": [2]}, features=features
    )
    split = split_from_dataset(ds, ["entailment", "neutral", "contradiction"])
    assert (split.tokens, split.pair, split.labels) == ([["P", "."]], [["H"]], [2])


def test_no_data_dir_and_no_network_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(DataError, match=r"facebook/xnli \(th\).*cannot be reached"):
        load_xnli(config(), None)
    assert time.monotonic() - start < 5


def test_load_tasks_dispatches_to_xnli(data):
    tasks = load_tasks(config(target_train="dev_split"), seed=0, data_dir=str(data))
    assert [t.name for t in tasks] == ["en", "th"]


@pytest.mark.parametrize("lang", ["ur", "sw", "th", "hi"])
def test_yaml_options_compose(lang):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = validate(compose("config", overrides=[f"tasks=xnli_{lang}"])).tasks
    assert isinstance(cfg, XnliTasksConfig)
    assert (cfg.language, cfg.target_train, cfg.path) == (lang, "translate_train", "xnli")


# --- real data ---------------------------------------------------------------------------------
XNLI = SHARED_DATA / "xnli"
needs_data = pytest.mark.skipif(not XNLI.is_dir(), reason=f"real data not found at {XNLI}")


@pytest.mark.realdata
@needs_data
@pytest.mark.parametrize("lang", ["en", "sw", "ur", "th", "hi"])
def test_real_xnli_counts(lang):
    dev, _ = local_dev(XNLI, lang)
    test, _ = local_test(XNLI, lang)
    assert Counter(dev.labels) == {0: 830, 1: 830, 2: 830}
    assert Counter(test.labels) == {0: 1_670, 1: 1_670, 2: 1_670}
    assert all(dev.tokens) and all(test.pair)


@pytest.mark.realdata
@needs_data
@pytest.mark.parametrize("lang", ["th", "hi"])
def test_real_th_hi_premise_groups_line_up_with_sw(lang):
    """What the row-wise labels rest on: the same rows share a premise in every language."""

    def groups(path):
        premises = read_xtreme(path)[0]
        return [i > 0 and premises[i] == premises[i - 1] for i in range(len(premises))]

    assert groups(XNLI / f"test-{lang}.tsv") == groups(XNLI / "test-sw.tsv")


@pytest.mark.realdata
@needs_data
def test_real_xnli_suite_offline():
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = validate(compose("config", overrides=["tasks=xnli_hi"])).tasks
    with pytest.raises(DataError, match="target_train=dev_split"):
        load_xnli(cfg, str(SHARED_DATA))
    cfg.target_train = "dev_split"
    en, hi = load_xnli(cfg, str(SHARED_DATA))
    assert (len(en.train), len(en.dev), len(en.test)) == (10_000, 2_490, 5_010)
    assert (len(hi.train), len(hi.dev), len(hi.test)) == (1_245, 1_245, 5_010)


def test_words_keep_combining_marks_and_split_off_punctuation():
    from mtlrun.tasks.text_files import word_tokens

    assert word_tokens("हिंदी भाषा, ठीक है।") == ["हिंदी", "भाषा", ",", "ठीक", "है", "।"]
    assert word_tokens("ภาษาไทย ง่าย") == ["ภาษาไทย", "ง่าย"]  # tone mark inside the word
    assert word_tokens("اردو زبان، ٹھیک") == ["اردو", "زبان", "،", "ٹھیک"]
    assert word_tokens("a dull,tedious film.") == ["a", "dull", ",", "tedious", "film", "."]
