"""Preemption: SIGTERM, SIGUSR1 and SIGUSR2 stop training at the next step boundary, after a
checkpoint, instead of killing it mid-step.

SLURM sends SIGTERM before it kills or requeues a job, and submitit (hydra/launcher=slurm) asks
for SIGUSR2 before the time limit; a cluster's own scripts often use SIGUSR1. While training,
`StopSignals` only records the signal; the trainer checks it after each step (all ranks agree
on the step), writes `checkpoints/last.pt`, and calls `hand_over`: the handler that was
installed before (submitit's, which requeues the job) runs as if the signal had just arrived;
without one the run ends with `Preempted` (exit 128 + signal, the resume command in the
message); in a submitit job it exits without a result instead, so that a Slurm requeue
(SIGTERM at preemption, `scontrol requeue`) is waited for, not reported as a failure. A requeued
job continues from its checkpoint (`trainer.resume=auto`, or SLURM_RESTART_COUNT > 0).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from mtlrun.errors import Preempted

log = logging.getLogger("mtlrun")

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopSignals:
    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # handlers live there only
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum

    def hand_over(self, signum: int, step: int, resume_dir: str) -> None:
        """After the checkpoint: let the previous handler act (requeue), else stop the run."""
        previous = self._previous.get(signum)
        self.__exit__()
        if callable(previous):
            previous(signum, None)  # submitit's handler requeues and exits the job
        name = signal.Signals(signum).name
        message = (f"stopped by {name} at step {step} (checkpoint written); continue with: "
                   f"mtlrun trainer.resume={resume_dir}")  # fmt: skip
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            # Slurm's own preemption (SIGTERM, then requeue): leave no result, so that submitit
            # keeps waiting for the requeued job rather than recording a failure
            log.warning(message)
            raise SystemExit(128 + signum)
        raise Preempted(message, signum)
