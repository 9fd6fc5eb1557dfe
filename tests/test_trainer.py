"""The trainer's contract with schedulers, checked in-process on a tiny synthetic run."""

import copy

import pytest
from conftest import TAGGING, tiny_trainer


def trainer_for(tmp_path, *overrides):
    return tiny_trainer(tmp_path / "run", f"cache_dir={tmp_path}", TAGGING, *overrides)


def test_batch_accuracy_reaches_kpi_schedulers(tmp_path):
    tr = trainer_for(tmp_path, "scheduler=dtp", "trainer.step_mode=single", "model.dropout=0")
    k = copy.deepcopy(tr.scheduler).next_task(0)
    index = copy.deepcopy(tr.streams[k]).next()
    before = copy.deepcopy(tr.model)  # the KPI is the accuracy of the model that took the step
    tr._train_step(0)
    out = before(k, tr.kinds[k].collate(tr.tasks[k].splits["train"], index, tr.device))
    accuracy = (out.example_log_probs.argmax(-1) == out.example_labels).float().mean().item()
    assert tr.scheduler.kappa[k] == pytest.approx(accuracy)  # the first KPI is taken as is


def test_all_mode_trains_every_task_each_step(tmp_path):
    tr = trainer_for(tmp_path, "scheduler=uniform_weights")
    tr._train_step(0)
    tr._train_step(1)
    assert tr.state.batches_seen == [2] * len(tr.tasks)


def test_loss_probes_use_their_own_data_streams(tmp_path):
    plain = trainer_for(tmp_path / "a", "scheduler=greedy_loss")
    probed = trainer_for(tmp_path / "b", "scheduler=greedy_loss", "scheduler.refresh_every=3")
    for t in range(7):
        plain._train_step(t)
        probed._train_step(t)
    # probes at steps 3 and 6 saw one batch of every task, from the probe streams only
    assert [s.epoch >= 0 for s in probed.probe_streams] == [True] * len(probed.tasks)
    assert [s.epoch for s in plain.probe_streams] == [-1] * len(plain.tasks)
    assert probed.scheduler.ell.tolist() != plain.scheduler.ell.tolist()


def test_training_losses_are_averaged_per_interval_and_survive_a_checkpoint(tmp_path):
    import torch

    tr = trainer_for(tmp_path / "a")
    for k, value in [(0, 1.0), (0, 2.0), (2, 0.5)]:
        tr._add_train_loss(k, torch.tensor(value))
    snapshot = tr._snapshot()  # a preemption checkpoint in the middle of the interval
    assert tr._train_losses() == [1.5, None, 0.5]  # task 1 did not train
    assert tr._train_losses() == [None, None, None]  # a fresh interval
    resumed = trainer_for(tmp_path / "b")
    resumed._restore(snapshot)
    resumed._add_train_loss(0, torch.tensor(3.0))
    assert resumed._train_losses() == [2.0, None, 0.5]


def test_select_by_primary_on_one_task_selects_that_task(tmp_path):
    """A table's single-task baseline inherits select_by=primary from its preset: with one
    task, that task is the primary one. With two and none marked, the run is refused."""
    import json

    from mtlrun.errors import ConfigError

    one = ["tasks.train_sizes=[300]", "tasks.label_noise=[0.0]", "trainer.select_by=primary"]
    (tmp_path / "one").mkdir()
    results = tiny_trainer(tmp_path / "one", f"cache_dir={tmp_path}", *one).fit()
    [task] = results["tasks"]
    records = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").open()]
    devs = [(r["score"], -r["step"]) for r in records if r.get("split") == "dev"
            and r.get("task") == task]  # fmt: skip
    assert len(devs) == 3 and results["best_step"] == -max(devs)[1]  # first of the best
    with pytest.raises(ConfigError, match="none of these tasks is marked primary"):
        trainer_for(tmp_path / "two", "trainer.select_by=primary")
