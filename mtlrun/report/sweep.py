"""A sweep's runs and their comparison table: read every job directory of a Hydra multirun, then
aggregate per (task, column) the mean and sample std (ddof=1) of the chosen split's scores.

Reading (`collect_runs`) is the only I/O; everything after it is a pure function of the runs.
Scores stay fractions here; the renderers turn them into percentages. A cell counts the runs
in it whose learned schedule collapsed onto one task (results.json's "collapse" record), so
the renderers can mark it. The statistics (mtlrun/report/stats.py) come on top: a bootstrap
confidence interval per cell (`build_table(ci=True)`), the noise floor of one column
(`noise_floor`) and a paired test of two columns over matching runs (`compare`).
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

from mtlrun.report import stats

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

    @property
    def uniform_like(self) -> bool:
        """The run's learned schedule could not be told from uniform sampling."""
        return bool((self.results or {}).get("uniform_like"))


@dataclass
class Cell:
    mean: float | None  # None: no run in this column has this task
    std: float | None  # sample std (ddof=1); None when n < 2
    n: int
    scores: list[float] = field(default_factory=list)  # one per run, in job order
    ci: tuple[float, float] | None = None  # bootstrap CI of the mean (build_table(ci=True))


NOISE_COLUMNS = ("uniform", "uniform_sampling")  # the uniform sampler's ids, with --by scheduler


@dataclass
class NoiseFloor:
    """The sample std over seeds of one column's scores, per row (stats.noise_floor)."""

    column: str
    values: dict[str, float | None]  # row -> std; None where the column has < 2 runs


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
    ci: float | None = None  # the confidence level of the cells' CIs; None: not computed
    noise: NoiseFloor | None = None  # the noise floor's column and values; None: no such column
    metrics: dict[str, str] = field(default_factory=dict)  # task -> its primary metric

    def label(self, row: str) -> str:
        """A row as tables show it: the task and the metric its numbers are."""
        metric = self.metrics.get(row)
        return f"{row} ({metric})" if metric else row


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


def _cell(scores: list[float], ci: bool = False) -> Cell:
    if not scores:
        return Cell(None, None, 0)
    std = statistics.stdev(scores) if len(scores) > 1 else None
    interval = stats.bootstrap_ci(scores) if ci else None
    return Cell(statistics.fmean(scores), std, len(scores), scores, interval)


def run_score(run: Run, row: str, split: str) -> float | None:
    """A finished run's score in a table row: the task's score, or for the average row the run's
    aggregate (the mean over its tasks); None if the run lacks the task. NaN when undefined."""
    res: dict[str, Any] = run.results  # type: ignore[assignment]
    if row == AVERAGE:
        agg = (res.get("aggregate") or {}).get(split)
        if agg is None:  # no aggregate recorded: the mean over the run's tasks
            agg = statistics.fmean(t[split] for t in res["tasks"].values())
        return _score(agg)
    if row in res["tasks"]:
        return _score(res["tasks"][row][split])
    return None


def build_table(
    runs: list[Run],
    by: str = "scheduler",
    split: str = "test",
    ci: bool = False,
    noise_column: str | None = None,
) -> Table:
    """Rows = tasks + "average", columns = values of `by`; each cell aggregates the finished runs
    of its column. The average row averages each run's own aggregate score (the mean over its
    tasks), so its std is the spread of whole runs, as in a paper's "average" row. `ci`: give
    each cell the 95 % percentile-bootstrap interval of its mean (stats.bootstrap_ci). The
    table's noise floor is the spread of column `noise_column` (ValueError if there is no such
    column), by default of the `uniform` column when the columns are schedulers."""
    finished = [r for r in runs if r.results is not None]
    column_of = {id(r): setting(r, by) or UNSET for r in runs}
    columns = list(dict.fromkeys(column_of[id(r)] for r in runs))
    tasks = list(dict.fromkeys(t for r in finished for t in r.results["tasks"]))  # type: ignore[index]

    def scores(column: str, task: str) -> list[float]:
        in_column = (run_score(r, task, split) for r in finished if column_of[id(r)] == column)
        return [s for s in in_column if s is not None]

    rows = [*tasks, AVERAGE]
    cells = {(t, c): _cell(scores(c, t), ci) for t in rows for c in columns}
    incomplete = {column_of[id(r)] for r in runs if r.results is None}
    table = Table(by, split, columns, rows, cells, ci=stats.CONFIDENCE if ci else None)
    for r in finished:
        for task, result in r.results["tasks"].items():  # type: ignore[index]
            table.metrics.setdefault(task, result.get("metric", ""))
    noise_col = noise_column_of(table, noise_column)
    table.noise = None if noise_col is None else noise_floor(table, noise_col)
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


def noise_column_of(table: Table, requested: str | None = None) -> str | None:
    """The column whose spread is the noise floor: `requested` (ValueError if it is not a
    column), else the `uniform` column when the columns are schedulers, else None."""
    if requested is not None:
        if requested not in table.columns:
            raise ValueError(
                f"--noise-column {requested}: no such column of {table.by} "
                f"(columns: {', '.join(table.columns)})"
            )
        return requested
    if table.by == "scheduler":
        return next((c for c in NOISE_COLUMNS if c in table.columns), None)
    return None


def noise_floor(table: Table, column: str) -> NoiseFloor:
    return NoiseFloor(
        column, {row: stats.noise_floor(table.cells[row, column].scores) for row in table.rows}
    )


@dataclass
class Comparison:
    """Column `a` against column `b`, run by run: per row, the paired test over the runs of `a`
    and `b` that agree on every key in `matched_on` (None: fewer than 2 such pairs)."""

    by: str
    split: str
    a: str
    b: str
    matched_on: list[str]  # the swept keys other than `by`
    rows: list[str]
    tests: dict[str, stats.PairedTest | None]
    pairs: dict[str, int]  # row -> pairs with a finite score on both sides
    unpaired: int  # finished runs of a or b with no partner


def compare(table: Table, runs: list[Run], a: str, b: str) -> Comparison:
    """Pair the finished runs of columns `a` and `b` of `table` by every swept key other than
    the column key (normally the seed), and test each row's differences a - b
    (stats.paired_test). A run without a partner (its seed failed in the other column) and a
    pair where either score is missing or undefined are left out. Raises ValueError for an
    unknown or repeated column, two runs of one column that agree on every key, or fewer than 2
    pairs in the average row."""
    for c in (a, b):
        if c not in table.columns:
            raise ValueError(
                f"--compare: no column {c!r} of {table.by} (columns: {', '.join(table.columns)})"
            )
    if a == b:
        raise ValueError(f"--compare: compare two different columns, not {a} with itself")
    matched_on = [k for k in swept_keys(runs) if k != table.by]
    finished = [r for r in runs if r.results is not None]
    side: dict[str, dict[tuple[str | None, ...], Run]] = {a: {}, b: {}}
    for r in finished:
        column = setting(r, table.by) or UNSET
        if column not in side:
            continue
        key = tuple(setting(r, k) for k in matched_on)
        if key in side[column]:
            what = ", ".join(f"{k}={v}" for k, v in zip(matched_on, key, strict=True))
            raise ValueError(
                f"--compare: {side[column][key].path} and {r.path} of column {column} agree on "
                f"every swept key ({what or 'none is swept'}): cannot pair runs"
            )
        side[column][key] = r
    keys = [k for k in side[a] if k in side[b]]
    unpaired = len(side[a]) + len(side[b]) - 2 * len(keys)
    tests: dict[str, stats.PairedTest | None] = {}
    pairs: dict[str, int] = {}
    for row in table.rows:
        xs, ys = [], []
        for k in keys:
            x, y = run_score(side[a][k], row, table.split), run_score(side[b][k], row, table.split)
            if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
                xs.append(x)
                ys.append(y)
        pairs[row] = len(xs)
        tests[row] = stats.paired_test(xs, ys) if len(xs) >= 2 else None
    if pairs[AVERAGE] < 2:
        on = ", ".join(matched_on) or "no swept key"
        raise ValueError(
            f"--compare {a} {b}: {pairs[AVERAGE]} pair(s) of finished runs match on {on}; "
            "a paired test needs at least 2"
        )
    return Comparison(table.by, table.split, a, b, matched_on, table.rows, tests, pairs, unpaired)
