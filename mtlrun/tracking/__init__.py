"""Experiment trackers: `logger=tensorboard`, `logger=mlflow` or `logger=all` (conf/logger/).
They mirror metrics.jsonl, which stays the run's record: each evaluation's records go to every
tracker as named scalars (tracking/scalars.py). A tracker that cannot start stops the run
before training, in one line; one that fails later is dropped with a warning, and the run goes
on. A new tracker is a module with a `Tracker` subclass, listed in TRACKERS and LoggerConfig."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mtlrun.errors import Preempted
from mtlrun.tracking.base import Tracker, first_line
from mtlrun.tracking.mlflow import MLflowTracker
from mtlrun.tracking.scalars import params, scalars, tag
from mtlrun.tracking.tensorboard import TensorBoardTracker

log = logging.getLogger("mtlrun")

TRACKERS: dict[str, type[Tracker]] = {t.name: t for t in (TensorBoardTracker, MLflowTracker)}


@dataclass
class LoggerConfig:
    """The chosen trackers' settings; a tracker left at None is off."""

    tensorboard: TensorBoardTracker.Config | None = None
    mlflow: MLflowTracker.Config | None = None


class Trackers:
    """The run's trackers, fed the records metrics.jsonl gets."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.live = list(trackers)

    def start(self, resume_step: int | None) -> None:
        for t in self.live:
            t.start(resume_step)  # a failure here is the user's to fix: it stops the run
            log.info("logger=%s: %s", t.name, t.where())

    def records(self, records: list[dict[str, Any]]) -> None:
        if self.live and records:
            step, values = scalars(records)
            self._each("log", lambda t: t.log(step, values))

    def results(self, results: dict[str, Any], step: int) -> None:
        """What only results.json knows: the held-out task's transfer score."""
        transfer = results.get("transfer")
        if self.live and transfer and transfer.get("score") is not None:
            value = {tag("transfer/score", transfer["task"]): float(transfer["score"])}
            self._each("log", lambda t: t.log(step, value))

    def close(self, status: str) -> None:
        self._each("close", lambda t: t.close(status))
        self.live.clear()

    def _each(self, what: str, call) -> None:
        for t in list(self.live):
            try:
                call(t)
            except Exception as e:  # tracking is a mirror: it never costs the run
                self.live.remove(t)
                log.warning("logger=%s failed to %s (%s: %s); the run goes on without it "
                            "(metrics.jsonl has every number)", t.name, what,
                            type(e).__name__, first_line(e))  # fmt: skip


def run_overrides(run_dir: Path) -> list[str]:
    """The overrides the run was started with (`["scheduler=qls", "seed=2"]`)."""
    try:
        return list(json.loads((run_dir / "run.json").read_text())["overrides"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


@contextlib.contextmanager
def open_trackers(c: Any, run_dir: Path, main: bool = True) -> Iterator[Trackers]:
    """The trackers `c.logger` chooses (none off rank 0); closed with the run's outcome."""
    chosen = [(f.name, getattr(c.logger, f.name)) for f in fields(c.logger)] if main else []
    chosen = [(name, cfg) for name, cfg in chosen if cfg is not None]
    if not chosen:
        yield Trackers([])
        return
    overrides, values = run_overrides(run_dir), params(c)
    trackers = Trackers([TRACKERS[n](cfg, run_dir, overrides, values) for n, cfg in chosen])
    status = "FAILED"
    try:
        yield trackers
        status = "FINISHED"
    except (KeyboardInterrupt, Preempted, SystemExit):
        status = "KILLED"  # interrupted, preempted or requeued: it may be resumed
        raise
    finally:
        trackers.close(status)
