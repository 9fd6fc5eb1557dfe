"""logger=mlflow: one MLflow run per mtlrun run, in a local store (no server, no account). The
run's settings are its parameters, every number of metrics.jsonl a metric, and its tag
`mtlrun.run_dir` points at the run directory. A resumed run continues the same MLflow run
(the id is kept in <run dir>/mlflow.json). A finished run's result files and plots are its
artifacts."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlrun.atomic import write_text_atomic
from mtlrun.errors import ConfigError
from mtlrun.tracking.base import Tracker, first_line

RUN_FILE = "mlflow.json"
BATCH = {"params": 100, "metrics": 1000}  # MLflow's limits per log_batch request
# what a finished run uploads; not the checkpoints (megabytes each: the run dir has them)
ARTIFACTS = ("results.json", "results.md", "results.csv", "config.yaml", "plots")


def default_uri() -> str:
    """$MLFLOW_TRACKING_URI, else an SQLite store in the directory mtlrun was started from
    (one store for a sweep's runs; MLflow no longer accepts a plain ./mlruns folder)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


@contextlib.contextmanager
def _one_writer_creating(uri: str):
    """Runs of a sweep starting at once: one creates the SQLite store's tables at a time. The
    lock is the database file's own flock (SQLite locks with fcntl, which flock leaves alone;
    an empty file is an empty database)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    with open(uri.removeprefix("sqlite:///"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


class MLflowTracker(Tracker):
    name = "mlflow"

    @dataclass
    class Config:
        tracking_uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db
        experiment: str = "mtlrun"  # the MLflow experiment the run is filed under

    def __init__(self, cfg: Any, run_dir, overrides: list[str], params: dict[str, Any]) -> None:
        super().__init__(cfg, run_dir, overrides, params)
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("logger=mlflow needs MLflow: "
                              "pip install 'mtlrun[tracking]'") from None  # fmt: skip
        for quiet in ("mlflow", "alembic"):  # store set-up chatter
            logging.getLogger(quiet).setLevel(logging.WARNING)
        self.uri = cfg.tracking_uri or default_uri()
        self._client_class, self.client, self.run_id = MlflowClient, None, None

    def start(self, resume_step: int | None) -> None:
        saved = self.run_dir / RUN_FILE
        try:
            with _one_writer_creating(self.uri):
                self.client = self._client_class(self.uri)
                if resume_step is not None and saved.is_file():
                    self.run_id = json.loads(saved.read_text())["run_id"]
                    self.client.update_run(self.run_id, status="RUNNING")
                    return
                self.run_id = self._create_run()
        except Exception as e:  # a bad URI, an unreadable store: before training, one line
            raise ConfigError(f"logger=mlflow: {self.uri}: {first_line(e)}") from None
        write_text_atomic(saved, json.dumps({"tracking_uri": self.uri, "run_id": self.run_id}))

    def where(self) -> str:
        return f"run {self.run_id} of experiment {self.cfg.experiment!r} in {self.uri}"

    def _create_run(self) -> str:
        from mlflow.entities import Param

        name = self.cfg.experiment
        found = self.client.get_experiment_by_name(name)
        experiment = found.experiment_id if found else self.client.create_experiment(name)
        tags = {"mtlrun.run_dir": str(self.run_dir.resolve())}
        run_id = self.client.create_run(experiment, run_name=self.run_name, tags=tags).info.run_id
        params = [Param(k, str(v)) for k, v in self.params.items()]
        for i in range(0, len(params), BATCH["params"]):
            self.client.log_batch(run_id, params=params[i : i + BATCH["params"]])
        return run_id

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), BATCH["metrics"]):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + BATCH["metrics"]])

    def close(self, status: str) -> None:
        if self.run_id is None:
            return
        try:
            if status == "FINISHED":
                self._log_artifacts()
        finally:  # the status is set even if an upload fails (that is a warning)
            self.client.set_terminated(self.run_id, status)

    def _log_artifacts(self) -> None:
        for name in ARTIFACTS:
            path = self.run_dir / name
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))
