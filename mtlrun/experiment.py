"""One run, start to end: tasks -> model -> scheduler -> optimizer -> trainer -> result files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mtlrun.atomic import write_text_atomic
from mtlrun.config import validate
from mtlrun.errors import ConfigError
from mtlrun.models import build_model
from mtlrun.report.results import print_results, write_results
from mtlrun.schedulers import TaskInfo, build_scheduler, resolve_step_mode, scheduler_class
from mtlrun.tasks import Task, load_tasks
from mtlrun.tasks.encode import encode_tasks
from mtlrun.training.optimizers import TaskOptimizers, resolve_layout
from mtlrun.training.trainer import Trainer

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


def device_for(hw) -> torch.device:
    device = torch.device(hw.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"hardware.device={hw.device} but this torch has no usable CUDA device; "
            "use hardware=cpu, or install a CUDA build of torch"
        )
    if hw.num_threads > 0:
        torch.set_num_threads(hw.num_threads)
    return device


def build_trainer(c: Any, run_dir: Path) -> Trainer:
    """Everything a run needs, in order: tasks -> model -> scheduler -> optimizer -> trainer."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = device_for(c.hardware)

    tasks = select_tasks(
        load_tasks(c.tasks, c.seed), scheduler_class(c.scheduler.name).task_subset(c.scheduler)
    )
    tokenizer, encoded = encode_tasks(tasks, c.model.vocab, c.model.max_length, c.cache_dir)
    ids = tokenizer.get_vocab()
    vocab = sorted(ids, key=ids.get)  # words in id order
    model = build_model(c.model, vocab, tasks, c.seed)
    infos = [
        TaskInfo(name=t.task.name, n_train=len(t.splits["train"]),
                 n_train_batches=-(-len(t.splits["train"]) // c.trainer.batch_size),
                 metric_name=t.task.metric.value, loss_kind=t.task.kind.value,
                num_labels=t.task.num_labels)
        for t in encoded
    ]  # fmt: skip
    scheduler = build_scheduler(c.scheduler, infos, c.trainer.max_steps, c.seed)
    step_mode = resolve_step_mode(scheduler, c.trainer.step_mode)
    layout, scale_mode = resolve_layout(c.optimizer, scheduler.category, step_mode)
    optimizers = TaskOptimizers(
        c.optimizer,
        shared=list(model.encoder.parameters()),
        heads=[list(h.parameters()) for h in model.heads],
        extra=scheduler.extra_parameters(),
        layout=layout,
        scale_mode=scale_mode,
    )
    log.info("%d tasks (%s), %d vocabulary words, %d parameters, scheduler %s (%s step mode, "
             "%s optimizer layout)", len(tasks), ", ".join(t.name for t in tasks), len(vocab),
             sum(p.numel() for p in model.parameters()), c.scheduler.name, step_mode.value,
             layout)  # fmt: skip

    return Trainer(c, encoded, model, scheduler, step_mode, optimizers, run_dir, device)


def run_experiment(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    c = validate(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    results = build_trainer(c, run_dir).fit(resume=resume)
    results.update(scheduler=c.scheduler.name, seed=c.seed, tasks_suite=c.tasks.name)
    write_results(run_dir, results)
    print_results(results, run_dir)
    return results
