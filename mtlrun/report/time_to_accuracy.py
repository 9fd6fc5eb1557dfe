"""Time to accuracy: for each task, the first evaluation at which its dev score reached 90, 95
and 99 % of the dev score of the run's best checkpoint, in steps and in seconds.

The reference ("final") score of a task is its dev score logged in metrics.jsonl at the run's
`best_step` (the checkpoint that is tested, chosen by the mean dev score over tasks), not the
task's own maximum: a task may score higher before or after it. A threshold f is reached at
the first evaluation whose ratio to the reference is at least f: score / final for a metric
where higher is better, final / score where lower is better. A ratio needs a positive
reference, so a task whose reference score is missing, undefined (NaN) or not above 0 gets
null for every threshold. Since the best checkpoint's own score is 100 % of the reference,
every threshold of a defined task is reached by `best_step`.

`seconds` is the training loop's wall time (`train_seconds`, evaluations before it included)
when that evaluation began, as its metrics.jsonl line records it; null when the line has no
timing fields (runs made before mtlrun logged them at every evaluation).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mtlrun.errors import MtlrunError

log = logging.getLogger("mtlrun")

THRESHOLDS = (90, 95, 99)  # percent of the reference score
REQUIRED = ("step", "task", "split", "score")  # the keys every reader here relies on


def read_dev_lines(path: Path) -> list[dict[str, Any]]:
    """The dev lines of a metrics.jsonl, in file order. A missing or damaged file (a line that
    is not a JSON object with step, task, split and score) is a one-line MtlrunError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MtlrunError(f"{path}: no such file (the run's metrics.jsonl)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MtlrunError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise MtlrunError(f"{path}, line {number}: not JSON ({e.msg}); damaged?") from None
        missing = [k for k in REQUIRED if not isinstance(record, dict) or k not in record]
        if missing or not isinstance(record["step"], int) or isinstance(record["step"], bool):
            what = f"no {', '.join(missing)}" if missing else "a step that is not an integer"
            raise MtlrunError(f"{path}, line {number}: {what}; not an mtlrun metrics line")
        if record["split"] == "dev":
            lines.append(record)
    return lines


def score_of(record: Mapping[str, Any]) -> float:
    """A logged score as a float; NaN where it is undefined (written as null)."""
    value = record.get("score")
    return math.nan if value is None else float(value)


def time_to_accuracy(
    lines: Iterable[Mapping[str, Any]],
    best_step: int,
    higher_is_better: Mapping[str, bool] | None = None,
    thresholds: Iterable[int] = THRESHOLDS,
) -> dict[str, dict[str, dict[str, Any] | None]]:
    """{task: {"90": {"step", "seconds"} or None, ...}} from metrics.jsonl dev lines;
    `higher_is_better` per task (default: every metric is). See the module docstring."""
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for r in lines:
        by_task.setdefault(r["task"], []).append(r)
    higher_is_better = higher_is_better or {}
    out = {}
    for task, records in by_task.items():
        records = sorted(records, key=lambda r: r["step"])  # a resumed log is in order too
        higher = higher_is_better.get(task, True)
        final = next((score_of(r) for r in records if r["step"] == best_step), math.nan)
        out[task] = {str(f): _first_reaching(records, final, f / 100, higher) for f in thresholds}
    return out


def _first_reaching(records, final: float, fraction: float, higher: bool) -> dict | None:
    if not final > 0:  # NaN, missing, zero or negative: a ratio to it means nothing
        return None
    for r in records:
        score = score_of(r)
        if math.isnan(score):
            continue
        ratio = score / final if higher else (final / score if score > 0 else math.inf)
        if ratio >= fraction:
            seconds = r.get("train_seconds")
            return {"step": r["step"], "seconds": None if seconds is None else float(seconds)}
    return None


def add_to_tasks(per_task: dict[str, dict], metrics_path: Path, best_step: int) -> dict:
    """`per_task` (results.json's "tasks") with each task's "time_to_accuracy" added, from the
    run's own metrics.jsonl; at the end of a run, so a file it cannot read only costs a
    warning, never the results."""
    try:
        lines = read_dev_lines(metrics_path)
    except MtlrunError as e:
        log.warning("time to accuracy left out: %s", e)
        return per_task
    higher = {t: bool(r.get("higher_is_better", True)) for t, r in per_task.items()}
    found = time_to_accuracy(lines, best_step, higher)
    for task, r in per_task.items():
        if task in found:
            r["time_to_accuracy"] = found[task]
    return per_task


# --- a sweep's table (mtlrun-report --tta) ------------------------------------------------------
SweepRun = tuple[str, str, dict[str, Any]]  # (column, job name, results.json)


def sweep_table(
    runs: list[SweepRun], thresholds: Iterable[int] = THRESHOLDS
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the time-to-accuracy table of finished runs: a row per task and
    threshold, a column per setting; a cell is the mean step (± sample sd) over the column's
    runs that reached it, the mean seconds in brackets when every one of them logged it, and
    [reached/runs] when some runs did not reach it or have no record."""
    columns = list(dict.fromkeys(c for c, _, _ in runs))
    tasks = list(dict.fromkeys(t for _, _, res in runs for t in res.get("tasks", {})))
    header = ["task", "reached", *columns]
    rows = []
    for task in tasks:
        for f in thresholds:
            row = [task, f"{f} %"]
            for column in columns:
                row.append(_cell([res for c, _, res in runs if c == column], task, str(f)))
            rows.append(row)
    return header, rows


def _cell(results: list[dict[str, Any]], task: str, threshold: str) -> str:
    having = [r["tasks"][task] for r in results if task in r.get("tasks", {})]
    hits = [((t.get("time_to_accuracy") or {}).get(threshold)) for t in having]
    hits = [h for h in hits if isinstance(h, dict) and h.get("step") is not None]
    if not hits:  # no run has the task, or none reached it
        return f"— [0/{len(having)}]" if having else "—"
    steps = [float(h["step"]) for h in hits]
    text = f"{statistics.fmean(steps):.0f}"
    if len(steps) > 1:
        text += f" ± {statistics.stdev(steps):.0f}"
    seconds = [h.get("seconds") for h in hits]
    if all(s is not None for s in seconds):
        text += f" ({statistics.fmean(float(s) for s in seconds):.1f} s)"
    if len(hits) < len(having):
        text += f" [{len(hits)}/{len(having)}]"
    return text


def to_markdown(header: list[str], rows: list[list[str]], by: str) -> str:
    lines = [
        f"# Time to accuracy (columns: {by})",
        "",
        "First evaluation step at which a task's dev score reached 90 / 95 / 99 % of its dev "
        "score at the best checkpoint: mean ± sd over runs, (mean wall seconds) where logged, "
        "[runs that reached it / runs] where not all did.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    return "\n".join(lines) + "\n"


def to_csv(runs: list[SweepRun], thresholds: Iterable[int] = THRESHOLDS) -> str:
    """One line per run, task and threshold: the numbers behind the table (empty: not reached
    or not recorded)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["column", "run", "task", "reached", "step", "seconds"])
    for column, name, res in runs:
        for task, r in res.get("tasks", {}).items():
            for f in thresholds:
                hit = (r.get("time_to_accuracy") or {}).get(str(f)) or {}
                writer.writerow([column, name, task, f, _blank(hit.get("step")),
                                 _blank(hit.get("seconds"))])  # fmt: skip
    return buf.getvalue()


def _blank(value: Any) -> Any:
    return "" if value is None else value
