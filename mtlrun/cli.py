"""The `mtlrun` command: Hydra composes the config, `run_experiment` does the rest.

User mistakes (MtlrunError) end with one line on stderr and exit status 2, never a traceback.
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

from mtlrun.atomic import write_text_atomic
from mtlrun.config import register_configs
from mtlrun.errors import MtlrunError
from mtlrun.experiment import run_experiment
from mtlrun.paths import config_dir

log = logging.getLogger("mtlrun")
register_configs()


def resume_target(cfg: DictConfig) -> tuple[DictConfig, Path]:
    """The config and directory of the run named by trainer.resume, composed from its own
    overrides, so the continued run is the same experiment."""
    run_dir = Path(cfg.trainer.resume).expanduser()
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        raise MtlrunError(
            f"trainer.resume={run_dir}: not an mtlrun run directory (no {overrides_file})"
        )
    original = [str(o) for o in OmegaConf.load(overrides_file)]
    given = [o for o in HydraConfig.get().overrides.task if not o.startswith("trainer.resume=")]
    extra = sorted(set(given) - set(original))
    if extra:
        raise MtlrunError(
            f"a resumed run keeps its own configuration; drop {' '.join(extra)} "
            f"(the run was started with: {' '.join(original) or 'no overrides'})"
        )
    return compose(config_name="config", overrides=original), run_dir


class SweepJobFailed(CompactHydraException):
    """A multirun job's failure: Hydra lets the other jobs finish, then prints this message."""


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        if cfg.trainer.resume:
            cfg, run_dir = resume_target(cfg)
            results = run_experiment(cfg, run_dir, resume=True)
        else:
            results = run_experiment(cfg, job_dir)
        return results["aggregate"]["dev"]  # a sweeper can optimise this
    except Exception as e:
        user_error = isinstance(e, MtlrunError)
        message = str(e) if user_error else f"{type(e).__name__}: {e}"
        if hydra_cfg.mode != RunMode.MULTIRUN:
            if not user_error:
                raise
            print(f"mtlrun: error: {message}", file=sys.stderr)
            sys.exit(2)
        # In a sweep, record why this job failed (mtlrun-report lists it) and let the others run.
        write_text_atomic(job_dir / "error.txt", message + "\n")
        overrides = " ".join(hydra_cfg.overrides.task)
        print(f"mtlrun: error in job {hydra_cfg.job.num} ({overrides}): {message}", file=sys.stderr)
        if user_error:
            raise SweepJobFailed(
                f"mtlrun: error: job {hydra_cfg.job.num} failed: {message}"
            ) from None
        raise


def main() -> None:
    _main()
