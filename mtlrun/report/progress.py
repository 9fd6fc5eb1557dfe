"""What the user sees while training: a rich progress bar on a terminal, else plain log lines."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger("mtlrun")


class ProgressDisplay:
    def __init__(
        self, total: int, task_names: list[str], enabled: bool = True, label: str = "train"
    ) -> None:
        """`label`: "train", or "learn" for a policy-learning phase (QLS), whose `note` shows
        episode, temperature and reward instead of the dev score."""
        self.total = total
        console = Console(stderr=True)
        self.live = enabled and console.is_terminal
        self._bar = None
        if self.live:
            self._bar = Progress(
                TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("task [cyan]{task.fields[current]:<12}"),
                TextColumn("{task.fields[note]}"), TimeRemainingColumn(),
                console=console, transient=False,
            )  # fmt: skip

    def __enter__(self) -> ProgressDisplay:
        self._rerouted: list[tuple[logging.StreamHandler, object]] = []
        if self._bar is not None:
            originals = sys.stdout, sys.stderr
            self._bar.start()  # replaces sys.stdout / sys.stderr by proxies that print above it
            self._reroute_console_logs(originals)
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
        for handler, stream in self._rerouted:
            handler.setStream(stream)

    def _reroute_console_logs(self, originals: tuple) -> None:
        """Console log handlers hold the streams from before the bar: point them at the bar's
        proxies, so a log line prints above the bar instead of gluing onto it."""
        for handler in logging.getLogger().handlers + log.handlers:
            if type(handler) is logging.StreamHandler and handler.stream in originals:
                proxy = sys.stdout if handler.stream is originals[0] else sys.stderr
                self._rerouted.append((handler, handler.setStream(proxy)))

    def start(self, step: int) -> None:
        if self._bar is not None:
            self._id = self._bar.add_task("train", total=self.total, completed=step,
                                          current="-", note="")  # fmt: skip

    def advance(self, task_name: str) -> None:
        if self._bar is not None:
            self._bar.update(self._id, advance=1, current=task_name)

    def evaluated(
        self, step: int, aggregate: float, scores: dict[str, float],
        train_losses: dict[str, float | None] | None = None,
    ) -> None:  # fmt: skip
        """The bar's note, and one log line with every task's dev score and its mean training
        loss since the last evaluation (terminal and mtlrun.log)."""
        if self._bar is not None:
            self._bar.update(self._id, note=f"dev {100 * aggregate:.2f}")
        per_task = " ".join(f"{n}={100 * s:.1f}" for n, s in scores.items())
        losses = " ".join(f"{n}={v:.3f}" for n, v in (train_losses or {}).items() if v is not None)
        log.info("step %d/%d  dev aggregate %.2f  %s%s", step, self.total, 100 * aggregate,
                 per_task, f"  | train loss {losses}" if losses else "")  # fmt: skip

    def note(self, text: str) -> None:
        """A status line next to the bar (terminal only; plain logs get one line per episode)."""
        if self._bar is not None:
            self._bar.update(self._id, note=text)
