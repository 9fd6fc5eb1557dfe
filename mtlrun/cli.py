"""The `mtlrun` command: Hydra composes the config, `run_experiment` does the rest.

Every failure a user can cause ends with one line on stderr and a non-zero exit status, never a
traceback: MtlrunError (exit 2), an operating-system error such as a full disk or a denied
permission (exit 2, the path and the cause), and Ctrl-C (exit 130, with the resume command).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mtlrun import run_dir as rundir
from mtlrun.atomic import write_text_atomic
from mtlrun.config import register_configs
from mtlrun.errors import MtlrunError, RunDirRefused
from mtlrun.experiment import run_experiment
from mtlrun.paths import config_dir

log = logging.getLogger("mtlrun")
register_configs()
rundir.register_resolvers()


def resume_target(cfg: DictConfig) -> tuple[DictConfig, Path, list[str]]:
    """The config and directory of the run named by trainer.resume: its saved overrides
    composed, then its saved values laid over them, so the continued run is the same
    experiment even if mtlrun's defaults changed since."""
    run_dir = Path(cfg.trainer.resume).expanduser()
    original, saved = rundir.saved_run(run_dir)
    given = [o for o in HydraConfig.get().overrides.task if not o.startswith("trainer.resume=")]
    extra = sorted(set(given) - set(original))
    if extra:
        raise MtlrunError(
            f"a resumed run keeps its own configuration; drop {' '.join(extra)} "
            f"(the run was started with: {' '.join(original) or 'no overrides'})"
        )
    try:
        composed = OmegaConf.merge(compose(config_name="config", overrides=original), saved)
    except OmegaConfBaseException as e:
        raise MtlrunError(
            f"{run_dir / rundir.CONFIG} does not fit this version of mtlrun "
            f"({str(e).splitlines()[0]})"
        ) from None
    return composed, run_dir, original


class SweepJobFailed(CompactHydraException):
    """A multirun job's failure: Hydra lets the other jobs finish, then prints this message."""


def _run(cfg: DictConfig, job_dir: Path) -> dict:
    if cfg.trainer.resume:
        cfg, run_dir, overrides = resume_target(cfg)
        return run_experiment(cfg, run_dir, resume=True, overrides=overrides)
    overrides = list(HydraConfig.get().overrides.task)
    return run_experiment(cfg, job_dir, overrides=overrides)


def _describe(e: BaseException, run_dir: Path) -> tuple[str, int] | None:
    """(one-line message, exit status) for a failure the user can cause; None for a bug."""
    if isinstance(e, MtlrunError):
        return str(e), 2
    if isinstance(e, KeyboardInterrupt):
        return f"interrupted; continue with: mtlrun trainer.resume={run_dir}", 130
    if isinstance(e, OSError):  # a full disk, a denied permission, a vanished file
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or e}", 2
    return None


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        results = _run(cfg, job_dir)
        return results["aggregate"]["dev"]  # a sweeper can optimise this
    except BaseException as e:
        described = _describe(e, Path(cfg.trainer.resume or job_dir))
        if described is None:
            message = f"{type(e).__name__}: {e}"
        else:
            message, status = described
        if hydra_cfg.mode != RunMode.MULTIRUN or isinstance(e, KeyboardInterrupt):
            if described is None:
                raise
            print(f"mtlrun: error: {message}", file=sys.stderr)
            sys.exit(status)
        # In a sweep, record why this job failed (mtlrun-report lists it) and let the others
        # run; never into a directory that belongs to another run.
        if not isinstance(e, RunDirRefused):
            write_text_atomic(job_dir / "error.txt", message + "\n")
        overrides = " ".join(hydra_cfg.overrides.task)
        print(f"mtlrun: error in job {hydra_cfg.job.num} ({overrides}): {message}", file=sys.stderr)
        if described is not None:
            raise SweepJobFailed(
                f"mtlrun: error: job {hydra_cfg.job.num} failed: {message}"
            ) from None
        raise


def main() -> None:
    _main()
