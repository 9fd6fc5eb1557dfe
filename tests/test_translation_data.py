"""Translation suites (multi30k, wmt14_en_de, wmt_multilingual) and the MT + syntax suite:
the parallel-text reader on small files (plain, compressed, WMT SGML, broken), the loaders on
fixture data_dirs and on in-memory hub datasets, the parse linearisations and their inverses,
and the real corpora when they are there (skipped otherwise)."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import logging
import lzma
from pathlib import Path

import pytest
from conftest import SHARED_DATA, compose_run

from mtlrun.config import SCHEMAS
from mtlrun.errors import ConfigError, DataError
from mtlrun.paths import config_dir
from mtlrun.tasks import load_tasks
from mtlrun.tasks import translation as translation_module
from mtlrun.tasks.mt_syntax import (
    ARC_STANDARD,
    RELATIVE_HEAD,
    MtSyntaxConfig,
    NonProjective,
    TaskSizes,
    arc_standard_decode,
    arc_standard_encode,
    delinearise,
    is_projective,
    linearise,
    read_conllu_trees,
    relative_head_decode,
    relative_head_encode,
)
from mtlrun.tasks.parallel_text import read_parallel, read_segments, unescape_xml
from mtlrun.tasks.spec import Kind, Metric
from mtlrun.tasks.translation import (
    Multi30kConfig,
    PairFiles,
    Wmt14EnDeConfig,
    WmtMultilingualConfig,
)

EN = ["Two dogs run .", "A man sleeps .", "  ", "Kids play ball ."]
DE = ["Zwei Hunde rennen .", "Ein Mann schläft .", "Leer", "Kinder spielen Ball ."]


def write(path: Path, lines: list[str], opener=open) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def sgml(lines: list[str], setid: str = "newstest2014") -> list[str]:
    segs = [f'<seg id="{i}">{text}</seg>' for i, text in enumerate(lines, start=1)]
    return [f'<srcset setid="{setid}" srclang="any">', '<doc sysid="ref" docid="d1">', "<p>",
            *segs, "</p>", "</doc>", "</srcset>"]  # fmt: skip


# --- the parallel-text reader ---------------------------------------------------------------------
def test_plain_pair_is_stripped_split_and_loses_pairs_with_an_empty_side(tmp_path, caplog):
    src = write(tmp_path / "a.en", [" Two dogs  run . ", *EN[1:]])
    tgt = write(tmp_path / "a.de", DE)
    with caplog.at_level(logging.WARNING):
        text = read_parallel(src, tgt)
    assert text.source == [["Two", "dogs", "run", "."], ["A", "man", "sleeps", "."],
                           ["Kids", "play", "ball", "."]]  # fmt: skip
    assert text.target[1] == ["Ein", "Mann", "schläft", "."]
    assert text.dropped == 1
    assert len([r for r in caplog.records if "empty side" in r.getMessage()]) == 1  # logged once
    split = text.split()
    assert split.tokens == text.source and split.labels == text.target
    assert set(text.files) == {str(src), str(tgt)} and all(
        len(d) == 64 for d in text.files.values()
    )


def test_limit_counts_kept_pairs(tmp_path):
    text = read_parallel(write(tmp_path / "a.en", EN), write(tmp_path / "a.de", DE), limit=2)
    assert [s[0] for s in text.source] == ["Two", "A"]
    text = read_parallel(tmp_path / "a.en", tmp_path / "a.de", limit=3)
    assert text.source[-1][0] == "Kids"  # the empty pair does not use up the limit


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".xz", lzma.open),
                                           (".bz2", bz2.open)])  # fmt: skip
def test_compressed_files(tmp_path, suffix, opener):
    src = write(tmp_path / f"a.en{suffix}", EN, opener)
    tgt = write(tmp_path / "a.de", DE)  # sides may differ in compression
    assert len(read_parallel(src, tgt)) == 3


def test_sgml_by_suffix_and_by_content_with_entities(tmp_path):
    escaped = "a &lt;b&gt; &quot;c&quot; &#39;d&apos; &#x4E2D;"
    src = write(tmp_path / "newstest-src.en.sgm", sgml(["Tom &amp; Jerry", escaped]))
    tgt = write(tmp_path / "newstest-ref.de", sgml(["Tom &amp; Jerry", "x"]))  # no .sgm suffix
    text = read_parallel(src, tgt)
    assert text.source == [["Tom", "&", "Jerry"], ["a", "<b>", '"c"', "'d'", "中"]]
    assert text.target == [["Tom", "&", "Jerry"], ["x"]]
    gz = write(tmp_path / "newstest-src.en.sgm.gz", sgml(["one", ""]), gzip.open)
    assert read_segments(gz) == ["one", ""]
    assert unescape_xml("&nbsp; & &amp;amp;") == "&nbsp; & &amp;"  # only XML entities, once


def test_sgml_segment_cut_across_lines_names_the_line(tmp_path):
    path = write(tmp_path / "x.sgm", ["<refset>", '<doc docid="1">', '<seg id="1">half', "</seg>"])
    with pytest.raises(DataError, match=r"x\.sgm:3: a <seg> without its </seg>"):
        read_segments(path)


def test_different_lengths_are_one_line_naming_both_files(tmp_path):
    src = write(tmp_path / "a.en", EN)
    tgt = write(tmp_path / "a.de", DE[:3])
    with pytest.raises(DataError) as e:
        read_parallel(src, tgt)
    message = str(e.value)
    assert "\n" not in message
    assert f"{src} has 4" in message and f"{tgt} has 3" in message


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_parallel(tmp_path / "nope.en", write(tmp_path / "a.de", DE))


# --- Multi30k / WMT'14 loaders on fixture files --------------------------------------------------
def multi30k_dir(root: Path, n: int = 5) -> Path:
    for stem in ("train", "val", "test_2016_flickr"):
        write(root / "multi30k_en_de" / f"{stem}.en.gz", [f"{stem} en {i}" for i in range(n)],
              gzip.open)  # fmt: skip
        write(root / "multi30k_en_de" / f"{stem}.de.gz", [f"{stem} de {i}" for i in range(n)],
              gzip.open)  # fmt: skip
    return root


def test_multi30k_local_task(tmp_path):
    (task,) = load_tasks(Multi30kConfig(max_train=3, max_eval=2), 0, str(multi30k_dir(tmp_path)))
    assert (task.name, task.kind, task.metric, task.label_names) == (
        "multi30k_en_de", Kind.SEQ2SEQ, Metric.BLEU, [])  # fmt: skip
    assert task.primary
    assert (len(task.train), len(task.dev), len(task.test)) == (3, 2, 2)
    assert task.train.tokens[0] == ["train", "en", "0"] and task.dev.labels[1] == ["val", "de", "1"]
    assert len(task.fingerprint["source"]["train"]["files"]) == 2
    assert task.fingerprint["max_train"] == 3


def test_multi30k_missing_files_listed_at_once(tmp_path):
    multi30k_dir(tmp_path)
    for name in ("val.de.gz", "test_2016_flickr.en.gz"):
        (tmp_path / "multi30k_en_de" / name).unlink()
    with pytest.raises(DataError, match=r"missing val\.de, test_2016_flickr\.en .*data_dir=null"):
        load_tasks(Multi30kConfig(), 0, str(tmp_path))


def wmt14_dir(root: Path) -> Path:
    d = root / "wmt14_en_de"
    for stem, n in (("newstest2013", 4), ("newstest2014", 3)):
        write(d / f"{stem}.en", [f"{stem} en {i}" for i in range(n)])
        write(d / f"{stem}.de", [f"{stem} de {i}" for i in range(n)])
    for year in range(2009, 2013):
        write(d / "extra_newstest_2009_2012" / f"newstest{year}.en", [f"{year} en"] * 2)
        write(d / "extra_newstest_2009_2012" / f"newstest{year}.de", [f"{year} de"] * 2)
    return root


def test_wmt14_offline_without_training_data_says_which_keys_to_set(tmp_path):
    with pytest.raises(DataError) as e:
        load_tasks(Wmt14EnDeConfig(), 0, str(wmt14_dir(tmp_path)))
    message = str(e.value)
    assert "\n" not in message
    for key in ("tasks.train_source", "tasks.train_target", "tasks.train=newstest_2009_2012",
                "data_dir=null"):  # fmt: skip
        assert key in message


def test_wmt14_no_hub_and_no_data_dir_says_which_keys_to_set(monkeypatch):
    monkeypatch.setattr(translation_module, "hub_reachable", lambda: False)
    with pytest.raises(DataError, match="cannot be reached.*tasks.train_source"):
        load_tasks(Wmt14EnDeConfig(), 0, None)


def test_wmt14_stand_in_and_user_files(tmp_path, caplog):
    data = str(wmt14_dir(tmp_path))
    with caplog.at_level(logging.WARNING):
        (task,) = load_tasks(Wmt14EnDeConfig(train="newstest_2009_2012", max_train=5), 0, data)
    assert task.name == "wmt14_en_de" and task.primary
    assert (len(task.train), len(task.dev), len(task.test)) == (5, 4, 3)
    assert task.train.tokens[0] == ["2009", "en"] and task.train.labels[-1] == ["2011", "de"]
    assert "stand-in" in caplog.text
    assert len(task.fingerprint["source"]["train"]["files"]) == 8
    write(tmp_path / "mine" / "train.en.xz", ["hello world"] * 3, lzma.open)
    write(tmp_path / "mine" / "train.de.xz", ["hallo Welt"] * 3, lzma.open)
    relative = Wmt14EnDeConfig(train_source="mine/train.en.xz", train_target="mine/train.de.xz")
    (task,) = load_tasks(relative, 0, data)
    assert task.train.labels == [["hallo", "Welt"]] * 3
    absolute = dataclasses.replace(relative, train_source=str(tmp_path / "mine/train.en.xz"),
                                   train_target=str(tmp_path / "mine/train.de.xz"))  # fmt: skip
    assert len(load_tasks(absolute, 0, data)[0].train) == 3
    with pytest.raises(DataError, match="relative path is under data_dir, which is null"):
        load_tasks(relative, 0, None)
    wrong = dataclasses.replace(relative, train_target="mine/nope.de")
    with pytest.raises(DataError, match=r"nope\.de.*fix the paths"):
        load_tasks(wrong, 0, data)


def fake_hub(calls: list, rows: int = 4):
    """A load_hub_split stand-in: in-memory datasets shaped like the hub's, recording calls."""
    import datasets

    def load(hub_id, config, split, *, what, local, revision=None):
        calls.append((hub_id, config, split, revision))
        n = int(split.split("[:")[1].rstrip("]")) if "[:" in split else rows
        if hub_id == translation_module.MULTI30K_HUB:
            return datasets.Dataset.from_dict({"en": [f"en {i}" for i in range(n)],
                                               "de": [f"de {i}" for i in range(n)]})  # fmt: skip
        other = config.split("-")[0]
        return datasets.Dataset.from_dict(
            {"translation": [{other: f"{other} {i}", "en": f"en {i}"} for i in range(n)]}
        )

    return load


def test_hub_paths_translate_from_english_and_load_only_max_train_rows(monkeypatch):
    calls = []
    monkeypatch.setattr(translation_module, "load_hub_split", fake_hub(calls))
    monkeypatch.setattr(translation_module, "hub_reachable", lambda: True)
    (task,) = load_tasks(Wmt14EnDeConfig(max_train=2, hub_revision="abc"), 0, None)
    assert task.train.tokens == [["en", "0"], ["en", "1"]]
    assert task.train.labels[0] == ["de", "0"]
    assert calls == [("wmt/wmt14", "de-en", "train[:2]", "abc"),
                     ("wmt/wmt14", "de-en", "validation", "abc"),
                     ("wmt/wmt14", "de-en", "test", "abc")]  # fmt: skip
    fingerprint = task.fingerprint["source"]["train"]
    assert (fingerprint["hub"], fingerprint["revision"], task.fingerprint["max_train"]) == (
        "wmt/wmt14", "abc", 2)  # fmt: skip
    (task,) = load_tasks(Multi30kConfig(max_eval=1), 0, None)
    assert len(task.train) == 4 and len(task.dev) == 1 and task.test.labels == [["de", "0"]]
    en_de, en_fr = load_tasks(WmtMultilingualConfig(primary="en_fr"), 0, None)
    assert (en_de.name, en_fr.name) == ("en_de", "en_fr") and en_fr.primary and not en_de.primary
    assert en_fr.train.tokens[0] == ["en", "0"] and en_fr.train.labels[0] == ["fr", "0"]


# --- En-De + En-Fr -----------------------------------------------------------------------------
def pair_files(root: Path, pair: str) -> PairFiles:
    files = {}
    for split in ("train", "dev", "test"):
        for side, lang in (("source", "en"), ("target", pair[-2:])):
            path = write(root / pair / f"{split}.{lang}", [f"{split} {lang} {i}" for i in range(3)])
            files[f"{split}_{side}"] = str(path.relative_to(root))
    return PairFiles(**files)


def test_multilingual_local_files(tmp_path):
    cfg = WmtMultilingualConfig(en_de=pair_files(tmp_path, "en_de"),
                                en_fr=pair_files(tmp_path, "en_fr"), max_train=2)  # fmt: skip
    en_de, en_fr = load_tasks(cfg, 0, str(tmp_path))
    assert en_fr.train.labels == [["train", "fr", "0"], ["train", "fr", "1"]]
    assert len(en_de.dev) == 3 and not en_de.primary and en_de.metric == Metric.BLEU
    only = dataclasses.replace(cfg, pairs=["en_fr"])
    assert [t.name for t in load_tasks(only, 0, str(tmp_path))] == ["en_fr"]


def test_multilingual_offline_without_files_names_the_keys(tmp_path, monkeypatch):
    cfg = WmtMultilingualConfig(en_de=pair_files(tmp_path, "en_de"))
    with pytest.raises(DataError) as e:
        load_tasks(cfg, 0, str(tmp_path))
    assert "\n" not in str(e.value) and "no local files for 3 split(s)" in str(e.value)
    for split in ("train", "dev", "test"):
        assert f"tasks.en_fr.{split}_source/{split}_target" in str(e.value)
    monkeypatch.setattr(translation_module, "hub_reachable", lambda: False)
    with pytest.raises(DataError) as e:
        load_tasks(WmtMultilingualConfig(), 0, None)
    assert "\n" not in str(e.value) and "tasks.en_fr.test_source/test_target" in str(e.value)


@pytest.mark.parametrize("make", [
    lambda: Multi30kConfig(max_eval=0),
    lambda: Wmt14EnDeConfig(train="europarl"),
    lambda: Wmt14EnDeConfig(train_source="a.en"),
    lambda: Wmt14EnDeConfig(train="newstest_2009_2012", train_source="a", train_target="b"),
    lambda: WmtMultilingualConfig(pairs=["en_de", "en_de"]),
    lambda: WmtMultilingualConfig(pairs=["en_de"], primary="en_fr"),
    lambda: WmtMultilingualConfig(en_fr=PairFiles(dev_target="x")),
    lambda: MtSyntaxConfig(aux=[]),
    lambda: MtSyntaxConfig(aux=["pos", "ner"]),
    lambda: MtSyntaxConfig(mt="iwslt"),
    lambda: MtSyntaxConfig(parse_scheme="brackets"),
    lambda: MtSyntaxConfig(max_train=TaskSizes(pos=0)),
    lambda: MtSyntaxConfig(multi30k=Multi30kConfig(max_train=10)),
])  # fmt: skip
def test_config_checks(make):
    with pytest.raises(ConfigError):
        make()


def test_registered_and_every_yaml_composes():
    for name, schema in (("multi30k", Multi30kConfig), ("wmt14_en_de", Wmt14EnDeConfig),
                         ("wmt_multilingual", WmtMultilingualConfig),
                         ("mt_syntax", MtSyntaxConfig)):  # fmt: skip
        assert SCHEMAS["tasks"][name] is schema
    cfg = compose_run("tasks=mt_syntax_parse", "tasks.mt=wmt14_en_de", "tasks.max_train.pos=5",
                      "tasks.wmt14_en_de.train=newstest_2009_2012")  # fmt: skip
    assert (cfg.tasks.aux, cfg.tasks.mt, cfg.tasks.max_train.pos) == (["parse"], "wmt14_en_de", 5)
    assert compose_run("tasks=mt_syntax_pos").tasks.aux == ["pos"]
    assert compose_run("tasks=mt_syntax").tasks.aux == ["pos", "parse"]
    assert compose_run("tasks=wmt_multilingual").tasks.en_de.dev_source.endswith("2013.en")
    assert compose_run("tasks=wmt14_en_de").tasks.train is None
    assert compose_run("tasks=multi30k").tasks.path == "multi30k_en_de"
    for name in ("multi30k", "wmt14_en_de", "wmt_multilingual", "mt_syntax", "mt_syntax_pos",
                 "mt_syntax_parse"):  # fmt: skip
        text = (Path(config_dir()) / "tasks" / f"{name}.yaml").read_text()
        assert "/".join(["..", "shared"]) not in text  # configs name data_dir-relative paths only


# --- CoNLL-U trees and the parse linearisations ------------------------------------------------
def row(i, word, xpos, head, rel):
    return f"{i}\t{word}\t_\t_\t{xpos}\t_\t{head}\t{rel}\t_\t_"


# "I didn't see it yesterday" with a multi-word token and an empty node
TREE_1 = ["# text = I didn't see it", row(1, "I", "PRP", 4, "nsubj"),
          "2-3\tdidn't\t_\t_\t_\t_\t_\t_\t_\t_", row(2, "did", "VBD", 4, "aux"),
          row(3, "n't", "RB", 4, "advmod"), row(4, "see", "VB", 0, "root"),
          "4.1\tsaw\t_\t_\t_\t_\t_\t_\t4:conj\t_", row(5, "it", "PRP", 4, "obj"), ""]  # fmt: skip
# non-projective: "A hearing is scheduled on the issue today" (the classic crossing arcs)
HEADS_NP = [2, 4, 4, 0, 2, 7, 5, 4]
RELS_NP = ["det", "nsubj", "aux", "root", "nmod", "det", "pobj", "obl:tmod"]
TREE_2 = [
    row(i, f"w{i}", "NN", h, r) for i, (h, r) in enumerate(zip(HEADS_NP, RELS_NP, strict=True), 1)
] + [""]


def test_conllu_trees_skip_multiword_tokens_and_empty_nodes(tmp_path):
    path = write(tmp_path / "t.conllu.gz", TREE_1 + TREE_2, gzip.open)
    first, second = read_conllu_trees(path)
    assert first.words == ["I", "did", "n't", "see", "it"]
    assert first.xpos == ["PRP", "VBD", "RB", "VB", "PRP"]
    assert first.heads == [4, 4, 4, 0, 4] and first.deprels[4] == "obj"
    assert second.heads == HEADS_NP
    bad = write(
        tmp_path / "bad.conllu", [row(1, "a", "DT", 3, "det"), row(2, "b", "NN", 0, "root")]
    )
    with pytest.raises(DataError, match=r"bad\.conllu:1: HEAD '3'"):
        read_conllu_trees(bad)


def test_relative_head_round_trip_and_symbols():
    heads, rels = [4, 4, 4, 0, 4], ["nsubj", "aux", "advmod", "root", "obj"]
    symbols = relative_head_encode(heads, rels)
    assert symbols == ["+3/nsubj", "+2/aux", "+1/advmod", "0/root", "-1/obj"]
    assert relative_head_decode(symbols) == (heads, rels)
    assert relative_head_decode(relative_head_encode(HEADS_NP, RELS_NP)) == (HEADS_NP, RELS_NP)
    for broken in (["+9/nsubj"], ["x/nsubj"], ["+1"]):
        with pytest.raises(ValueError):
            relative_head_decode(broken)


def test_arc_standard_round_trip_and_non_projective_trees():
    heads, rels = [4, 4, 4, 0, 4], ["nsubj", "aux", "advmod", "root", "obj"]
    actions = arc_standard_encode(heads, rels)
    assert actions == ["SHIFT", "SHIFT", "SHIFT", "SHIFT", "LEFT-ARC_advmod", "LEFT-ARC_aux",
                       "LEFT-ARC_nsubj", "SHIFT", "RIGHT-ARC_obj", "RIGHT-ARC_root"]  # fmt: skip
    assert arc_standard_decode(actions, 5) == (heads, rels)
    assert is_projective(heads) and not is_projective(HEADS_NP)
    with pytest.raises(NonProjective):
        arc_standard_encode(HEADS_NP, RELS_NP)
    for broken in (actions[:-1], ["LEFT-ARC_x", *actions], ["SHIFT"] * 6, ["REDUCE", *actions]):
        with pytest.raises(ValueError):
            arc_standard_decode(broken, 5)


def test_hub_ud_rows_become_trees():
    import datasets

    from mtlrun.tasks.mt_syntax import hub_trees

    ds = datasets.Dataset.from_dict({
        "tokens": [["I", "don't", "do", "n't", "run"]], "xpos": [["PRP", None, "VBP", "RB", "VB"]],
        "head": [["4", "None", "4", "4", "0"]], "deprel": [["nsubj", "_", "aux", "advmod", "root"]],
    })  # fmt: skip
    (tree,) = hub_trees(ds, "UD")
    assert tree.words == ["I", "do", "n't", "run"] and tree.heads == [4, 4, 4, 0]
    assert tree.xpos == ["PRP", "VBP", "RB", "VB"] and tree.deprels[-1] == "root"


# --- the MT + syntax suite on fixture files ------------------------------------------------------
def ud_dir(root: Path, copies: int = 3) -> Path:
    for split in ("train", "dev", "test"):
        write(root / "ud_english_ewt" / f"en_ewt-ud-{split}.conllu.gz", (TREE_1 + TREE_2) * copies,
              gzip.open)  # fmt: skip
    return root


def test_mt_syntax_tasks(tmp_path):
    data = str(ud_dir(multi30k_dir(tmp_path)))
    cfg = MtSyntaxConfig(max_train=TaskSizes(mt=4, pos=5), max_eval=3)
    mt, pos, parse = load_tasks(cfg, 0, data)
    assert [t.name for t in (mt, pos, parse)] == ["multi30k_en_de", "pos", "parse"]
    assert [t.primary for t in (mt, pos, parse)] == [True, False, False]
    assert all(t.kind == Kind.SEQ2SEQ for t in (mt, pos, parse))
    assert (mt.metric, pos.metric, parse.metric) == (Metric.BLEU, Metric.TOKEN_ACCURACY,
                                                     Metric.TOKEN_ACCURACY)  # fmt: skip
    assert [len(t.train) for t in (mt, pos, parse)] == [4, 5, 6]
    assert [len(t.dev) for t in (mt, pos, parse)] == [3, 3, 3]
    assert pos.label_names == sorted(pos.label_names) and "VBD" in pos.label_names
    assert [pos.label_names[i] for i in pos.train.labels[0]] == ["PRP", "VBD", "RB", "VB", "PRP"]
    assert pos.train.tokens[0] == ["I", "did", "n't", "see", "it"]
    symbols = [parse.label_names[i] for i in parse.train.labels[0]]
    assert delinearise(symbols, 5) == ([4, 4, 4, 0, 4], ["nsubj", "aux", "advmod", "root", "obj"])
    assert (
        parse.fingerprint["scheme"] == RELATIVE_HEAD
        and len(parse.fingerprint["source"]["files"]) == 3
    )


def test_mt_syntax_arc_standard_drops_non_projective_and_keeps_aux_order(tmp_path, caplog):
    data = str(ud_dir(multi30k_dir(tmp_path)))
    with caplog.at_level(logging.WARNING):
        mt, parse, pos = load_tasks(MtSyntaxConfig(aux=["parse", "pos"],
                                                   parse_scheme=ARC_STANDARD), 0, data)  # fmt: skip
    assert (parse.name, pos.name) == ("parse", "pos")
    assert (len(parse.train), len(pos.train)) == (3, 6)  # the 3 non-projective copies dropped
    assert len([r for r in caplog.records if "non-projective" in r.getMessage()]) == 1
    assert "train 3 of 6" in caplog.text
    assert "SHIFT" in parse.label_names and all(
        n == "SHIFT" or n.startswith(("LEFT-ARC_", "RIGHT-ARC_")) for n in parse.label_names
    )


def test_mt_syntax_with_wmt14_translation(tmp_path):
    data = str(ud_dir(wmt14_dir(tmp_path)))
    cfg = MtSyntaxConfig(mt="wmt14_en_de", aux=["pos"],
                         wmt14_en_de=Wmt14EnDeConfig(train="newstest_2009_2012"))  # fmt: skip
    mt, pos = load_tasks(cfg, 0, data)
    assert (mt.name, len(mt.train), mt.primary, pos.primary) == ("wmt14_en_de", 8, True, False)


# --- the real corpora ----------------------------------------------------------------------------
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no real data at {SHARED_DATA}")


@pytest.fixture(scope="module")
def ewt_dev():
    return read_conllu_trees(SHARED_DATA / "ud_english_ewt" / "en_ewt-ud-dev.conllu.gz")


@pytest.mark.realdata
@needs_data
def test_real_multi30k():
    (task,) = load_tasks(Multi30kConfig(), 0, str(SHARED_DATA))
    assert (len(task.train), len(task.dev), len(task.test)) == (29000, 1014, 1000)
    assert " ".join(task.train.tokens[0]) == "Two young, White males are outside near many bushes."
    assert " ".join(task.train.labels[0]) == (
        "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
    )
    assert sum(map(len, task.train.tokens)) == 345020  # the README's whitespace-separated words
    assert sum(map(len, task.train.labels)) == 322383


@pytest.mark.realdata
@needs_data
def test_real_wmt14_dev_test_and_stand_in():
    (task,) = load_tasks(Wmt14EnDeConfig(train="newstest_2009_2012"), 0, str(SHARED_DATA))
    assert (len(task.train), len(task.dev), len(task.test)) == (11020, 3000, 3003)
    assert " ".join(task.test.tokens[0]) == "Gutach: Increased safety for pedestrians"
    with pytest.raises(DataError, match="tasks.train_source"):
        load_tasks(Wmt14EnDeConfig(), 0, str(SHARED_DATA))


@pytest.mark.realdata
@needs_data
def test_real_ewt_parse_linearisations_invert_on_dev(ewt_dev):
    assert len(ewt_dev) == 2001 and sum(len(t.words) for t in ewt_dev) == 25147
    projective = 0
    for tree in ewt_dev:
        symbols = linearise(tree, RELATIVE_HEAD)
        assert delinearise(symbols, len(tree.words)) == (tree.heads, tree.deprels)
        if is_projective(tree.heads):
            projective += 1
            actions = linearise(tree, ARC_STANDARD)
            assert len(actions) == 2 * len(tree.words)
            assert delinearise(actions, len(tree.words), ARC_STANDARD) == (tree.heads, tree.deprels)
        else:
            with pytest.raises(NonProjective):
                linearise(tree, ARC_STANDARD)
    assert projective == 2001 - 31


@pytest.mark.realdata
@needs_data
def test_real_mt_syntax_suite():
    mt, pos, parse = load_tasks(MtSyntaxConfig(), 0, str(SHARED_DATA))
    assert (len(mt.train), len(mt.dev), len(mt.test)) == (29000, 1014, 1000)
    for task in (pos, parse):
        assert (len(task.train), len(task.dev), len(task.test)) == (12544, 2001, 2077)
    assert len(pos.label_names) == 49 and "NNP" in pos.label_names
    assert sum(map(len, pos.train.labels)) == 204577  # EWT's train words (stats.xml)
    assert [pos.label_names[i] for i in pos.dev.labels[0]][:3] == ["IN", "DT", "NNP"]
    assert [t.primary for t in (mt, pos, parse)] == [True, False, False]


@pytest.mark.slow
@pytest.mark.realdata
@needs_data
def test_real_arc_standard_parse_task():
    cfg = MtSyntaxConfig(aux=["parse"], parse_scheme=ARC_STANDARD, max_train=TaskSizes(mt=10))
    _, arc = load_tasks(cfg, 0, str(SHARED_DATA))
    assert (len(arc.train), len(arc.dev), len(arc.test)) == (12544 - 288, 2001 - 31, 2077 - 26)
    assert all(len(a) == 2 * len(w) for w, a in zip(arc.dev.tokens, arc.dev.labels, strict=True))
