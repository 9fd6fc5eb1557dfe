"""A sweep's runs and their comparison table: read every job directory of a Hydra multirun, then
aggregate per (task, column) the mean and sample std (ddof=1) of the chosen split's scores.

Reading (`collect_runs`) is the only I/O; everything after it is a pure function of the runs.
Scores stay fractions here; the renderers turn them into percentages. A cell counts the runs
in it whose learned schedule collapsed onto one task (results.json's "collapse" record), so
the renderers can mark it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

AVERAGE = "average"
UNSET = "(unset)"


@dataclass
class Run:
    path: Path
    overrides: list[str]
    config: dict[str, Any]  # the resolved config.yaml ({} when unreadable)
    results: dict[str, Any] | None  # results.json; None for a failed or unfinished job
    problem: str | None = None  # why there are no results

    @property
    def override_map(self) -> dict[str, str]:
        return parse_overrides(self.overrides)

    @property
    def collapse(self) -> dict[str, Any] | None:
        """The collapse guard's record ({"task", "share", ...}) if the run's schedule collapsed."""
        record = (self.results or {}).get("collapse")
        return record if isinstance(record, dict) and "task" in record else None


@dataclass
class Cell:
    mean: float | None  # None: no run in this column has this task
    std: float | None  # sample std (ddof=1); None when n < 2
    n: int


@dataclass
class Table:
    by: str
    split: str
    columns: list[str]  # in order of first appearance (job number)
    rows: list[str]  # tasks in order of first appearance, then "average"
    cells: dict[tuple[str, str], Cell]  # (row, column) -> cell
    best: set[tuple[str, str]] = field(default_factory=set)
    show_n: set[tuple[str, str]] = field(default_factory=set)  # cells whose n is worth printing
    averaged_over: list[str] = field(default_factory=list)  # the other swept override keys
    collapsed: dict[tuple[str, str], int] = field(default_factory=dict)  # cell -> collapsed runs


class NotASweep(Exception):
    """The directory holds no Hydra job directories."""


def _job_order(path: Path) -> tuple[int, str]:
    """Hydra's default subdir is the job number; other subdir patterns sort after, by name."""
    return (int(path.name), "") if path.name.isdigit() else (1 << 62, path.name)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def read_run(job: Path) -> Run:
    overrides = _read_yaml(job / ".hydra" / "overrides.yaml")
    config = _read_yaml(job / "config.yaml") or _read_yaml(job / ".hydra" / "config.yaml")
    run = Run(
        path=job,
        overrides=[str(o) for o in overrides] if isinstance(overrides, list) else [],
        config=config if isinstance(config, dict) else {},
        results=None,
    )
    results_file, error_file = job / "results.json", job / "error.txt"
    if results_file.is_file():
        try:
            results = json.loads(results_file.read_text())
            tasks = results.get("tasks") if isinstance(results, dict) else None
            ok = isinstance(tasks, dict) and all(
                isinstance(t, dict) and {"dev", "test"} <= t.keys() for t in tasks.values()
            )
            if not ok:
                raise ValueError("no 'tasks' mapping with dev and test scores")
            run.results = results
        except (OSError, ValueError) as e:
            run.problem = f"unreadable results.json: {e}"
    elif error_file.is_file():
        lines = error_file.read_text(errors="replace").strip().splitlines()
        run.problem = lines[0] if lines else "failed (empty error.txt)"
    else:
        run.problem = "unfinished: no results.json"
    return run


def collect_runs(sweep_dir: Path) -> list[Run]:
    """Every job directory (a child with a .hydra/ folder) of `sweep_dir`, in job order."""
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    if not jobs:
        single = (sweep_dir / ".hydra").is_dir()
        hint = (
            " (it is a single run; pass the sweep directory above its job dirs)" if single else ""
        )
        raise NotASweep(f"{sweep_dir} is not a multirun sweep: no job directories{hint}")
    return [read_run(j) for j in sorted(jobs, key=_job_order)]


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """'key=value' overrides as a mapping; Hydra's +/++ prefixes dropped, ~deletions skipped."""
    out: dict[str, str] = {}
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and not key.startswith("~"):
            out[key.lstrip("+")] = value
    return out


def setting(run: Run, key: str) -> str | None:
    """The run's value for `key`: its override if it has one, else the resolved config's value.
    A config group (e.g. `scheduler`) is named by its `name` field, as its override would be."""
    overrides = run.override_map
    if key in overrides:
        return overrides[key]
    node: Any = run.config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict):
        node = node.get("name")
    return None if node is None else str(node)


def swept_keys(runs: list[Run]) -> list[str]:
    """Override keys whose value differs between jobs, in first-seen order."""
    maps = [r.override_map for r in runs]
    keys = dict.fromkeys(k for m in maps for k in m)
    return [k for k in keys if len({m.get(k) for m in maps}) > 1]


def _cell(scores: list[float]) -> Cell:
    if not scores:
        return Cell(None, None, 0)
    std = statistics.stdev(scores) if len(scores) > 1 else None
    return Cell(statistics.fmean(scores), std, len(scores))


def build_table(runs: list[Run], by: str = "scheduler", split: str = "test") -> Table:
    """Rows = tasks + "average", columns = values of `by`; each cell aggregates the finished runs
    of its column. The average row averages each run's own aggregate score (the mean over its
    tasks), so its std is the spread of whole runs, as in a paper's "average" row."""
    finished = [r for r in runs if r.results is not None]
    column_of = {id(r): setting(r, by) or UNSET for r in runs}
    columns = list(dict.fromkeys(column_of[id(r)] for r in runs))
    tasks = list(dict.fromkeys(t for r in finished for t in r.results["tasks"]))  # type: ignore[index]

    def scores(column: str, task: str) -> list[float]:
        out = []
        for r in finished:
            if column_of[id(r)] != column:
                continue
            res: dict[str, Any] = r.results  # type: ignore[assignment]
            if task == AVERAGE:
                agg = (res.get("aggregate") or {}).get(split)
                if agg is None:  # no aggregate recorded: the mean over the run's tasks
                    agg = statistics.fmean(t[split] for t in res["tasks"].values())
                out.append(_score(agg))
            elif task in res["tasks"]:
                out.append(_score(res["tasks"][task][split]))
        return out

    rows = [*tasks, AVERAGE]
    cells = {(t, c): _cell(scores(c, t)) for t in rows for c in columns}
    incomplete = {column_of[id(r)] for r in runs if r.results is None}
    table = Table(by, split, columns, rows, cells)
    table.averaged_over = [k for k in swept_keys(runs) if k != by]
    table.collapsed = _collapsed_cells(finished, column_of)
    for t in rows:
        row = [(c, cells[t, c]) for c in columns]
        most = max(cell.n for _, cell in row)
        # n is printed where runs are missing: fewer than the fullest cell of the row, or a
        # column with failed/unfinished jobs
        table.show_n |= {(t, c) for c, cell in row if cell.n and (cell.n < most or c in incomplete)}
        shown = {c: round(100 * cell.mean, 2) for c, cell in row if cell.mean is not None}
        if len(shown) > 1:  # "best" needs something to beat; ties (as printed) all count
            table.best |= {(t, c) for c, v in shown.items() if v == max(shown.values())}
    return table


def _collapsed_cells(finished: list[Run], column_of: dict[int, str]) -> dict[tuple[str, str], int]:
    """(row, column) -> how many of the cell's runs collapsed: every task of such a run and the
    average row of its column."""
    out: dict[tuple[str, str], int] = {}
    for r in finished:
        if r.collapse is not None:
            for task in [*r.results["tasks"], AVERAGE]:  # type: ignore[index]
                key = (task, column_of[id(r)])
                out[key] = out.get(key, 0) + 1
    return out


def baselines(runs: list[Run]) -> dict[str, float]:
    """{task: mean dev score over its runs} from single-task runs, for `scheduler.baselines=`.
    Raises ValueError if a finished run trained more than one task."""
    per_task: dict[str, list[float]] = {}
    for r in runs:
        if r.results is None:
            continue
        tasks = r.results["tasks"]
        if len(tasks) != 1:
            sched = r.results.get("scheduler", "?")
            raise ValueError(
                f"--baselines needs single-task runs (scheduler=single); {r.path} ran "
                f"scheduler={sched} on {len(tasks)} tasks"
            )
        ((task, res),) = tasks.items()
        per_task.setdefault(task, []).append(_score(res["dev"]))
    return {t: statistics.fmean(s) for t, s in per_task.items()}


def _score(value: Any) -> float:
    """A score from results.json, where an undefined one (e.g. ROC-AUC on one class) is null."""
    return math.nan if value is None else float(value)
