"""Leave-one-task-out transfer (transfer.task): the held-out task is kept out of training, then
learned by a new head over the frozen encoder with stratified k-fold cross-validation."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TAGGING, TINY, compose_run, mtlrun

from mtlrun.errors import ConfigError
from mtlrun.experiment import prepare
from mtlrun.kinds.classification import ClassificationHead
from mtlrun.models import build_model
from mtlrun.tasks import Kind, Metric, Split, Task
from mtlrun.training.transfer import cross_validate, fold_indices, hold_out, transfer

CFG = SimpleNamespace(folds=5, epochs=20, lr=1e-2)


def task(name="t", kind=Kind.CLASSIFICATION, metric=Metric.ACCURACY):
    split = Split([["a"]] * 10, [0, 1] * 5)
    return Task(name=name, kind=kind, label_names=["neg", "pos"], metric=metric,
                train=split, dev=split, test=split)  # fmt: skip


def test_hold_out_keeps_the_task_out_and_refuses_what_it_cannot_transfer():
    a, b, tags = task("a"), task("b"), task("tags", Kind.TAGGING)
    assert hold_out([a, b], None) == ([a, b], None)
    assert hold_out([a, b, tags], "b") == ([a, tags], b)
    for tasks, name, message in [
        ([a, b], "c", "transfer.task=c is not a task of this suite; choose one of: a, b"),
        ([a, tags], "tags", "a tagging task"),
        ([a], "a", "the suite's only task"),
    ]:
        with pytest.raises(ConfigError, match=message):
            hold_out(tasks, name)


def test_folds_are_a_stratified_partition_and_fixed_by_the_seed():
    labels = np.array([0] * 60 + [1] * 40)
    folds = fold_indices(labels, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))  # each example once
    assert [np.bincount(labels[f]).tolist() for f in folds] == [[12, 8]] * 5
    again = fold_indices(labels, 5, seed=3)
    assert all((f == g).all() for f, g in zip(folds, again, strict=True))
    assert any((f != g).any() for f, g in zip(folds, fold_indices(labels, 5, 4), strict=True))


def blobs(n, separation, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 8, generator=g)
    x[:, 0] += separation * (2 * y - 1)
    return x, y


def test_cross_validation_learns_separable_vectors_and_not_noise():
    t = task()
    x, y = blobs(200, 4.0, seed=0)
    scores = cross_validate(t, x, y, lambda: ClassificationHead(8, 2), CFG, 16, seed=0)
    assert len(scores) == 5 and min(scores) >= 0.95
    x, _ = blobs(200, 0.0, seed=1)  # vectors that say nothing about the labels
    noise = cross_validate(t, x, y, lambda: ClassificationHead(8, 2), CFG, 16, seed=0)
    assert 0.3 < np.mean(noise) < 0.7
    # the task's own metric: binary F1 of always-positive predictions on a 50/50 split is 2/3
    f1 = task(metric=Metric.BINARY_F1)
    always = ClassificationHead(8, 2)
    torch.nn.init.zeros_(always.linear.weight)
    always.linear.bias.data = torch.tensor([-50.0, 50.0])
    frozen = SimpleNamespace(folds=2, epochs=1, lr=1e-12)  # the head barely moves
    assert cross_validate(f1, x, y, lambda: always, frozen, 16, 0) == pytest.approx([2 / 3] * 2)


def test_too_many_folds_for_the_rarest_label_is_one_message():
    x, y = blobs(20, 1.0, 0)
    y[:] = 0
    y[:3] = 1
    with pytest.raises(ConfigError, match="transfer.folds=5: t's rarest label has only 3"):
        cross_validate(task(), x, y, lambda: ClassificationHead(8, 2), CFG, 16, 0)


def test_transfer_freezes_the_encoder_and_is_deterministic(tmp_path):
    c = compose_run(*TINY, TAGGING, "transfer.task=sent1", f"cache_dir={tmp_path}")
    p = prepare(c)
    assert [t.name for t in p.tasks] == ["sent0", "entities"]  # sent1 is not trained
    held = p.held_out
    assert held.task.name == "sent1" and held.encoder is p.encoded[0].encoder
    model = build_model(c.model, p.vocab, p.tasks, c.seed)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = transfer(c, model.encoder, held, p.device)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.encoder.training  # put back as it was
    assert first["examples"] == sum(len(held.splits[s]) for s in ("train", "dev", "test"))
    assert len(first["fold_scores"]) == 5 and first["metric"] == "accuracy"
    assert first["score"] == pytest.approx(np.mean(first["fold_scores"]))
    second = transfer(c, model.encoder, held, p.device)
    assert first["fold_scores"] == second["fold_scores"]


@pytest.mark.slow
def test_a_run_with_transfer_reports_it(tmp_path):
    run = tmp_path / "run"
    proc = mtlrun([*TINY, "transfer.task=sent1", "transfer.folds=3", f"cache_dir={tmp_path}",
                   f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    assert set(results["tasks"]) == {"sent0"}
    t = results["transfer"]
    assert t["task"] == "sent1" and t["folds"] == 3 and len(t["fold_scores"]) == 3
    line = "transfer to sent1 (a new head on the frozen encoder, 3-fold cross-validation"
    assert line in (run / "results.md").read_text() and line in proc.stdout
