"""The `mtlrun` command: Hydra composes the config, `run_experiment` does the rest.

Every failure a user can cause ends with one line on stderr and a non-zero exit status, never a
traceback: MtlrunError (exit 2), an operating-system error such as a full disk or a denied
permission (exit 2, the path and the cause), Ctrl-C (exit 130, with the resume command), and a
stop signal (exit 128 + its number, after a checkpoint, with the resume command).

`trainer.resume=auto`, and every job SLURM requeued (SLURM_RESTART_COUNT > 0), continues the
run its own directory holds, if any.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mtlrun import launch, slurm
from mtlrun import run_dir as rundir
from mtlrun.atomic import write_text_atomic
from mtlrun.config import register_configs
from mtlrun.errors import ConfigError, MtlrunError, Preempted, RunDirRefused
from mtlrun.experiment import run_experiment
from mtlrun.overrides import check_overrides
from mtlrun.paths import config_dir

log = logging.getLogger("mtlrun")
register_configs()
rundir.register_resolvers()
slurm.register_resolvers()  # hydra/launcher=slurm: GPUs per node


def resume_target(cfg: DictConfig, run_dir: Path) -> tuple[DictConfig, Path, list[str]]:
    """The config and directory of the run to resume: its saved overrides composed, then its
    saved values laid over them, so the continued run is the same experiment even if mtlrun's
    defaults (conf/) changed since."""
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


def requeued() -> bool:
    """A SLURM job started again after a preemption or a `scontrol requeue`."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def continues_own_run(cfg: DictConfig) -> bool:
    """trainer.resume=auto, or a requeued SLURM job: continue the job directory's run."""
    return cfg.trainer.resume == "auto" or (cfg.trainer.resume is None and requeued())


def plan_run(cfg: DictConfig, job_dir: Path) -> tuple[DictConfig, Path, bool, list[str]]:
    """(config, run directory, resume?, overrides) of what this command runs."""
    resume = cfg.trainer.resume
    if continues_own_run(cfg):
        resume = str(job_dir) if rundir.holds_run(job_dir) else None
    if resume:
        cfg, run_dir, overrides = resume_target(cfg, Path(resume).expanduser())
        return cfg, run_dir, True, overrides
    return cfg, job_dir, False, list(HydraConfig.get().overrides.task)


def join_world(cfg: DictConfig) -> launch.Runtime | None:
    """This process's rank when torchrun or SLURM started every rank of the run."""
    world = launch.external_world()
    if world is None or world.world_size == 1:
        return None
    explicit = any(o.startswith("hydra.run.dir=") for o in HydraConfig.get().overrides.hydra)
    if world.launcher == "torchrun" and HydraConfig.get().mode == RunMode.RUN and not explicit:
        raise ConfigError(
            "under torchrun every process must write the same run directory: add "
            "hydra.run.dir=<directory>"
        )
    hardware = OmegaConf.to_object(cfg.hardware)
    launch.check_world(world, hardware)
    return launch.init(world, hardware)


def _run(cfg: DictConfig, job_dir: Path) -> dict | None:
    if continues_own_run(cfg) and (job_dir / "results.json").is_file():
        log.info("%s has finished: its results are kept", job_dir)  # e.g. requeued at the end
        return json.loads((job_dir / "results.json").read_text())
    runtime = join_world(cfg)
    # rank 0 decides (the run directory may change under the other ranks while it starts)
    plan = runtime.on_main(lambda: plan_run(cfg, job_dir)) if runtime else plan_run(cfg, job_dir)
    cfg, run_dir, resume, overrides = plan
    return run_experiment(cfg, run_dir, resume=resume, overrides=overrides, runtime=runtime)


def _describe(e: BaseException, run_dir: Path) -> tuple[str, int] | None:
    """(one-line message, exit status) for a failure the user can cause; None for a bug."""
    if isinstance(e, Preempted):
        return str(e), 128 + e.signum
    if isinstance(e, MtlrunError):
        return str(e), 2
    if isinstance(e, KeyboardInterrupt):
        step = getattr(e, "checkpoint_step", None)  # set by the trainer
        saved = f"checkpoint at step {step}" if step is not None else "no training checkpoint yet"
        return f"interrupted ({saved}); continue with: mtlrun trainer.resume={run_dir}", 130
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
        return results["aggregate"]["dev"] if results else None  # a sweeper can optimise this
    except SystemExit:  # e.g. submitit's exit after it requeued a preempted job
        raise
    except BaseException as e:
        resume = cfg.trainer.resume
        described = _describe(e, Path(resume if resume not in (None, "auto") else job_dir))
        if described is None:
            message = f"{type(e).__name__}: {e}"
        else:
            message, status = described
        if hydra_cfg.mode != RunMode.MULTIRUN or isinstance(e, KeyboardInterrupt):
            if described is None:
                raise
            if resume is None and not isinstance(e, (KeyboardInterrupt, Preempted)):
                logging.shutdown()  # close mtlrun.log before its directory may go
                rundir.discard_failed_start(job_dir)
            print(f"mtlrun: error: {message}", file=sys.stderr)
            sys.exit(status)
        # In a sweep, record why this job failed (mtlrun-report lists it) and let the others
        # run; never into a directory that belongs to another run.
        if not isinstance(e, (RunDirRefused, Preempted)):  # a preempted job is not a failed one
            write_text_atomic(job_dir / "error.txt", message + "\n")
        overrides = " ".join(hydra_cfg.overrides.task)
        print(f"mtlrun: error in job {hydra_cfg.job.num} ({overrides}): {message}", file=sys.stderr)
        if described is not None:
            raise SweepJobFailed(
                f"mtlrun: error: job {hydra_cfg.job.num} failed: {message}"
            ) from None
        raise
    finally:
        launch.shutdown()


def main() -> None:
    if {"--help", "-h"} & set(sys.argv[1:]):
        from mtlrun.cli_help import help_text

        print(help_text())
        return
    try:
        check_overrides(sys.argv[1:])
    except ConfigError as e:
        print(f"mtlrun: error: {e}", file=sys.stderr)
        sys.exit(2)
    _main()
