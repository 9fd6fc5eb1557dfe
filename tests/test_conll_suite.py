"""tasks=conll: POS + chunking + NER from the CoNLL files, §1.4.6 for CoNLL-2000's missing dev
split, the CRF head end to end, and the hub path (converted from in-memory datasets)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
from conftest import SHARED_DATA, mtlrun

from mtlrun.config import ConllTasksConfig
from mtlrun.errors import DataError
from mtlrun.tasks import load_tasks
from mtlrun.tasks.conll_suite import hub_tagged

NER = ["-DOCSTART- -X- -X- O", "", "EU NNP B-NP I-ORG", "rejects VBZ B-VP O",
       "German JJ B-NP I-MISC", "call NN I-NP O", "", "Peter NNP B-NP I-PER",
       "Blackburn NNP I-NP I-PER", ""]  # fmt: skip
CHUNK = ["He PRP B-NP", "reckons VBZ B-VP", "the DT B-NP", "deficit NN I-NP", "", "It PRP B-NP",
         "fell VBD B-VP", ""]  # fmt: skip
CONLLU = [
    "# text = I saw it",
    "1\tI\tI\tPRON\tPRP\t_\t2\tnsubj\t_\t_",
    "2\tsaw\tsee\tVERB\tVBD\t_\t0\troot\t_\t_",
    "3\tit\tit\tPRON\tPRP\t_\t2\tobj\t_\t_",
    "",
]


def write_conll(root: Path, copies: int = 1) -> Path:
    """A data_dir with tiny CoNLL-2003, CoNLL-2000 and UD-EWT files (`copies` sentences each)."""
    (root / "conll2003").mkdir(parents=True)
    for name in ("eng.train", "eng.testa", "eng.testb"):
        (root / "conll2003" / name).write_text("\n".join(NER * copies) + "\n")
    (root / "conll2000").mkdir()
    for name in ("train.txt", "test.txt"):
        (root / "conll2000" / name).write_text("\n".join(CHUNK * copies) + "\n")
    (root / "ud_english_ewt").mkdir()
    for s in ("train", "dev", "test"):
        with gzip.open(root / "ud_english_ewt" / f"en_ewt-ud-{s}.conllu.gz", "wt") as f:
            f.write("\n".join(CONLLU * copies) + "\n")
    return root


def test_three_tasks_with_their_metrics_and_iob2_ner(tmp_path):
    pos, chunking, ner = load_tasks(ConllTasksConfig(), 0, str(write_conll(tmp_path, 10)))
    assert [t.metric.value for t in (pos, chunking, ner)] == ["token_accuracy", "f1", "f1"]
    assert [pos.label_names[i] for i in pos.train.labels[0]] == ["PRP", "VBD", "PRP"]  # XPOS
    assert [ner.label_names[i] for i in ner.train.labels[0]] == ["B-ORG", "O", "B-MISC", "O"]
    assert [ner.label_names[i] for i in ner.train.labels[1]] == ["B-PER", "I-PER"]
    upos = load_tasks(ConllTasksConfig(pos_tagset="upos", tasks=["pos"]), 0, str(tmp_path))[0]
    assert [upos.label_names[i] for i in upos.train.labels[0]] == ["PRON", "VERB", "PRON"]


def test_holdout_carves_a_fixed_share_of_chunking_train_by_seed(tmp_path):
    data = str(write_conll(tmp_path, 10))  # 20 chunking sentences
    cfg = ConllTasksConfig(tasks=["chunking"])
    a, b, c = (load_tasks(cfg, s, data)[0] for s in (0, 0, 1))
    assert (len(a.train), len(a.dev)) == (18, 2)
    assert a.dev.tokens == b.dev.tokens and a.train.tokens == b.train.tokens
    dev_positions = lambda t: [i for i, s in enumerate(t.dev.tokens)]  # noqa: E731
    assert dev_positions(a) == dev_positions(c)  # sizes equal; which sentences may differ
    assert load_tasks(ConllTasksConfig(tasks=["chunking"], holdout_fraction=0.5), 0, data)[
        0].dev.__len__() == 10  # fmt: skip
    neutral = load_tasks(ConllTasksConfig(tasks=["chunking"], missing_metric_policy="neutral"),
                         0, data)[0]  # fmt: skip
    assert len(neutral.dev) == 0 and len(neutral.train) == 20 and neutral.missing_dev == "neutral"


def test_missing_files_say_which_and_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"eng\.train.*CoNLL-2003"):
        load_tasks(ConllTasksConfig(tasks=["ner"]), 0, str(tmp_path))


def test_no_data_dir_and_no_hub_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"eriktks/conll2003.*cannot be reached.*data_dir="):
        load_tasks(ConllTasksConfig(tasks=["ner"]), 0, None)


def test_hub_rows_become_tag_names_in_iob2():
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]
    features = Features({"tokens": Sequence(Value("string")),
                         "ner_tags": Sequence(ClassLabel(names=names))})  # fmt: skip
    ds = Dataset.from_dict({"tokens": [["Peter", "Blackburn", "of", "EU"]],
                            "ner_tags": [[2, 2, 0, 4]]}, features=features)  # fmt: skip
    assert hub_tagged(ds, "tokens", "ner_tags", iob1=True) == [
        (["Peter", "Blackburn", "of", "EU"], ["B-PER", "I-PER", "O", "B-ORG"])]  # fmt: skip
    plain = Dataset.from_dict({"tokens": [["a"]], "xpos": [["DT"]]})  # string tags stay
    assert hub_tagged(plain, "tokens", "xpos") == [(["a"], ["DT"])]


TINY_CONLL = ["model.hidden_size=16", "model.embeddings.dim=16", "trainer.max_steps=30",
              "trainer.eval_every=15", "trainer.progress=false", "trainer.plots=false",
              "hardware.num_threads=1"]  # fmt: skip


@pytest.mark.slow
def test_conll_with_crf_runs_end_to_end(tmp_path, cache_dir):
    data = write_conll(tmp_path / "data", 20)
    run = tmp_path / "run"
    mtlrun(["tasks=conll", f"data_dir={data}", "model.crf=true", *TINY_CONLL, cache_dir,
            f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    assert set(results["tasks"]) == {"pos", "chunking", "ner"}
    for r in results["tasks"].values():
        assert 0 <= r["test"] <= 1
    # the fixture repeats its sentences, so 30 steps learn them: the CRF decodes real tags
    assert results["tasks"]["pos"]["test"] > 0.5


@pytest.mark.slow
def test_neutral_policy_scores_chunking_with_the_others_mean(tmp_path, cache_dir):
    data = write_conll(tmp_path / "data", 20)
    run = tmp_path / "run"
    mtlrun(["tasks=conll", f"data_dir={data}", "tasks.missing_metric_policy=neutral",
            *TINY_CONLL, cache_dir, f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    tasks = json.loads((run / "results.json").read_text())["tasks"]
    assert math.isclose(tasks["chunking"]["dev"], (tasks["pos"]["dev"] + tasks["ner"]["dev"]) / 2)
    args = [
        "tasks=conll",
        f"data_dir={data}",
        "tasks.missing_metric_policy=zero",
        "scheduler=active_uncertainty",
        "scheduler.every=10",
        *TINY_CONLL,
        cache_dir,
    ]
    refused = mtlrun([*args, f"hydra.run.dir={tmp_path / 'q'}"], cwd=tmp_path, check=False)
    assert refused.returncode != 0
    assert "missing_metric_policy=holdout" in refused.stderr + refused.stdout


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_real_conll_suite_sizes():
    pos, chunking, ner = load_tasks(ConllTasksConfig(), 0, str(SHARED_DATA))
    assert (len(pos.train), len(pos.dev), len(pos.test)) == (12544, 2001, 2077)
    assert (len(chunking.train), len(chunking.dev), len(chunking.test)) == (8042, 894, 2012)
    assert (len(ner.train), len(ner.dev), len(ner.test)) == (14041, 3250, 3453)
    assert len(ner.label_names) == 9 and all(n[:2] in ("B-", "I-") for n in ner.label_names[:-1])
    ptb = load_tasks(ConllTasksConfig(tasks=["pos"], pos_source="ptb_sample"), 0,
                     str(SHARED_DATA))[0]  # fmt: skip
    assert (len(ptb.train), len(ptb.dev), len(ptb.test)) == (3068, 433, 413)
