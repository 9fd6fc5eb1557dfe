"""What a run's schedule was, and whether a learned scheduler collapsed onto one task.

Pure functions of the trainer's per-task counters (`Progress.batches_seen` in SINGLE and ALL
mode, `examples_seen` in MIXED mode), so a resumed run reports what an uninterrupted one does.

Schedule statistics: each task's share of the counts, the Shannon entropy H of the shares
(natural log) and H / log K (1 = uniform, 0 = one task; None for a single task).

Collapse guard (learned schedulers in SINGLE or MIXED mode only): with
decisions = steps // decision_interval, the schedule has *collapsed* when
decisions >= MIN_DECISIONS and the most-trained task's share exceeds the threshold (strictly;
a threshold of 1 never trips). The automatic threshold is halfway between the uniform share
1/K and total collapse, (1 + 1/K) / 2.

Uniform check (the same schedulers, at the end of a run that did not collapse): a learned
schedule whose decisions a chi-square goodness-of-fit test cannot tell from uniform sampling
(p >= UNIFORM_P over at least MIN_DECISIONS decisions) is reported too: its scores are those
of a uniform schedule, whatever the scheduler learned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mtlrun.schedulers import uncertainty

# Fewer decisions prove nothing: a fair sampler is lumpy over a handful of draws, and a learned
# policy's first decisions are exploration. At 32 decisions uniform sampling exceeds the
# automatic threshold with probability < 1e-5 for K >= 4 tasks (K·P[Binomial(32, 1/K) >
# 32·(1 + 1/K)/2]: 6e-6 for K = 4, 7e-13 for K = 16; 1e-4 for K = 3, 2e-3 for K = 2), while
# a policy that really sits on one task trips it as soon as 32 decisions are in.
MIN_DECISIONS = 32
UNIFORM_P = 0.05  # the usual level: below it, the schedule is not uniform sampling
DIGITS = 6  # rounding of shares and entropies in the logs


def shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def entropy(counts: Sequence[int]) -> float:
    """Shannon entropy (nats) of the count histogram; 0 for an empty one."""
    h = float(uncertainty.entropy(np.asarray(shares(counts)))) if len(counts) else 0.0
    return h if h > 0 else 0.0  # never -0.0 in the logs


def normalised_entropy(counts: Sequence[int]) -> float | None:
    """H / log K: 1 for a uniform schedule, 0 for one task; None when K = 1 (undefined)."""
    return entropy(counts) / math.log(len(counts)) if len(counts) > 1 else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, DIGITS)


def run_wide(counts: Sequence[int]) -> dict[str, float | None]:
    """{"entropy", "entropy_norm"}: the numbers every metrics.jsonl line of an evaluation
    shares (each line adds its own task's "share")."""
    return {"entropy": _round(entropy(counts)), "entropy_norm": _round(normalised_entropy(counts))}


def summary(names: Sequence[str], counts: Sequence[int], unit: str) -> dict[str, Any]:
    """results.json's "schedule": counts and shares per task, entropy, normalised entropy, and
    what was counted ("batches" or "examples")."""
    return {
        "unit": unit,
        "counts": dict(zip(names, (int(c) for c in counts), strict=True)),
        "share": dict(zip(names, (_round(s) for s in shares(counts)), strict=True)),
        **run_wide(counts),
    }


def auto_threshold(K: int) -> float:
    """Halfway between the uniform share and total collapse: (1 + 1/K) / 2."""
    return (1 + 1 / K) / 2


def check_collapse(
    names: Sequence[str],
    counts: Sequence[int],
    step: int,
    decision_interval: int = 1,
    threshold: float | None = None,
    min_decisions: int = MIN_DECISIONS,
) -> dict[str, Any] | None:
    """The collapse record, or None: {"task", "share", "threshold", "decisions", "uniform",
    "first_step"} when `step` steps (decisions = step // decision_interval, at least
    `min_decisions`) gave the most-trained task more than `threshold` (None = automatic)."""
    K = len(counts)
    limit = auto_threshold(K) if threshold is None else float(threshold)
    decisions = step // max(1, int(decision_interval))
    if K == 0 or decisions < min_decisions:
        return None
    p = shares(counts)
    top = max(range(K), key=p.__getitem__)
    if not p[top] > limit:
        return None
    return {
        "task": names[top],
        "share": _round(p[top]),
        "threshold": _round(limit),
        "decisions": decisions,
        "uniform": _round(1 / K),
        "first_step": step,
    }


def collapse_message(scheduler: str, record: dict[str, Any]) -> str:
    """The one warning line (also the footnote of results.md and the rich table)."""
    return (
        f"collapse: {scheduler} gave {record['share']:.0%} of its {record['decisions']} "
        f"decisions to task {record['task']} (threshold {record['threshold']:.0%}, uniform "
        f"would give {record['uniform']:.0%}); its scores measure one task's training, not a "
        "schedule"
    )


def check_uniform(
    counts: Sequence[int], step: int, decision_interval: int = 1,
    min_decisions: int = MIN_DECISIONS,
) -> dict[str, Any] | None:  # fmt: skip
    """The record of a schedule that cannot be told from uniform sampling, or None:
    {"decisions", "p_value", "share_min", "share_max", "uniform"}. The test counts decisions
    (counts / decision_interval: one decision trains its task for decision_interval steps),
    since those are the independent draws."""
    K, interval = len(counts), max(1, int(decision_interval))
    decisions = step // interval
    if K < 2 or decisions < min_decisions or not sum(counts):
        return None
    from scipy import stats  # here: importing scipy.stats costs every run half a second

    p_value = float(stats.chisquare(np.asarray(counts, float) / interval).pvalue)
    if p_value < UNIFORM_P:
        return None
    p = shares(counts)
    return {"decisions": decisions, "p_value": _round(p_value), "share_min": _round(min(p)),
            "share_max": _round(max(p)), "uniform": _round(1 / K)}  # fmt: skip


def uniform_message(scheduler: str, record: dict[str, Any]) -> str:
    """The one warning line (also a footnote of results.md) for a uniform-like schedule."""
    return (
        f"uniform: {scheduler}'s {record['decisions']} decisions cannot be told from uniform "
        f"sampling (chi-square test, p = {record['p_value']:.2f}; task shares "
        f"{record['share_min']:.1%}–{record['share_max']:.1%}, uniform {record['uniform']:.1%}); "
        "its scores are those of a uniform schedule, not of a learned preference"
    )
