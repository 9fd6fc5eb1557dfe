"""Errors a user can cause. The CLI prints them as one line, never as a traceback."""


class MtlrunError(Exception):
    """A mistake in the configuration, the data or the command line; the message says what to do."""


class ConfigError(MtlrunError):
    """A config value that composes but makes no sense (negative steps, temperature <= 0, ...)."""


class DataError(MtlrunError):
    """Missing or malformed data files."""


class RunDirRefused(MtlrunError):
    """A run directory that belongs to another run, or that another process is writing."""


class Diverged(MtlrunError):
    """Training produced a non-finite loss or gradient (trainer.nonfinite=stop)."""


class Preempted(MtlrunError):
    """The run was asked to stop (SIGTERM, SIGUSR1, SIGUSR2) and saved a checkpoint first."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message, signum)
        self.message, self.signum = message, signum

    def __str__(self) -> str:
        return self.message
