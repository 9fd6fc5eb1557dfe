"""Tasks without a validation split (CoNLL-2000 chunking): docs/schedulers.md §1.4 item 6.

- holdout (default): a fixed `fraction` of the task's training set, drawn with the run seed,
  becomes its dev split (and leaves training).
- neutral / zero: the task keeps no dev split; at evaluation the trainer gives it the mean
  score of the other tasks, or 0 (LINGVO's value before the first evaluation).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from mtlrun.tasks.spec import Task

log = logging.getLogger(__name__)


def apply_missing_metric_policy(tasks: list[Task], policy: str, fraction: float,
                                seed: int) -> list[Task]:  # fmt: skip
    out = []
    for task in tasks:
        if len(task.dev) > 0:
            out.append(task)
            continue
        if policy != "holdout":
            log.info("%s has no dev split: scored as %s at evaluation", task.name, policy)
            out.append(replace(task, missing_dev=policy))
            continue
        order = np.random.default_rng([seed, 1_000_003]).permutation(len(task.train))
        n_dev = max(1, round(fraction * len(task.train)))
        dev, train = np.sort(order[:n_dev]), np.sort(order[n_dev:])
        log.info(
            "%s has no dev split: %d of its %d training examples held out as dev "
            "(tasks.missing_metric_policy=holdout)",
            task.name,
            n_dev,
            len(task.train),
        )
        fingerprint = {**task.fingerprint, "holdout": [fraction, seed]}
        out.append(replace(task, train=task.train.subset(train), dev=task.train.subset(dev),
                           fingerprint=fingerprint))  # fmt: skip
    return out
