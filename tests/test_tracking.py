"""logger=tensorboard | mlflow | all: the trackers get what metrics.jsonl gets, read back with
TensorBoard's and MLflow's own readers; a resume continues (TensorBoard purges, MLflow keeps
its run); a tracker that cannot start stops the run in one line, one that fails later is
dropped and the run goes on."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import TINY, mtlrun
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtlrun.tracking import MLflowTracker, TensorBoardTracker, Tracker, Trackers, scalars
from mtlrun.tracking.tensorboard import SUBDIR


def _record(task, score, p, state=None, **extra):
    return {"step": 40, "task": task, "split": "dev", "metric": "accuracy", "score": score,
            "loss": 0.5, "train_loss": 0.7, "p": p, "w": 1.0, "lr_scale": 1.0,
            "batches_seen": 9, "schedule": {"share": p, "entropy": 0.69, "entropy_norm": 1.0},
            "train_seconds": 3.5, **({"scheduler": state} if state else {}), **extra}  # fmt: skip


def test_records_become_tags_per_task_and_run_wide():
    state = {"weights": [0.25, 1.75], "window": [1, 2, 3], "note": "text", "gone": None}
    two_metrics = {"f1": 10.0, "p": 20.0}
    step, out = scalars([_record("a", 50.0, 0.25, state),
                         _record("b:x", None, 0.75, state, metrics=two_metrics)])  # fmt: skip
    assert step == 40
    assert out["dev/score/a"] == 50.0 and "dev/score/b_x" not in out  # None: no point
    assert out["dev/score/average"] == 50.0  # the mean of the defined scores
    assert out["schedule/p/b_x"] == 0.75 and out["schedule/share/a"] == 0.25
    assert out["train/loss/a"] == 0.7 and out["schedule/batches_seen/b_x"] == 9.0
    assert out["dev/f1/b_x"] == 10.0 and out["dev/p/b_x"] == 20.0 and "dev/f1/a" not in out
    assert out["schedule/entropy"] == 0.69 and out["time/train_seconds"] == 3.5
    # a list with one entry per task is named by task; any other list by position
    assert out["scheduler/weights/b_x"] == 1.75 and out["scheduler/window/2"] == 3.0
    assert not any(k.startswith(("scheduler/note", "scheduler/gone")) for k in out)


def _scalars_of(run_dir):
    events = EventAccumulator(str(run_dir / SUBDIR))
    events.Reload()
    return events


@pytest.mark.slow
def test_a_run_mirrors_metrics_jsonl_into_tensorboard_and_mlflow(tmp_path):
    run, store = tmp_path / "run", f"sqlite:///{tmp_path / 'store.db'}"
    mtlrun([*TINY, "scheduler=dwa", "logger=all", f"logger.mlflow.tracking_uri={store}",
            "trainer.plots=true",
            f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    dev = [r for r in records if r["split"] == "dev"]
    tasks = list(dict.fromkeys(r["task"] for r in dev))  # the run's order: the scheduler's
    events = _scalars_of(run)
    client = MlflowClient(store)
    run_id = json.loads((run / "mlflow.json").read_text())["run_id"]
    fields = {"dev/score": lambda r: r["score"], "train/loss": lambda r: r["train_loss"],
              "scheduler/weights":  # DWA's weights: a list in the run's task order
                  lambda r: r["scheduler"]["weights"][tasks.index(r["task"])]}  # fmt: skip
    for task in tasks:
        for name, value in fields.items():
            want = [(r["step"], value(r)) for r in dev if r["task"] == task]
            tb = [(e.step, e.value) for e in events.Scalars(f"{name}/{task}")]
            history = client.get_metric_history(run_id, f"{name}/{task}")
            ml = sorted((m.step, m.value) for m in history)
            assert [s for s, _ in tb] == [s for s, _ in want] == [s for s, _ in ml]
            assert [v for _, v in tb] == pytest.approx([v for _, v in want], rel=1e-6)  # float32
            assert [v for _, v in ml] == pytest.approx([v for _, v in want], rel=1e-12)
    test = {r["task"]: r for r in records if r["split"] == "test"}
    best = json.loads((run / "results.json").read_text())["best_step"]
    assert [(e.step, e.value) for e in events.Scalars(f"test/score/{tasks[0]}")] == [
        (best, pytest.approx(test[tasks[0]]["score"], rel=1e-6))]  # fmt: skip
    info = client.get_run(run_id)
    assert info.info.status == "FINISHED" and info.data.params["scheduler.name"] == "dwa"
    assert info.data.tags["mtlrun.run_dir"] == str(run.resolve())
    assert info.info.run_name.startswith("tasks.train_sizes=[300,60]")  # the overrides
    # the finished run's result files and plots are its artifacts, byte for byte
    uploaded = {a.path for a in client.list_artifacts(run_id)}
    assert uploaded == {"results.json", "results.md", "results.csv", "config.yaml", "plots"}
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert (
        len(plots) >= 4
        and sorted(a.path.removeprefix("plots/") for a in client.list_artifacts(run_id, "plots"))
        == plots
    )
    copy = client.download_artifacts(run_id, "results.json", str(tmp_path))
    assert Path(copy).read_bytes() == (run / "results.json").read_bytes()


def _tensorboard(tmp_path):
    return TensorBoardTracker(TensorBoardTracker.Config(), tmp_path, ["seed=1"], {"seed": 1})


def test_the_hparams_row_holds_what_the_command_line_chose(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    overrides = ["model=transformer", "+scheduler.baselines={a: 0.9, b: 0.8}", "seed=3"]
    params = {"model.name": "transformer", "model.hidden_size": 64, "seed": 3,
              "scheduler.name": "qls", "scheduler.baselines": "{'a': 0.9, 'b': 0.8}",
              "tasks.name": "synthetic", "trainer.max_steps": 60}  # fmt: skip
    tb = TensorBoardTracker(TensorBoardTracker.Config(), tmp_path, overrides, params)
    tb.start(None)
    tb.close("FINISHED")
    content = _scalars_of(tmp_path).PluginTagToContent("hparams")
    info = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    chosen = dict(info.session_start_info.hparams)
    assert sorted(chosen) == ["model.name", "scheduler.baselines", "scheduler.name", "seed",
                              "tasks.name"]  # fmt: skip
    assert chosen["scheduler.baselines"].string_value == "{'a': 0.9, 'b': 0.8}"
    assert tb.run_name == " ".join(overrides)


def test_a_resume_continues_both_trackers(tmp_path):
    """A run logged steps 10, 20, 30, was stopped with its checkpoint at 20, and resumes: the
    stale step 30 is gone from TensorBoard, and MLflow continues the same run."""
    store = f"sqlite:///{tmp_path / 'store.db'}"
    mlflow = MLflowTracker(MLflowTracker.Config(tracking_uri=store), tmp_path, ["seed=1"], {})
    first = Trackers([_tensorboard(tmp_path), mlflow])
    first.start(None)
    for step in (10, 20, 30):
        first.records([_record("a", float(step), 1.0) | {"step": step}])
    first.close("KILLED")
    run_id = mlflow.run_id
    assert MlflowClient(store).get_run(run_id).info.status == "KILLED"
    resumed_ml = MLflowTracker(MLflowTracker.Config(tracking_uri=store), tmp_path, ["seed=1"], {})
    second = Trackers([_tensorboard(tmp_path), resumed_ml])
    second.start(20)
    second.records([_record("a", 33.0, 1.0) | {"step": 30}])
    second.close("FINISHED")
    events = _scalars_of(tmp_path)
    assert [(e.step, e.value) for e in events.Scalars("dev/score/a")] == [
        (10, 10.0), (20, 20.0), (30, 33.0)]  # fmt: skip
    assert resumed_ml.run_id == run_id
    assert MlflowClient(store).get_run(run_id).info.status == "FINISHED"


@dataclass
class _Unreachable:
    pass


class _Failing(Tracker):
    """A tracker whose backend goes away mid-run (a full disk, a dropped connection)."""

    name = "failing"
    Config = _Unreachable

    def log(self, step, values):
        raise OSError("No space left on device")


def test_a_tracker_failing_mid_run_is_dropped_with_a_warning(tmp_path, caplog):
    tb = _tensorboard(tmp_path)
    trackers = Trackers([_Failing(None, tmp_path, ["x"], {}), tb])
    trackers.start(None)
    trackers.records([_record("a", 1.0, 1.0)])
    trackers.records([_record("a", 2.0, 1.0) | {"step": 50}])  # the failed one is gone
    trackers.close("FINISHED")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "logger=failing failed to log" in warnings[0]
    assert "No space left on device" in warnings[0]
    assert [e.value for e in _scalars_of(tmp_path).Scalars("dev/score/a")] == [1.0, 2.0]


def test_a_tracker_that_cannot_start_stops_the_run_before_training(tmp_path):
    """A ConfigError, which the command prints as its one line (test_cli.py)."""
    from hydra import compose, initialize_config_dir

    from mtlrun.config import register_configs
    from mtlrun.errors import ConfigError
    from mtlrun.experiment import run_experiment
    from mtlrun.paths import config_dir

    register_configs()
    bad = "sqlite:////nonexistent-dir/store.db"
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, "logger=mlflow",
                                           f"logger.mlflow.tracking_uri={bad}",
                                           f"cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(f"logger=mlflow: {bad}: ")):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # stopped before training


@pytest.mark.parametrize(("args", "message"), [
    (["logger=tensorbord"], "logger=tensorbord: no such option (did you mean tensorboard?)"),
    (["logger.mlflow.experiment=x"], "the mlflow logger is off; turn it on with logger=mlflow"),
    (["logger=mlflow", "logger.mlflow.experimnt=x"], "has no key 'experimnt' (did you mean "
                                                     "experiment?)"),
    (["logger.mlfow.experiment=x"], "logger has no key 'mlfow' (did you mean mlflow?)"),
])  # fmt: skip
def test_a_misspelt_or_off_logger_key_is_refused(args, message):
    from mtlrun.errors import ConfigError
    from mtlrun.overrides import check_overrides

    with pytest.raises(ConfigError, match=re.escape(message)):
        check_overrides(args)
    check_overrides(["logger=all", "logger.mlflow.experiment=x"])  # on: accepted
