"""Tasks: typed specs (`spec`), one reader per canonical format, and the synthetic suite."""

from __future__ import annotations

from mtlrun.errors import ConfigError
from mtlrun.tasks.conll_suite import load_conll
from mtlrun.tasks.glue import GlueTasksConfig, load_glue
from mtlrun.tasks.missing_dev import apply_missing_metric_policy
from mtlrun.tasks.mt_syntax import MtSyntaxConfig, load_mt_syntax
from mtlrun.tasks.multidomain import load_multidomain16
from mtlrun.tasks.spec import Kind, Metric, Split, Task
from mtlrun.tasks.synthetic import load_synthetic
from mtlrun.tasks.translation import (
    Multi30kConfig,
    Wmt14EnDeConfig,
    WmtMultilingualConfig,
    load_multi30k,
    load_wmt14_en_de,
    load_wmt_multilingual,
)
from mtlrun.tasks.xnli import XnliTasksConfig, load_xnli

__all__ = ["Kind", "Metric", "Split", "Task", "load_tasks"]

# suite config class -> loader(cfg, data_dir)
LOADERS = {
    GlueTasksConfig: load_glue,
    XnliTasksConfig: load_xnli,
    Multi30kConfig: load_multi30k,
    Wmt14EnDeConfig: load_wmt14_en_de,
    WmtMultilingualConfig: load_wmt_multilingual,
    MtSyntaxConfig: load_mt_syntax,
}


def load_tasks(cfg, seed: int, data_dir: str | None = None) -> list[Task]:
    """The task suite of a `tasks=` config group option; real data from `data_dir`, or from
    the Hugging Face hub when it is null."""
    loader = LOADERS.get(type(cfg))
    if loader is not None:
        return loader(cfg, data_dir)
    name = cfg.name
    if name == "synthetic":
        return load_synthetic(cfg, seed)
    if name == "multidomain16":
        return load_multidomain16(cfg, data_dir)
    if name == "conll":
        tasks = load_conll(cfg, data_dir)
        return apply_missing_metric_policy(tasks, cfg.missing_metric_policy,
                                           cfg.holdout_fraction, seed)  # fmt: skip
    raise ConfigError(f"unknown task suite {name!r}")
