"""`mtlrun --help`: the config groups with their options and the keys most runs change,
from conf/ itself (Hydra's own help lists its internal schema groups; `--hydra-help` still
shows Hydra's flags)."""

from __future__ import annotations

import textwrap

GROUPS = ("model", "tasks", "scheduler", "optimizer", "hardware", "trainer", "experiment", "debug",
          "logger")  # fmt: skip
KEYS = [
    ("seed=N", "the run's seed: data order, initial model, sampling"),
    ("data_dir=DIR", "local datasets (null: the Hugging Face hub, which needs internet)"),
    ("trainer.max_steps=N", "training steps (eval every trainer.eval_every)"),
    ("trainer.resume=DIR", "continue a stopped run in its own directory"),
    ("hardware.num_threads=N", "torch threads per process (0: auto, the log says what)"),
]


def help_text() -> str:
    from mtlrun.overrides import default_options, group_options

    defaults = default_options()
    lines = [
        "mtlrun: train a multi-task NLP model with a task scheduler, composed from config groups",
        "",
        "usage: mtlrun [GROUP=OPTION ...] [KEY=VALUE ...]",
        "       mtlrun -m scheduler=uniform,dtp seed=1,2,3     (a sweep: every combination)",
        "",
        "config groups (default marked *):",
    ]
    for group in GROUPS:
        shown = [f"{o}*" if defaults.get(group) == o else o for o in group_options(group)]
        body = textwrap.wrap(", ".join(shown), width=86)
        lines.append(f"  {group:<11}{body[0]}")
        lines += [" " * 13 + rest for rest in body[1:]]
    lines += ["", "most useful keys:"]
    lines += [f"  {key:<25}{what}" for key, what in KEYS]
    lines += [
        "",
        "any key of the composed config can be set: `mtlrun --cfg job` prints it (with your",
        "overrides); a misspelt key or option is refused with a suggestion.",
        "other commands: mtlrun-report (tables, statistics, plots of runs), mtlrun-reproduce",
        "(a paper's table: ours beside theirs). Docs: README.md and docs/ in the repository;",
        "Hydra's own flags: mtlrun --hydra-help",
    ]
    return "\n".join(lines)
