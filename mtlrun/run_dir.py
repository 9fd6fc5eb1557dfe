"""A run directory's integrity: one writer at a time, another run's results never silently
replaced, and a resume that continues exactly the experiment the directory holds.

- `RunLock`: an advisory `flock` on `<run>/.lock`, which also records the owner's pid and host
  for the refusal message. The kernel drops the lock when the process dies (even on SIGKILL),
  so a killed run never leaves a stale lock behind.
- `run.json` (the manifest), written when a run starts: the command-line overrides, and the
  SHA-256 of `config.yaml` (the resolved config the run trains with). A resume composes the
  saved overrides, lays the saved values over them, and refuses a directory whose manifest or
  config is missing or whose config was edited.
- `hydra_subdir` keeps Hydra from rewriting `<run>/.hydra/` when a command points at a
  directory that already holds a run: a resume, or a new run that will be refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mtlrun.atomic import write_text_atomic
from mtlrun.errors import MtlrunError, RunDirRefused

log = logging.getLogger("mtlrun")

MANIFEST = "run.json"
LAST = Path("checkpoints") / "last.pt"  # a resume continues from here
CONFIG = "config.yaml"
LOCK = ".lock"
# what a run writes; a new run with trainer.overwrite=true removes these first, so a kill
# halfway never leaves the old results beside the new config
RUN_FILES = (MANIFEST, CONFIG, "results.json", "results.csv", "results.md", "metrics.jsonl",
             "schedule.csv", "policy.pt", "learning.json", "error.txt", "checkpoints",
             "plots", "vocab", "tensorboard", "mlflow.json")  # fmt: skip


def holds_run(directory: Path) -> bool:
    """Whether `directory` holds (the start of) an mtlrun run."""
    return (
        (directory / MANIFEST).exists()
        or (directory / "results.json").exists()
        or (directory / LAST).exists()
    )


def hydra_subdir(resume: str | None, overwrite: bool, output_dir: str) -> str | None:
    """hydra.output_subdir: None (Hydra saves nothing) when the job directory already holds a
    run that this command must not touch (a resume, or a run a new one will refuse), and in
    every data-parallel rank but 0."""
    from mtlrun.launch import env_rank

    named = resume not in (None, "auto")
    if named or env_rank() > 0 or (not overwrite and holds_run(Path(output_dir))):
        return None
    return ".hydra"


def hydra_run_dir(resume: str | None, default: str) -> str:
    """hydra.run.dir: a resumed run continues in its own directory (its log included);
    trainer.resume=auto continues in the directory the run would have anyway."""
    return str(resume) if resume not in (None, "auto") else default


def register_resolvers() -> None:
    for name, fn in (("mtlrun.hydra_subdir", hydra_subdir), ("mtlrun.run_dir", hydra_run_dir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


class CheckOutputDir(Callback):
    """A Hydra callback (conf/config.yaml): before Hydra creates the run or sweep directory,
    fail in one line when it cannot be created or written, instead of Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        resume = config.trainer.resume
        if resume not in (None, "auto") and not Path(resume).expanduser().is_dir():
            _exit(f"trainer.resume={resume}: not an mtlrun run directory (no such directory)")
        _exit_unless_writable(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_unless_writable(Path(config.hydra.sweep.dir))


def check_writable(directory: Path) -> None:
    """Fail now, not at the first checkpoint, when `directory` cannot be created or written."""
    probe = directory / ".write-probe.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise MtlrunError(f"{directory}: not writable ({e.strerror})") from None


def _exit_unless_writable(directory: Path) -> None:
    try:
        check_writable(directory)
    except MtlrunError as e:
        _exit(str(e))


def _exit(message: str) -> None:
    print(f"mtlrun: error: {message}", file=sys.stderr)
    sys.exit(2)  # SystemExit passes Hydra's error reporter untouched


class RunLock:
    """Held by the one process that writes a run directory, for as long as it writes."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise MtlrunError(f"{self.path.parent}: cannot write the run directory "
                              f"({e.strerror})") from None  # fmt: skip
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirRefused(
                f"{self.path.parent} is in use by {owner}; wait for it to finish, or choose "
                "another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())  # fmt: skip
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: no one locks a dead file
            os.close(self._fd)
            self._fd = None


def config_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def start(directory: Path, cfg: DictConfig, overrides: list[str], overwrite: bool) -> None:
    """Claim `directory` for a new run: refuse one that holds another run's results unless
    told to overwrite (then clear them); save the config and the manifest."""
    if holds_run(directory):
        if not overwrite:
            raise RunDirRefused(
                f"{directory} already holds a run; resume it with trainer.resume={directory}, "
                "choose another hydra.run.dir, or replace it with trainer.overwrite=true"
            )
        for name in RUN_FILES:
            path = directory / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    text = OmegaConf.to_yaml(cfg, resolve=True)
    write_text_atomic(directory / CONFIG, text)
    manifest = {"overrides": overrides, "config_sha256": config_digest(text),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
    write_text_atomic(directory / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    _claimed_here.add(directory.resolve())


_claimed_here: set[Path] = set()  # directories this process started a new run in
HYDRA_ONLY = {".hydra", "mtlrun.log"}  # what Hydra leaves before mtlrun writes anything
STARTED_ONLY = HYDRA_ONLY | {MANIFEST, CONFIG, LOCK, "vocab"}  # + a claim, before training


def discard_failed_start(directory: Path) -> bool:
    """After a new run failed before training (bad data, a refused setting): remove its
    directory when it holds nothing but Hydra's files and this process's own claim, so failed
    attempts leave no empty run directories behind. Never another process's claim, never a
    directory with anything else in it. True when removed."""
    try:
        names = {p.name for p in directory.iterdir()}
        if (directory / "checkpoints").is_dir() and not any((directory / "checkpoints").iterdir()):
            names.discard("checkpoints")  # made by the writability check, still empty
    except OSError:
        return False
    mine = directory.resolve() in _claimed_here
    if not (names <= HYDRA_ONLY or (mine and names <= STARTED_ONLY)):
        return False
    shutil.rmtree(directory, ignore_errors=True)
    parent = directory.parent  # outputs/<date>/ of the default pattern, if now empty
    if len(parent.name) == 10 and parent.name[4] == parent.name[7] == "-":
        with contextlib.suppress(OSError):
            parent.rmdir()
    return True


def check_resumable(directory: Path, checkpoints: bool) -> None:
    """A resume continues from last.pt; say so when there is nothing to continue."""
    if (directory / "results.json").is_file():
        raise MtlrunError(f"{directory} has finished (results.json): there is nothing to resume")
    if (directory / LAST).is_file():
        return
    if not checkpoints:
        raise MtlrunError(
            f"{directory} was run with trainer.checkpoints=false, so it cannot be resumed; "
            "start it again"
        )
    log.warning("%s has no checkpoint yet (stopped before its first evaluation): "
                "training starts again from step 0", directory)  # fmt: skip


def saved_run(directory: Path) -> tuple[list[str], dict[str, Any]]:
    """The overrides a run was started with and its saved (resolved) config, checked against
    the manifest."""
    manifest_path, config_path = directory / MANIFEST, directory / CONFIG
    if not directory.is_dir():
        raise MtlrunError(f"trainer.resume={directory}: not an mtlrun run directory (no such "
                          "directory)")  # fmt: skip
    if not manifest_path.is_file():
        raise MtlrunError(
            f"trainer.resume={directory}: not an mtlrun run directory (no {MANIFEST})"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        overrides, digest = list(manifest["overrides"]), manifest["config_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MtlrunError(f"{manifest_path}: unreadable run manifest ({e})") from None
    if not config_path.is_file():
        raise MtlrunError(f"{config_path} is missing: the run cannot be resumed as it was")
    text = config_path.read_text()
    if config_digest(text) != digest:
        raise MtlrunError(
            f"{config_path} was changed after the run started; a resumed run keeps its own "
            "configuration: restore the file, or start a new run"
        )
    return overrides, OmegaConf.to_container(OmegaConf.create(text))
