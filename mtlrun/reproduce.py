"""The `mtlrun-reproduce` command: run the sweep that one paper table needs, then print our
numbers beside the paper's.

    mtlrun-reproduce EXPERIMENT [--out DIR] [--seeds N] [--jobs N] [--method M ...] [--dry-run]
                     [OVERRIDE ...]

EXPERIMENT is a preset in conf/experiment/ (e.g. qls_table2_cpu); its `paper:` block holds the
table's numbers and how each of its methods runs (docs/experiments.md). The sweep runs as
`mtlrun` subprocesses, one run directory per cell under --out (default runs/<EXPERIMENT>/), in
three phases: single-task baselines (for the methods that need `scheduler.baselines`; their mean
dev scores go to <out>/baselines.json), search runs (a method whose schedule is learned first,
e.g. REINFORCE, then replayed), then every method x setting x seed.

A cell whose directory already has results.json is reused, never trained again; one that holds
an unfinished run is continued with `mtlrun trainer.resume=<dir>`; a directory that holds a run
made with other overrides stops the command before anything runs. `--method M` (repeatable: a
method's name in the table, or its scheduler) runs only those methods' cells and what they need
(baselines, searches); the table still shows every finished cell. A failed run is listed and
its cells shown as missing; it does not stop the others. The comparison (ours: mean ± sample
std over seeds, in %; the paper's number; the gap) is printed and written atomically to
<out>/reproduce.md and <out>/reproduce.csv.

Exit status: 0 the table was made (failed runs are listed in it); 1 no cell finished; 2 a usage
mistake (unknown experiment, bad override, a malformed paper block), as one line on stderr.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlrun.atomic import write_text_atomic
from mtlrun.paths import config_dir

PROG = "mtlrun-reproduce"
AVERAGE = "average"  # the row of a run's mean over its tasks (mtlrun.report.sweep.AVERAGE)
# a block whose rows are tasks each held out of one run and learned over its frozen encoder
# (transfer.task=<row>, docs/transfer.md); its average row is the mean over its rows
TRANSFER = "transfer"
UNITS = {"percent": 1.0, "bleu": 1.0, "fraction": 100.0}  # paper number x factor = %
# overrides that mtlrun-reproduce sets itself, per cell
RESERVED = (
    "experiment",
    "seed",
    "scheduler",
    "hydra.run.dir",
    "hydra.sweep.dir",
    "trainer.resume",
    "trainer.overwrite",
)


class ReproduceError(Exception):
    """A usage mistake: the message is printed as `mtlrun-reproduce: error: <message>`."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


# --- the paper block -----------------------------------------------------------------------------
@dataclass
class Setting:
    overrides: list[str]  # what the row's runs add to the experiment, e.g. tasks=glue_rte_mnli
    task: str  # whose score the row shows ("average": the run's mean over its tasks)


@dataclass
class Method:
    name: str  # the paper's label of the method (a column or a row of its table)
    scheduler: str | None  # conf/scheduler/<id>.yaml; None for a method we cannot run
    overrides: list[str] = field(default_factory=list)
    baselines: bool = False  # gets scheduler.baselines=<out>/baselines.json
    single_task: bool = False  # one run per row, scheduler.task=<the row's task>
    search: dict[str, Any] | None = None  # {scheduler, overrides}: learns scheduler.path first
    skip: str | None = None  # why this method is not run
    settings: dict[str, Setting] = field(default_factory=dict)  # rows it runs its own way


@dataclass
class Block:
    split: str  # dev, test, or transfer (each row a held-out task: its cross-validated score)
    metric: str  # a metric id (accuracy, f1, roc_auc, ...) or "primary": each task's own
    rows: dict[str, dict[str, float]]  # method -> row -> the paper's number as printed


@dataclass
class Paper:
    title: str
    authors: list[str]
    year: int | None
    venue: str
    table: str
    unit: str
    blocks: list[Block]
    methods: dict[str, Method]
    settings: dict[str, Setting]
    row_labels: dict[str, str]
    seeds: list[int]
    baseline_tasks: dict[str, list[str]]  # task -> its single-task run's extra overrides
    baseline_seeds: list[int]
    notes: list[str]
    comparable: bool
    only_rows: list[str] | None = None  # paper.sweep.rows: the rows this form runs

    def runs_row(self, row: str) -> bool:
        return self.only_rows is None or row in self.only_rows or row == AVERAGE

    def block_setting(self, block: Block, row: str, method: str) -> Setting:
        if block.split == TRANSFER and row != AVERAGE:
            return Setting([f"transfer.task={row}"], row)
        return self.setting(row, method)

    def setting(self, row: str, method: str | None = None) -> Setting:
        """How the runs of `row` are made: the method's own setting for it, else the table's,
        else the row is a task of the experiment's own suite."""
        own = self.methods[method].settings.get(row) if method in self.methods else None
        return own or self.settings.get(row) or Setting([], row)

    def label(self, row: str) -> str:
        return self.row_labels.get(row, row)

    def cite(self) -> str:
        authors = self.authors
        who = authors[0] if len(authors) == 1 else ", ".join(authors[:-1]) + " & " + authors[-1]
        year = f" {self.year}" if self.year else ""
        return f'{who}{year}, "{self.title}", {self.venue}, Table {self.table}'


def _need(mapping: Any, key: str, kind: type | tuple, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise ReproduceError(f"{where}: missing `{key}`")
    value = mapping[key]
    if not isinstance(value, kind):
        raise ReproduceError(f"{where}.{key}: expected {_kind(kind)} (got {value!r})")
    return value


def _kind(kind: type | tuple) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReproduceError(f"{where}: expected a list of overrides (got {value!r})")
    return list(value)


def _rows(value: Any, where: str) -> dict[str, dict[str, float]]:
    if not isinstance(value, dict) or not value:
        raise ReproduceError(f"{where}: expected method -> row -> number")
    out: dict[str, dict[str, float]] = {}
    for method, cells in value.items():
        if not isinstance(cells, dict) or not cells:
            raise ReproduceError(f"{where}.{method}: expected row -> number")
        for row, number in cells.items():
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise ReproduceError(f"{where}.{method}.{row}: not a number ({number!r})")
        out[str(method)] = {str(r): float(n) for r, n in cells.items()}
    return out


def parse_settings(value: Any, where: str) -> dict[str, Setting]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReproduceError(f"{where}: expected row -> {{overrides, task}}")
    out = {}
    for row, spec in value.items():
        w = f"{where}.{row}"
        task = _need(spec, "task", str, w)
        out[str(row)] = Setting(_strings(spec.get("overrides"), f"{w}.overrides"), task)
    return out


def parse_paper(block: Any, schedulers: set[str] | None = None) -> Paper:
    """The experiment's `paper:` block, checked: every method of the table's rows has a way to
    run it (an existing scheduler) or a reason why not; the numbers are numbers."""
    where = "paper"
    if not isinstance(block, dict):
        raise ReproduceError("the experiment has no `paper:` block: nothing to reproduce")
    title = _need(block, "title", str, where)
    authors = _need(block, "authors", list, where)
    unit = _need(block, "unit", str, where)
    if unit not in UNITS:
        raise ReproduceError(f"paper.unit must be one of {sorted(UNITS)} (got {unit!r})")
    blocks = [
        Block(
            _need(block, "split", str, where),
            _need(block, "metric", str, where),
            _rows(block.get("rows"), "paper.rows"),
        )
    ]
    for i, more in enumerate(block.get("more") or []):
        w = f"paper.more[{i}]"
        blocks.append(
            Block(
                _need(more, "split", str, w),
                _need(more, "metric", str, w),
                _rows(more.get("rows"), f"{w}.rows"),
            )
        )
    for b in blocks:
        if b.split not in ("dev", "test", TRANSFER):
            raise ReproduceError(f"paper split must be dev, test or {TRANSFER} (got {b.split!r})")

    methods: dict[str, Method] = {}
    for name, spec in (_need(block, "methods", dict, where) or {}).items():
        w = f"paper.methods.{name}"
        if not isinstance(spec, dict):
            raise ReproduceError(f"{w}: expected a mapping")
        unknown = set(spec) - {
            "scheduler",
            "overrides",
            "baselines",
            "single_task",
            "search",
            "skip",
            "settings",
        }
        if unknown:
            raise ReproduceError(f"{w}: unknown key(s) {sorted(unknown)}")
        skip = spec.get("skip")
        scheduler = spec.get("scheduler")
        if skip is None and not isinstance(scheduler, str):
            raise ReproduceError(f"{w}: needs `scheduler` (a conf/scheduler option) or `skip`")
        search = spec.get("search")
        if search is not None:
            _need(search, "scheduler", str, f"{w}.search")
            search = {
                "scheduler": search["scheduler"],
                "overrides": _strings(search.get("overrides"), f"{w}.search.overrides"),
            }
        for sched in [scheduler, (search or {}).get("scheduler")]:
            if schedulers is not None and sched is not None and sched not in schedulers:
                raise ReproduceError(f"{w}: scheduler {sched!r} is not in conf/scheduler/")
        methods[str(name)] = Method(
            name=str(name),
            scheduler=scheduler if skip is None else scheduler,
            overrides=_strings(spec.get("overrides"), f"{w}.overrides"),
            baselines=bool(spec.get("baselines", False)),
            single_task=bool(spec.get("single_task", False)),
            search=search,
            skip=None if skip is None else str(skip),
            settings=parse_settings(spec.get("settings"), f"{w}.settings"),
        )
    for b in blocks:
        missing = [m for m in b.rows if m not in methods]
        if missing:
            raise ReproduceError(f"paper.rows: method(s) {missing} have no paper.methods entry")

    settings = parse_settings(block.get("settings"), "paper.settings")
    sweep = _need(block, "sweep", dict, where)
    seeds = _need(sweep, "seeds", list, "paper.sweep")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ReproduceError(f"paper.sweep.seeds: expected a list of integers (got {seeds!r})")
    base = sweep.get("baselines") or {}
    base_tasks = {
        str(t): _strings(o, f"paper.sweep.baselines.tasks.{t}")
        for t, o in (base.get("tasks") or {}).items()
    }
    base_seeds = base.get("seeds") or seeds[:1]
    if any(m.baselines and not m.skip for m in methods.values()) and not base_tasks:
        raise ReproduceError("a method needs baselines: paper.sweep.baselines.tasks is empty")
    only_rows = sweep.get("rows")
    if only_rows is not None:
        only_rows = _strings(only_rows, "paper.sweep.rows")
        known = {r for b in blocks for cells in b.rows.values() for r in cells}
        unknown = [r for r in only_rows if r not in known]
        if unknown or not only_rows:
            raise ReproduceError(f"paper.sweep.rows: {unknown or 'empty'}; the table's rows "
                                 f"are {sorted(known)}")  # fmt: skip
    year = block.get("year")
    return Paper(
        title=title,
        authors=[str(a) for a in authors],
        year=year if isinstance(year, int) else None,
        venue=str(block.get("venue", "")),
        table=str(block.get("table", "?")),
        unit=unit,
        blocks=blocks,
        methods=methods,
        settings=settings,
        row_labels={str(k): str(v) for k, v in (block.get("row_labels") or {}).items()},
        seeds=list(seeds),
        baseline_tasks=base_tasks,
        baseline_seeds=list(base_seeds),
        notes=[str(n) for n in (block.get("notes") or [])],
        comparable=bool(block.get("comparable", True)),
        only_rows=only_rows,
    )


# --- composing the experiment --------------------------------------------------------------------
def experiments() -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))


def compose(experiment: str, overrides: list[str]) -> Any:
    """The typed config of `mtlrun experiment=<experiment> *overrides`, composed here, so that a
    misspelt override or a missing data_dir stops the command before any run starts."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mtlrun.config import register_configs, validate
    from mtlrun.errors import MtlrunError

    register_configs()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return validate(
                hydra_compose("config", overrides=[f"experiment={experiment}", *overrides])
            )
    except MtlrunError as e:
        raise ReproduceError(str(e)) from None
    except (HydraException, OmegaConfBaseException) as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        raise ReproduceError(" ".join(lines[:2]) or type(e).__name__) from None


def scheduler_ids() -> set[str]:
    return {p.stem for p in (Path(config_dir()) / "scheduler").glob("*.yaml")}


def load_paper(experiment: str, overrides: list[str]) -> tuple[Paper, Any]:
    known = experiments()
    if experiment not in known:
        raise ReproduceError(f"no experiment {experiment!r}; choose one of: {', '.join(known)}")
    cfg = compose(experiment, overrides)
    try:
        return parse_paper(cfg.paper, scheduler_ids()), cfg
    except ReproduceError as e:
        raise ReproduceError(f"conf/experiment/{experiment}.yaml: {e}") from None


# --- the plan ------------------------------------------------------------------------------------
@dataclass
class Cell:
    name: str  # directory name under --out
    phase: str  # baseline | search | run
    overrides: list[str]
    depends: list[Cell] = field(default_factory=list)  # searches this run replays
    needs_baselines: bool = False
    state: str = "new"  # new | reuse | resume | skipped (--method) | done | failed | blocked
    problem: str | None = None

    def key(self) -> tuple[str, ...]:
        return tuple(sorted(self.overrides))


@dataclass
class Plan:
    experiment: str
    out: Path
    paper: Paper
    seeds: list[int]
    cells: list[Cell]
    # (method, row, seed) -> the cell whose results hold that number
    where: dict[tuple[str, str, int], Cell]

    @property
    def baselines_file(self) -> Path:
        return self.out / "baselines.json"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def merge_overrides(*groups: list[str]) -> list[str]:
    """Overrides in order, a later one replacing an earlier one of the same key (so the user's
    win over a method's), each key once: Hydra refuses a key given twice."""
    merged: dict[str, str] = {}
    for group in groups:
        for o in group:
            merged[o.partition("=")[0].lstrip("+~")] = o
    return list(merged.values())


def check_user_overrides(experiment: str, overrides: list[str]) -> None:
    for o in overrides:
        key, sep, _ = o.partition("=")
        if not sep:
            raise ReproduceError(f"{o!r} is not an override (key=value); options go before them")
        if key.lstrip("+~") in RESERVED or key.startswith("hydra."):
            raise ReproduceError(f"{key} is set by {PROG} for each run; drop {o}")
    from mtlrun.errors import ConfigError
    from mtlrun.overrides import check_overrides

    try:
        # a misspelt key: one line with a suggestion; the preset chooses the groups' options
        # (tasks.en_de.* exists under jean2019_table1's tasks, not under the default suite)
        check_overrides([f"experiment={experiment}", *overrides])
    except ConfigError as e:
        raise ReproduceError(str(e)) from None


def seeds_for(paper: Paper, n: int | None) -> list[int]:
    seeds = list(paper.seeds)
    if n is None:
        return seeds
    if n < 1:
        raise ReproduceError(f"--seeds must be >= 1 (got {n})")
    while len(seeds) < n:
        seeds.append(max(seeds) + 1)
    return seeds[:n]


def make_plan(
    experiment: str, paper: Paper, out: Path, user: list[str], n_seeds: int | None = None
) -> Plan:
    """Every run the table needs, each once: cells with the same overrides are one run."""
    out = out.expanduser().absolute()
    seeds = seeds_for(paper, n_seeds)
    cells: dict[tuple[str, ...], Cell] = {}
    names: set[str] = set()

    def cell(name: str, phase: str, overrides: list[str]) -> Cell:
        overrides = merge_overrides([f"experiment={experiment}"], overrides, user)
        c = Cell(name, phase, overrides)
        found = cells.get(c.key())
        if found is not None:
            return found
        base, i = name, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        c.name = name
        names.add(name)
        cells[c.key()] = c
        return c

    base_seeds = [s for s in paper.baseline_seeds if n_seeds is None or s in seeds] or seeds[:1]
    needs_baselines = any(
        m.baselines and not m.skip for b in paper.blocks for m in map(paper.methods.get, b.rows)
    )
    if needs_baselines:
        for task, extra in paper.baseline_tasks.items():
            for s in base_seeds:
                cell(
                    f"baseline-{slug(task)}-s{s}",
                    "baseline",
                    ["scheduler=single", f"scheduler.task={task}", *extra, f"seed={s}"],
                )

    where: dict[tuple[str, str, int], Cell] = {}
    for block in paper.blocks:
        for mname, rows in block.rows.items():
            m = paper.methods[mname]
            if m.skip:
                continue
            for row in filter(paper.runs_row, rows):
                setting = paper.block_setting(block, row, mname)
                if setting.task == AVERAGE and (m.single_task or block.split == TRANSFER):
                    continue  # no mean over tasks of its own, or the mean over the rows
                label = slug(mname)
                if m.single_task:
                    label += f"-{slug(setting.task)}"
                if setting.overrides:
                    label += f"-{slug(' '.join(o.partition('=')[2] for o in setting.overrides))}"
                extra = [f"scheduler.task={setting.task}"] if m.single_task else []
                for s in seeds:
                    if (mname, row, s) in where:
                        continue
                    search = None
                    if m.search:
                        search = cell(
                            f"{label}-search-s{s}",
                            "search",
                            [
                                *setting.overrides,
                                f"scheduler={m.search['scheduler']}",
                                *m.search["overrides"],
                                f"seed={s}",
                            ],
                        )
                        extra_path = [f"scheduler.path={out / search.name / LEARNED}"]
                    else:
                        extra_path = []
                    baselines = [f"scheduler.baselines={out / 'baselines.json'}"] * m.baselines
                    c = cell(
                        f"{label}-s{s}",
                        "run",
                        [
                            *setting.overrides,
                            f"scheduler={m.scheduler}",
                            *m.overrides,
                            *extra,
                            *baselines,
                            *extra_path,
                            f"seed={s}",
                        ],
                    )
                    if search is not None and search not in c.depends:
                        c.depends.append(search)
                    c.needs_baselines |= m.baselines
                    where[mname, row, s] = c
    order = {"baseline": 0, "search": 1, "run": 2}
    ordered = sorted(cells.values(), key=lambda c: order[c.phase])
    return Plan(experiment, out, paper, seeds, ordered, where)


LEARNED = "learned_schedule.json"  # what a reinforce_policy search run leaves for fixed_schedule


# --- what is already there -----------------------------------------------------------------------
def saved_overrides(run_dir: Path) -> list[str] | None:
    try:
        return list(json.loads((run_dir / "run.json").read_text())["overrides"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def inspect(plan: Plan) -> None:
    """Each cell's state from its directory: reuse (results.json), resume (an unfinished run),
    or new; a directory holding a run made with other overrides is an error."""
    from mtlrun.run_dir import holds_run

    stale = []
    for c in plan.cells:
        d = plan.out / c.name
        saved = saved_overrides(d)
        if saved is not None and sorted(saved) != sorted(c.overrides):
            extra = sorted(set(saved) ^ set(c.overrides))
            stale.append(f"{d} (differs in: {' '.join(extra)})")
        if (d / "results.json").is_file():
            c.state = "reuse"
        elif holds_run(d):
            c.state = "resume"
    if stale:
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        raise ReproduceError(
            f"{len(stale)} run director{'y holds' if len(stale) == 1 else 'ies hold'} a run made "
            f"with other overrides: {'; '.join(stale[:3])}{more}; choose another --out, or "
            "remove those directories to run them again"
        )


def select_methods(plan: Plan, chosen: list[str]) -> int:
    """--method: cells that no chosen method needs are left out (state `skipped`) unless they
    finished already; a method is chosen by its name in the table or by its scheduler. The
    number left out."""
    methods = plan.paper.methods
    picked = {n for n, m in methods.items() if n in chosen or m.scheduler in chosen}
    known = picked | {methods[n].scheduler for n in picked}
    unknown = [x for x in chosen if x not in known]
    if unknown:
        choices = ", ".join(f"{n} ({m.scheduler})" if m.scheduler else n
                            for n, m in methods.items())  # fmt: skip
        raise ReproduceError(f"--method {unknown[0]} is not a method of {plan.experiment}; "
                             f"choose one of: {choices}")  # fmt: skip
    wanted = [d for (mname, _, _), c in plan.where.items() if mname in picked
              for d in (c, *c.depends)]  # fmt: skip
    if any(c.needs_baselines for c in wanted):
        wanted += [c for c in plan.cells if c.phase == "baseline"]
    keep = {id(c) for c in wanted}  # cells are unhashable dataclasses
    left_out = 0
    for c in plan.cells:
        if c.state in ("new", "resume") and id(c) not in keep:
            c.state, c.problem = "skipped", "not run: not chosen by --method"
            left_out += 1
    return left_out


# --- running -------------------------------------------------------------------------------------
def mtlrun_exe() -> str:
    here = Path(sys.executable).with_name("mtlrun")
    found = str(here) if here.exists() else shutil.which("mtlrun")
    if not found:
        raise ReproduceError("the mtlrun command is not installed (pip install -e .)")
    return found


def command(plan: Plan, c: Cell) -> list[str]:
    d = plan.out / c.name
    if c.state == "resume":
        return ["mtlrun", f"trainer.resume={d}"]
    return ["mtlrun", *c.overrides, f"hydra.run.dir={d}"]


def write_baselines(plan: Plan) -> str | None:
    """<out>/baselines.json from the finished single-task runs (mean dev score per task over
    seeds); the reason there is none, if some task has no finished run."""
    from mtlrun.report.sweep import baselines as mean_dev
    from mtlrun.report.sweep import read_run

    runs = [read_run(plan.out / c.name) for c in plan.cells if c.phase == "baseline"]
    scores = mean_dev(runs)
    missing = [t for t in plan.paper.baseline_tasks if t not in scores]
    bad = [t for t, v in scores.items() if not v > 0]  # NaN too
    if missing or bad:
        plan.baselines_file.unlink(missing_ok=True)  # never an older run's scores
    if missing:
        return f"no finished single-task baseline for {', '.join(missing)}"
    if bad:
        return f"single-task baseline dev score is 0 for {', '.join(bad)}"
    write_text_atomic(plan.baselines_file, json.dumps(scores, indent=2, sort_keys=True) + "\n")
    return None


def run_cells(plan: Plan, jobs: int, say) -> None:
    exe = mtlrun_exe()
    logs = plan.out / "logs"
    lock = threading.Lock()
    todo = [c for c in plan.cells if c.state in ("new", "resume")]
    counter = {"n": 0}

    def run_one(c: Cell) -> None:
        blocked = [d.name for d in c.depends if d.state in ("failed", "blocked")]
        if blocked:
            c.state, c.problem = "blocked", f"its search run failed: {', '.join(blocked)}"
            return
        if c.needs_baselines and not plan.baselines_file.is_file():
            c.state, c.problem = "blocked", "no baselines.json (a single-task baseline failed)"
            return
        cmd = [exe, *command(plan, c)[1:]]
        logs.mkdir(parents=True, exist_ok=True)
        with lock:
            counter["n"] += 1
            what = "resume" if c.state == "resume" else "run"
            say(f"[{counter['n']}/{len(todo)}] {c.name}: {what}")
        with open(logs / f"{c.name}.log", "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        if proc.returncode == 0 and (plan.out / c.name / "results.json").is_file():
            c.state = "done"
        else:
            c.state, c.problem = "failed", last_error(logs / f"{c.name}.log", proc.returncode)
        with lock:
            say(f"  {c.name}: {c.state}" + (f" ({c.problem})" if c.problem else ""))

    for phase in ("baseline", "search", "run"):
        cells = [c for c in todo if c.phase == phase]
        if cells:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(run_one, cells))
        if phase == "baseline" and any(c.needs_baselines for c in plan.cells):
            why = write_baselines(plan)
            if why:
                say(f"baselines: {why}")


def last_error(log: Path, status: int) -> str:
    """The run's one-line `mtlrun: error: ...`, else its last line, else its exit status."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    for ln in reversed(lines):
        if ln.startswith("mtlrun: error"):
            return ln.removeprefix("mtlrun: error: ").removeprefix("mtlrun: error:")
    tail = lines[-1] if lines else ""
    return f"exit status {status}" + (f": {tail[:200]}" if tail else "") + f" (log: {log})"


# --- the comparison ------------------------------------------------------------------------------
@dataclass
class Row:
    block: Block
    method: str
    scheduler: str
    row: str
    ours: float | None  # %, mean over seeds
    sd: float | None  # %, sample std (n >= 2)
    n: int
    paper: float  # %
    printed: float  # as the paper prints it
    note: str = ""  # not run / failed / collapsed

    @property
    def gap(self) -> float | None:
        return None if self.ours is None else self.ours - self.paper


def score(results: dict[str, Any], task: str, split: str, metric: str) -> float | None:
    """One number of a run's results.json (a fraction), or None when the run does not have it."""

    def num(x: Any) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    if split == TRANSFER:  # the held-out task's cross-validated score
        held = results.get("transfer") or {}
        return num(held.get("score")) if held.get("task") == task else None
    if task == AVERAGE:
        primary = {r.get("metric") for r in results["tasks"].values()}
        if metric == "primary" or primary == {metric}:
            return num((results.get("aggregate") or {}).get(split))
        return num((results.get("aggregate_metrics") or {}).get(metric, {}).get(split))
    r = results["tasks"].get(task)
    if r is None:
        return None
    if metric in ("primary", r.get("metric")):
        return num(r.get(split))
    return num((r.get("metrics") or {}).get(split, {}).get(metric))


def compare(plan: Plan) -> list[Row]:
    from mtlrun.report.sweep import read_run

    runs = {c.name: read_run(plan.out / c.name) for c in plan.cells}
    factor = UNITS[plan.paper.unit]
    out = []
    for block in plan.paper.blocks:
        for mname, rows in block.rows.items():
            m = plan.paper.methods[mname]
            sched = m.scheduler or "–"
            seed_values: dict[str, dict[int, float]] = {}  # row -> seed -> ours (%)
            # a transfer block's average row comes last: the mean over its other rows
            order = sorted(filter(plan.paper.runs_row, rows),
                           key=lambda r: block.split == TRANSFER and r == AVERAGE)  # fmt: skip
            for row in order:
                printed = rows[row]
                paper_pct = printed * factor
                task = plan.paper.block_setting(block, row, mname).task
                why = m.skip or (
                    m.single_task and task == AVERAGE and "a single-task method has no average"
                )
                if why:
                    row_ = Row(block, mname, sched, row, None, None, 0, paper_pct, printed)
                    row_.note = f"not run: {why}"
                    out.append(row_)
                    continue
                if block.split == TRANSFER and task == AVERAGE:
                    out.append(mean_row(block, mname, sched, printed, paper_pct, seed_values,
                                        plan.seeds, len(rows) - 1))  # fmt: skip
                    continue
                values, problems, collapsed, uniform_like = [], [], 0, 0
                for s in plan.seeds:
                    c = plan.where[mname, row, s]
                    run = runs[c.name]
                    if run.results is None:
                        problems.append(c.problem or run.problem or "no results")
                        continue
                    collapsed += run.collapse is not None
                    uniform_like += run.uniform_like
                    v = score(run.results, task, block.split, block.metric)
                    if v is not None:
                        values.append(100 * v)
                        seed_values.setdefault(row, {})[s] = 100 * v
                    else:
                        problems.append(f"no {block.split} {block.metric} of {task} in results")
                mean = statistics.fmean(values) if values else None
                sd = statistics.stdev(values) if len(values) > 1 else None
                note = "; ".join(dict.fromkeys(problems))
                marks = [f"† collapsed in {collapsed} run(s)" if collapsed else "",
                         f"schedule like uniform sampling in {uniform_like} run(s)"
                         if uniform_like else "", note]  # fmt: skip
                note = "; ".join(x for x in marks if x)
                out.append(
                    Row(block, mname, sched, row, mean, sd, len(values), paper_pct, printed, note)
                )
    return out


def mean_row(
    block: Block, mname: str, sched: str, printed: float, paper_pct: float,
    seed_values: dict[str, dict[int, float]], seeds: list[int], paper_rows: int,
) -> Row:  # fmt: skip
    """A transfer block's average: per seed, the mean over the rows run (a seed counts only
    when every row has it), then mean ± sd over those seeds."""
    per_seed = [statistics.fmean(v[s] for v in seed_values.values()) for s in seeds
                if seed_values and all(s in v for v in seed_values.values())]  # fmt: skip
    mean = statistics.fmean(per_seed) if per_seed else None
    sd = statistics.stdev(per_seed) if len(per_seed) > 1 else None
    row = Row(block, mname, sched, AVERAGE, mean, sd, len(per_seed), paper_pct, printed)
    if len(seed_values) < paper_rows:
        row.note = f"ours: mean over {len(seed_values)} of the paper's {paper_rows} rows"
    return row


def ours_text(r: Row, n_seeds: int) -> str:
    """mean ± sd (%), with (n=K) where seeds are missing."""
    if r.ours is None:
        return "–"
    text = f"{r.ours:.2f}" + (f" ± {r.sd:.2f}" if r.sd is not None else "")
    return text + (f" (n={r.n})" if r.n < n_seeds else "")


def gap_text(r: Row) -> str:
    return "–" if r.gap is None else f"{r.gap:+.2f}"


def block_title(paper: Paper, b: Block) -> str:
    metric = "each task's metric" if b.metric == "primary" else b.metric
    if b.split == TRANSFER:
        return f"held-out task (trained on the others, frozen encoder, new head), {metric}"
    return f"{b.split}, {metric}"


def table_lines(paper: Paper, rows: list[Row], seeds: list[int]) -> list[str]:
    """The comparison as Markdown: one table per block of the paper's table."""
    lines: list[str] = []
    for b in paper.blocks:
        lines += [
            "",
            f"### {block_title(paper, b)} (%)",
            "",
            "| method | scheduler | row | ours | paper | gap | note |",
            "|---|---|---|---:|---:|---:|---|",
        ]
        for r in (r for r in rows if r.block is b):
            ours = ours_text(r, len(seeds))
            cells = [
                r.method,
                f"`{r.scheduler}`",
                paper.label(r.row),
                ours,
                f"{r.paper:.2f}",
                gap_text(r),
                r.note,
            ]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def to_markdown(plan: Plan, rows: list[Row]) -> str:
    p = plan.paper
    lines = [
        f"# {plan.experiment}: {p.cite()}",
        "",
        f"ours = mean ± sample std over seeds {', '.join(map(str, plan.seeds))} in %; paper "
        f"= the number the paper prints{' (×100)' if p.unit == 'fraction' else ''}; gap = "
        f"ours − paper. Runs in `{plan.out}`.",
    ]
    if not p.comparable:
        lines += [
            "",
            "**Not comparable with the paper's protocol** (see the notes): the gap "
            "only says how far this closest runnable form lands from the paper.",
        ]
    if p.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in p.notes]
    lines += table_lines(p, rows, plan.seeds)
    failed = [c for c in plan.cells if c.state in ("failed", "blocked")]
    if failed:
        lines += ["", f"## Failed or blocked runs ({len(failed)})", ""]
        lines += [f"- `{plan.out / c.name}`: {c.problem}" for c in failed]
    return "\n".join(lines) + "\n"


def to_csv(plan: Plan, rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "split",
            "metric",
            "method",
            "scheduler",
            "row",
            "paper_label",
            "ours_pct",
            "sd_pct",
            "n",
            "paper_pct",
            "paper_printed",
            "gap_pct",
            "note",
        ]
    )
    for r in rows:
        w.writerow(
            [
                r.block.split,
                r.block.metric,
                r.method,
                r.scheduler,
                r.row,
                plan.paper.label(r.row),
                "" if r.ours is None else r.ours,
                "" if r.sd is None else r.sd,
                r.n,
                r.paper,
                r.printed,
                "" if r.gap is None else r.gap,
                r.note,
            ]
        )
    return buf.getvalue()


def print_table(plan: Plan, rows: list[Row], console) -> None:
    from rich.table import Table
    from rich.text import Text

    p = plan.paper
    console.print(Text(p.cite(), style="bold"))
    if not p.comparable:
        console.print(
            Text(
                "not comparable with the paper's protocol (see the notes in reproduce.md)",
                style="bold yellow",
            )
        )
    for b in p.blocks:
        t = Table(
            title=f"{block_title(p, b)} (%): ours (mean ± sd over {len(plan.seeds)} "
            "seed(s)) vs the paper"
        )
        for name, justify in [
            ("method", "left"),
            ("scheduler", "left"),
            ("row", "left"),
            ("ours", "right"),
            ("paper", "right"),
            ("gap", "right"),
            ("note", "left"),
        ]:
            t.add_column(name, justify=justify)
        last = None
        for r in (r for r in rows if r.block is b):
            ours = ours_text(r, len(plan.seeds))
            t.add_row(
                Text(r.method if r.method != last else ""),
                Text(r.scheduler),
                Text(p.label(r.row)),
                ours,
                f"{r.paper:.2f}",
                gap_text(r),
                Text(r.note),
                end_section=False,
            )
            last = r.method
        console.print(t)
    failed = [c for c in plan.cells if c.state in ("failed", "blocked")]
    if failed:
        console.print(Text(f"{len(failed)} failed or blocked run(s):", style="bold yellow"))
        for c in failed:
            console.print(Text(f"  {plan.out / c.name}: {c.problem}"))


# --- the command ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run the sweep one paper table needs (single-task baselines first where a "
        "method needs them, then methods x seeds) as mtlrun runs, reusing finished runs, and "
        "print our numbers beside the paper's. Experiments: " + ", ".join(experiments()),
    )
    p.add_argument("experiment", help="a preset of conf/experiment/, e.g. qls_table2_cpu")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="OVERRIDE",
        help="mtlrun overrides for every run, e.g. data_dir=DATA debug=tiny",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where the run directories go (default: runs/<experiment>)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="run N seeds (the experiment's first N; default: all of them)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="runs at once (default 1; on 2 cores with hardware.num_threads=1: 2)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the commands and what would be reused, run nothing",
    )
    p.add_argument(
        "--method",
        action="append",
        metavar="M",
        help="run only this method's cells and what they need (its name in the table or its "
        "scheduler; repeat for more); the table still shows every finished cell",
    )
    return p.parse_intermixed_args(argv)


def dry_run(plan: Plan, say) -> None:
    say(f"# {plan.experiment}: {len(plan.cells)} run(s) in {plan.out}")
    baselines_said = False
    for c in plan.cells:
        if (
            c.phase != "baseline"
            and not baselines_said
            and any(x.phase == "baseline" for x in plan.cells)
        ):
            say(f"# then: mean dev scores of the single-task runs -> {plan.baselines_file}")
            baselines_said = True
        if c.state == "reuse":
            say(f"# reuse {plan.out / c.name} (has results.json)")
        elif c.state == "skipped":
            say(f"# skip {plan.out / c.name} (not chosen by --method)")
        else:
            say(shlex.join(command(plan, c)))


def reproduce(args: argparse.Namespace, console) -> int:
    overrides = list(args.overrides)
    check_user_overrides(args.experiment, overrides)
    if args.jobs < 1:
        raise ReproduceError(f"--jobs must be >= 1 (got {args.jobs})")
    paper, _ = load_paper(args.experiment, overrides)
    out = args.out if args.out is not None else Path("runs") / args.experiment
    plan = make_plan(args.experiment, paper, out, overrides, args.seeds)
    inspect(plan)
    left_out = select_methods(plan, args.method) if args.method else 0

    def say(line: str) -> None:
        print(line, flush=True)  # plain: whole commands, never wrapped or read as markup

    if args.dry_run:
        dry_run(plan, say)
        return 0
    reused = sum(c.state == "reuse" for c in plan.cells)
    skipped = f", {left_out} left out by --method" if left_out else ""
    say(f"{plan.experiment}: {len(plan.cells)} run(s) in {plan.out}, {reused} finished "
        f"already{skipped}")  # fmt: skip
    run_cells(plan, args.jobs, say)
    rows = compare(plan)
    write_text_atomic(plan.out / "reproduce.md", to_markdown(plan, rows))
    write_text_atomic(plan.out / "reproduce.csv", to_csv(plan, rows))
    print_table(plan, rows, console)
    say(f"table in {plan.out}/reproduce.{{md,csv}}")
    return 0 if any(r.ours is not None for r in rows) else 1


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console

    args = parse_args(argv)
    console = Console(width=max(100, shutil.get_terminal_size((160, 24)).columns))
    try:
        status = reproduce(args, console)
    except ReproduceError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(e.status)
    except OSError as e:  # an unwritable --out, a vanished file
        where = f"{e.filename}: " if e.filename else ""
        print(f"{PROG}: error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; run the same command again to continue (finished runs are "
            "kept, unfinished ones resume)",
            file=sys.stderr,
        )
        sys.exit(130)
    if status:
        print(f"{PROG}: error: no run finished; see the failures above", file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
