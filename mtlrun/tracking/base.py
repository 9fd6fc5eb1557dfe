"""What every experiment tracker provides. The trainer never calls a tracker directly: it
writes metrics.jsonl, and `Trackers` (tracking/__init__.py) passes the same records on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar


def first_line(e: BaseException) -> str:
    """An exception's message in one line (libraries' messages run to paragraphs)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class Tracker:
    name: ClassVar[str]  # the logger group's option and the key under `logger:`
    Config: ClassVar[type]  # its settings, a dataclass (conf/logger/<name>.yaml fills it)

    def __init__(self, cfg: Any, run_dir: Path, overrides: list[str], params: dict[str, Any]):
        """Check that the tracker can work (its package is installed, ...); raise MtlrunError."""
        self.cfg, self.run_dir, self.overrides, self.params = cfg, run_dir, overrides, params

    @property
    def run_name(self) -> str:
        """The run's overrides (`scheduler=qls seed=2`), else its directory's name."""
        return " ".join(self.overrides) or self.run_dir.name

    def start(self, resume_step: int | None) -> None:
        """Begin a new run (None), or continue one whose records after `resume_step` are void."""

    def where(self) -> str:
        """One line for the log once started: where to look at the run."""
        return self.name

    def log(self, step: int, values: dict[str, float]) -> None:
        """Scalars of one evaluation (tracking/scalars.py names them)."""

    def close(self, status: str) -> None:
        """ "FINISHED", "FAILED" or "KILLED" (interrupted or preempted: it may be resumed)."""
