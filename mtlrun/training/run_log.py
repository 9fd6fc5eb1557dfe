"""The run's logs: `metrics.jsonl` (one line per evaluation and task) and `schedule.csv` (the
task chosen at each step). Schedule rows are buffered in memory and flushed at each evaluation,
keeping file I/O off the training step; a resumed run first cuts both files back to its
checkpoint so they end up identical to an uninterrupted run's. Experiment trackers (logger=...)
get every metrics record too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtlrun import strict_json
from mtlrun.tracking import Trackers


class RunLog:
    def __init__(self, run_dir: Path, trackers: Trackers | None = None) -> None:
        self.metrics_path = run_dir / "metrics.jsonl"
        self.schedule_path = run_dir / "schedule.csv"
        self.trackers = trackers or Trackers([])  # logger=...: fed the same records
        self._pending: list[str] = []

    def start(self, resume_step: int | None) -> None:
        self.trackers.start(resume_step)
        if resume_step is None:
            self.schedule_path.write_text("step,task\n")
            self.metrics_path.write_text("")
            return
        rows = self.schedule_path.read_text().splitlines()
        kept = [rows[0]] + [r for r in rows[1:] if int(r.split(",", 1)[0]) < resume_step]
        self.schedule_path.write_text("\n".join(kept) + "\n")
        lines = self.metrics_path.read_text().splitlines()
        records = [(ln, json.loads(ln)) for ln in lines]
        kept = [ln for ln, r in records if r["step"] <= resume_step and r["split"] == "dev"]
        self.metrics_path.write_text("".join(ln + "\n" for ln in kept))

    def step(self, step: int, trained: list[tuple[str, int]], mode) -> None:
        """SINGLE: the task; ALL: "*"; MIXED: task:examples pairs joined by "|"."""
        if len(trained) == 1 and mode.value == "single":
            self._pending.append(f"{step},{trained[0][0]}\n")
        elif mode.value == "all":
            self._pending.append(f"{step},*\n")
        else:
            self._pending.append(f"{step},{'|'.join(f'{n}:{c}' for n, c in trained)}\n")

    def flush(self) -> None:
        with open(self.schedule_path, "a") as f:
            f.writelines(self._pending)
        self._pending.clear()

    def metrics(self, records: list[dict[str, Any]]) -> None:
        with open(self.metrics_path, "a") as f:
            f.writelines(strict_json.dumps(r) + "\n" for r in records)
        self.trackers.records(records)
