"""One run, start to end: tasks -> model -> scheduler -> optimizer -> trainer -> result files.

A data-parallel run (hardware.devices × hardware.nodes > 1) does the same in every rank
(launch.py starts them); rank 0 claims the run directory and writes the results."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mtlrun import atomic, launch
from mtlrun import run_dir as rundir
from mtlrun.atomic import write_text_atomic
from mtlrun.config import validate
from mtlrun.errors import ConfigError, DataError
from mtlrun.kinds import kind_of
from mtlrun.models import build_model, uses_subwords
from mtlrun.models.embeddings import pretrained_words
from mtlrun.report.plots import plot_run_quietly
from mtlrun.report.results import print_results, write_results
from mtlrun.schedulers import (
    Scheduler,
    StepMode,
    TaskInfo,
    build_scheduler,
    resolve_step_mode,
    scheduler_class,
)
from mtlrun.tasks import Kind, Task, load_tasks
from mtlrun.tasks.bpe import BpeEncoder
from mtlrun.tasks.encode import EncodedTask, WordEncoder, check_cache_writable, encode_tasks
from mtlrun.threads import auto_threads
from mtlrun.tracking import Trackers, open_trackers
from mtlrun.training.batches import count_batches
from mtlrun.training.optimizers import TaskOptimizers, resolve_layout
from mtlrun.training.parallel_learning import episode_seed, learn_policy_parallel
from mtlrun.training.policy_learning import learn_policy
from mtlrun.training.runtime import Runtime
from mtlrun.training.trainer import Trainer
from mtlrun.training.transfer import encode_held_out, hold_out, transfer

log = logging.getLogger("mtlrun")


def select_tasks(tasks: list[Task], names: list[str] | None) -> list[Task]:
    if names is None:
        return tasks
    by_name = {t.name: t for t in tasks}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(
            f"scheduler.task={unknown[0]} is not a task of this suite; "
            f"choose one of: {', '.join(by_name)}"
        )
    return [by_name[n] for n in names]


def check_task_dropout(c: Any, suite: list[str]) -> None:
    """model.decoder.task_dropout may name any task of the suite: a preset's setting for a pair
    that this run leaves out (a single-task baseline, a held-out task) does not apply; a name
    that is no task of the suite is a mistake."""
    named = getattr(getattr(c.model, "decoder", None), "task_dropout", None) or {}
    for name in named:
        if name not in suite:
            raise ConfigError(f"model.decoder.task_dropout.{name}: no task {name!r} in this "
                              f"suite; its tasks are {', '.join(suite)}")  # fmt: skip


def run_tasks(c: Any) -> tuple[list[Task], Task | None]:
    """The tasks the run trains (its scheduler's subset, less transfer.task), and the task held
    out for transfer (None without one)."""
    suite = load_tasks(c.tasks, c.seed, c.data_dir)
    check_task_dropout(c, [t.name for t in suite])
    trained, held = hold_out(suite, c.transfer.task)
    return select_tasks(trained, scheduler_class(c.scheduler.name).task_subset(c.scheduler)), held


def device_for(hw) -> torch.device:
    device = torch.device(hw.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"hardware.device={hw.device} but this torch has no usable CUDA device; "
            "use hardware=cpu, or install a CUDA build of torch"
        )
    if hw.num_threads > 0:
        torch.set_num_threads(hw.num_threads)
    else:  # torch's default (every core) crawls when other work shares the machine
        choice = auto_threads(processes=hw.devices)
        torch.set_num_threads(choice.threads)
        log.info("torch threads: %d (%s; hardware.num_threads=N to choose)", choice.threads,
                 choice.why)  # fmt: skip
    return device


@dataclass
class Prepared:
    """What the learning episodes and the run share: data, vocabulary, scheduler, device."""

    tasks: list[Task]
    encoded: list[EncodedTask]
    vocab: list[str] | None  # word vocabulary (None: the model's own subwords)
    scheduler: Scheduler
    step_mode: StepMode
    device: torch.device
    held_out: EncodedTask | None = None  # transfer.task, kept out of training


def check_unique_names(tasks: list[Task]) -> None:
    """Results, logs and checkpoints are keyed by task name: a repeated task would vanish."""
    seen: set[str] = set()
    for t in tasks:
        if t.name in seen:
            raise ConfigError(f"task {t.name} is listed twice; each task may appear once")
        seen.add(t.name)


def check_splits(tasks: list[Task]) -> None:
    for t in tasks:
        empty = [s for s in ("train", "dev", "test") if len(t.split(s)) == 0
                 and not (s == "dev" and t.missing_dev)]  # fmt: skip
        if empty:
            raise DataError(
                f"task {t.name} has no {' and no '.join(empty)} examples; "
                "check its files (or the tasks.* settings that split them)"
            )


def encode(c: Any, tasks: list[Task]) -> tuple[list[EncodedTask], list[str] | None]:
    """Token ids of every split, and the vocabulary: words, or subwords learned on the
    training texts (None for a pretrained subword model, which brings its own)."""
    encoder = text_encoder(c, tasks)
    encoded = encode_tasks(tasks, encoder, c.cache_dir)
    return encoded, getattr(encoder, "vocab", None)


def text_encoder(c: Any, tasks: list[Task]):
    """The run's text encoder, not yet fitted: a pretrained model's subwords, a joint BPE, or
    a word vocabulary."""
    if uses_subwords(c.model):
        if any(t.kind == Kind.SEQ2SEQ for t in tasks):
            raise ConfigError(
                f"model={c.model.name}: seq2seq tasks need a decoder, which pretrained encoders "
                "do not have here; use model=lstm or model=transformer"
            )
        from mtlrun.tasks.subwords import SubwordEncoder

        if c.optimizer.lr > 1e-4:
            log.warning(
                "optimizer.lr=%g fine-tunes a pretrained encoder, which usually needs about "
                "2e-5: optimizer=adamw_bert sets AdamW at 2e-5",
                c.optimizer.lr,
            )
        return SubwordEncoder(c.model.name, c.model.max_length)
    if c.model.vocab.subwords:  # a joint BPE vocabulary learned on the training texts
        return BpeEncoder(c.model.vocab.subwords, c.model.max_length)
    emb = c.model.embeddings
    return WordEncoder(c.model.vocab, c.model.max_length, emb.path,
                       lambda: pretrained_words(emb))  # fmt: skip


def prepare(c: Any, runtime: Runtime | None = None) -> Prepared:
    """Tasks -> vocabulary and encoded splits -> scheduler (its step mode checked)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    rt = runtime or Runtime()
    device = device_for(c.hardware)  # checked, and torch's threads set
    if rt.distributed:
        device = rt.device  # this rank's: cuda:<local rank> on a GPU
    check_cache_writable(c.cache_dir)  # before loading data, not after
    tasks, held = run_tasks(c)
    check_unique_names(tasks)
    check_splits(tasks)
    first: list = []  # rank 0 encodes first (and fills the cache the other ranks then read)
    rt.on_main(lambda: first.append(encode(c, tasks)))
    encoded, vocab = first[0] if first else encode(c, tasks)
    held_out = encode_held_out(held, encoded) if held is not None else None
    infos = [
        TaskInfo(name=t.task.name, n_train=len(t.splits["train"]),
                 n_train_batches=count_batches(t.splits["train"].batch_lengths,
                                               c.trainer.batch_size, c.trainer.bucket_batches,
                                               c.trainer.max_tokens),
                 metric_name=t.task.metric.value, loss_kind=t.task.kind.value,
                 num_labels=kind_of(t.task).classes(t),
                 n_dev=len(t.splits["dev"]),
                 is_primary=t.task.primary)
        for t in encoded
    ]  # fmt: skip
    scheduler = build_scheduler(c.scheduler, infos, c.trainer.max_steps, c.seed)
    step_mode = resolve_step_mode(scheduler, c.trainer.step_mode)
    check_hardware(c, scheduler, rt)
    check_kinds(c, encoded)
    return Prepared(tasks, encoded, vocab, scheduler, step_mode, device, held_out)


def check_kinds(c: Any, encoded: list[EncodedTask]) -> None:
    """Settings that name tasks which are not there, and what this scheduler cannot measure on
    these tasks, said before training."""
    decoder = getattr(c.model, "decoder", None)
    sharing = [t.task.name for t in encoded
               if t.task.kind == Kind.SEQ2SEQ and not t.task.label_names]  # fmt: skip
    if decoder is not None and decoder.sharing == "shared" and len(sharing) > 1:
        log.warning("model.decoder.sharing=shared: %s share one decoder, and nothing tells it "
                    "which task it writes for (no target-language token); fine for outputs in "
                    "one language, else use model.decoder.sharing=per_task",
                    ", ".join(sharing))  # fmt: skip
    if (c.trainer.select_by == "primary" and len(encoded) > 1
            and not any(t.task.primary for t in encoded)):  # fmt: skip
        raise ConfigError("trainer.select_by=primary: none of these tasks is marked primary; "
                          "use trainer.select_by=mean")  # fmt: skip
    if getattr(c.scheduler, "mc_samples", 0) > 0:
        for t in encoded:
            if not kind_of(t.task).mc_signals:
                raise ConfigError(
                    f"scheduler={c.scheduler.name} samples MC-dropout output distributions, "
                    f"which {t.task.kind.value} tasks ({t.task.name}) do not keep whole; "
                    "choose another scheduler"
                )


def check_hardware(c: Any, scheduler: Scheduler, rt: Runtime) -> None:
    """What this scheduler cannot do on this hardware, said before training."""
    if c.hardware.precision == "fp16" and type(scheduler).custom_backward is not (
        Scheduler.custom_backward
    ):
        raise ConfigError(
            f"scheduler={c.scheduler.name} runs its own backward pass, which fp16 loss scaling "
            "does not cover; use hardware.precision=bf16"
        )
    if rt.distributed and scheduler.learning_plan() is not None:
        raise ConfigError(
            f"scheduler={c.scheduler.name} learns its policy in one process: learn it without "
            "hardware.devices, then train data-parallel with scheduler.policy=<its policy.pt>"
        )


def make_trainer(
    c: Any, p: Prepared, run_dir: Path, episode: bool = False, display=None,
    runtime: Runtime | None = None, trackers: Trackers | None = None,
) -> Trainer:  # fmt: skip
    """A freshly initialised model (seeded by c.seed) and its optimizers, in a Trainer."""
    model = build_model(c.model, p.vocab, p.tasks, c.seed).to(p.device)
    if c.hardware.compile:
        model.encoder.compile()  # in place: state_dict keys (checkpoints) stay the same
    layout, scale_mode = resolve_layout(c.optimizer, p.scheduler.category, p.step_mode)
    optimizers = TaskOptimizers(
        c.optimizer,
        shared=model.shared_parameters(),
        heads=[model.task_parameters(k) for k in range(len(model.heads))],
        extra=p.scheduler.extra_parameters(),
        layout=layout,
        scale_mode=scale_mode,
        d_model=model.encoder.output_size,
        total_steps=c.trainer.max_steps,
    )
    if not episode:
        words = f"{len(p.vocab)} vocabulary words" if p.vocab else f"model {c.model.name}"
        log.info("%d tasks (%s), %s, %d parameters, scheduler %s (%s step mode, %s optimizer "
                 "layout)", len(p.tasks), ", ".join(t.name for t in p.tasks), words,
                 sum(q.numel() for q in model.parameters()), c.scheduler.name,
                 p.step_mode.value, layout)  # fmt: skip
    return Trainer(c, p.encoded, model, p.scheduler, p.step_mode, optimizers, run_dir, p.device,
                   episode=episode, display=display, runtime=runtime,
                   trackers=trackers)  # fmt: skip


def build_trainer(c: Any, run_dir: Path) -> Trainer:
    """The run's trainer, for schedulers without a learning phase (benchmarks, tests)."""
    return make_trainer(c, prepare(c), run_dir)


def learn(c: Any, p: Prepared, run_dir: Path, resume: bool) -> dict[str, float]:
    """The scheduler's learning phase (QLS), if it has one; each episode's model and data order
    are seeded from (seed, episode), so they differ from each other and from the run's. With
    scheduler.parallel_episodes = N > 1, N episodes train at once as model replicas."""
    if p.scheduler.learning_plan() is None:
        return {}
    saved_policy, timing_file = run_dir / "policy.pt", run_dir / "learning.json"
    if resume and saved_policy.is_file():  # the learning phase finished before the interruption
        p.scheduler.load_policy(saved_policy)
        return json.loads(timing_file.read_text()) if timing_file.is_file() else {}

    def episode_trainer(e: int, display) -> Trainer:
        ce = dataclasses.replace(c, seed=episode_seed(c.seed, e))
        return make_trainer(ce, p, run_dir, episode=True, display=display)

    if getattr(p.scheduler.cfg, "parallel_episodes", 1) > 1:
        timing = learn_policy_parallel(c, p, run_dir, c.trainer.progress)
    else:
        timing = learn_policy(p.scheduler, episode_trainer, run_dir, c.trainer.progress)
    write_text_atomic(timing_file, json.dumps(timing))
    return timing


def run_experiment(
    cfg: DictConfig,
    run_dir: Path,
    resume: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
    runtime: Runtime | None = None,
) -> dict[str, Any] | None:
    """Run (or resume) the experiment `cfg` in `run_dir`, which this process holds locked.
    `runtime`: this process's rank when torchrun or SLURM started every rank (launch.py);
    the results on rank 0, None on the others."""
    c = validate(cfg)
    if runtime is not None and runtime.distributed:
        return _run_ranked(c, cfg, run_dir, resume, list(overrides), runtime)
    with rundir.RunLock(run_dir):
        _claim(c, cfg, run_dir, resume, list(overrides))
        if c.hardware.world_size == 1:
            return _run(c, run_dir, resume)
        if c.hardware.nodes > 1:
            raise ConfigError(
                "hardware.nodes > 1 needs a launcher that starts the processes on every node: "
                "hydra/launcher=slurm, or torchrun"
            )
        launch.spawn(_run, (c, run_dir, resume), c.hardware, _logging_config())
        return json.loads((run_dir / "results.json").read_text())


def _claim(c: Any, cfg: DictConfig, run_dir: Path, resume: bool, overrides: list[str]) -> None:
    """Start a new run in `run_dir`, or check that it can be resumed."""
    if resume:
        rundir.check_resumable(run_dir, c.trainer.checkpoints)
    else:
        rundir.start(run_dir, cfg, overrides, c.trainer.overwrite)
    for directory in (run_dir, run_dir / "checkpoints"):
        atomic.remove_stale_temps(directory)  # left by a kill during a write
    if c.trainer.checkpoints:
        rundir.check_writable(run_dir / "checkpoints")


def _run_ranked(c, cfg, run_dir: Path, resume: bool, overrides: list[str], rt: Runtime):
    """Every rank started by torchrun or SLURM: rank 0 locks and claims the directory (its
    refusal stops every rank), then all train."""
    with contextlib.ExitStack() as held:

        def claim() -> None:
            held.enter_context(rundir.RunLock(run_dir))
            _claim(c, cfg, run_dir, resume, overrides)

        rt.on_main(claim)
        return _run(c, run_dir, resume, rt)


def save_vocabulary(encoder, run_dir: Path) -> None:
    """The encoder's vocabulary (or tokenizer) into <run dir>/vocab, so that the run directory
    alone can rebuild its model (mtlrun-eval); written whole or not at all."""
    target = run_dir / "vocab"
    if target.is_dir():  # a resumed run
        return
    tmp = run_dir / ".vocab.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    encoder.save(tmp)
    os.replace(tmp, target)


def _logging_config() -> dict | None:
    """Hydra's logging set-up (console and the run's log file), for spawned rank 0."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    return OmegaConf.to_container(HydraConfig.get().job_logging, resolve=True)


def _run(c: Any, run_dir: Path, resume: bool, runtime: Runtime | None = None) -> dict | None:
    log.info("run directory: %s", run_dir)  # first: where to look while it runs
    p = prepare(c, runtime)
    if runtime is None or runtime.is_main:
        save_vocabulary(p.encoded[0].encoder, run_dir)
    learning = learn(c, p, run_dir, resume)
    with open_trackers(c, run_dir, main=runtime is None or runtime.is_main) as trackers:
        trainer = make_trainer(c, p, run_dir, runtime=runtime, trackers=trackers)
        results = trainer.fit(resume=resume)
        if results is None:  # a data-parallel rank other than 0
            return None
        if p.held_out is not None:  # the best model's encoder, frozen
            results["transfer"] = transfer(c, trainer.model.encoder, p.held_out, p.device)
        results["timing"].update(learning)
        results.update(scheduler=c.scheduler.name, seed=c.seed, tasks_suite=c.tasks.name)
        write_results(run_dir, results)
        if c.trainer.plots:  # before the trackers close: MLflow keeps them as artifacts
            plot_run_quietly(run_dir)  # never fails the run: a warning at worst
        trackers.results(results, c.trainer.max_steps)
    print_results(results, run_dir)
    return results
