"""Figures of a run (`plot_run`: into <run dir>/plots/) and of a sweep (`plot_sweep`: into
mtlrun-report's --out), each as PNG and PDF, written atomically.

A run's figures, each drawn only when it applies (a stale file of a skipped one is removed):

* `dev_curves`: every task's dev score over the evaluations, the best checkpoint marked;
* `task_probabilities`: heatmap of the sampling distribution p (tasks × evaluations), for runs
  that sample tasks, and under it a heatmap of the scheduler's per-task uncertainty estimates
  when its logged state has them (active uncertainty's u_k, Fang & Alqatari's task uncertainty
  over training; Kendall weighting's σ_k²);
* `loss_weights`: w and lr_scale per task over the evaluations, when one of them is not 1;
* `schedule`: each task's share of the training in windows of steps (schedule.csv), for runs
  that choose tasks (single or mixed step mode).

The data behind each figure comes from a pure function of metrics.jsonl's dev lines (or of
schedule.csv's rows), tested apart from the drawing. matplotlib is imported only to draw, and
only its object API with the Agg renderer: no pyplot, no display, no global state.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlrun.atomic import write_atomic
from mtlrun.errors import MtlrunError
from mtlrun.report.time_to_accuracy import read_dev_lines, score_of

log = logging.getLogger("mtlrun")

RUN_FIGURES = ("dev_curves", "task_probabilities", "loss_weights", "schedule")
FORMATS = ("png", "pdf")
DPI = 120
SCHEDULE_WINDOWS = 40  # windows of the schedule figure (fewer when the run has fewer steps)
# per-task uncertainty estimates in a scheduler's logged state: key -> (transform, colorbar
# label, what they are); u: active_uncertainty, s = log σ²: kendall_uncertainty
UNCERTAINTY = {
    "u": (lambda x: x, "u_k", "epistemic uncertainty (MC dropout)"),
    "s": (math.exp, "σ_k² = exp(s_k)", "homoscedastic uncertainty σ_k²"),
}

Lines = list[dict[str, Any]]


# --- the data of a run's figures ------------------------------------------------------------------
def task_order(lines: Lines) -> list[str]:
    """Tasks in the order the run logs them."""
    return list(dict.fromkeys(r["task"] for r in lines))


def dev_curves(lines: Lines) -> dict[str, tuple[list[int], list[float]]]:
    """{task: (steps, dev scores)} in step order; an undefined score is NaN."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for r in sorted(lines, key=lambda r: r["step"]):
        steps, scores = out.setdefault(r["task"], ([], []))
        steps.append(r["step"])
        scores.append(score_of(r))
    return out


def best_step(lines: Lines, higher_is_better: Mapping[str, bool] | None = None) -> int | None:
    """The evaluation with the best mean dev score over tasks (each turned so that higher is
    better; undefined scores left out), the first one on a tie: what the trainer keeps with
    trainer.select_by=mean. None without a defined score."""
    higher_is_better = higher_is_better or {}
    by_step: dict[int, list[float]] = {}
    for r in lines:
        x = score_of(r)
        if not math.isnan(x):
            by_step.setdefault(r["step"], []).append(x if higher_is_better.get(r["task"], True)
                                                     else -x)  # fmt: skip
    if not by_step:
        return None
    return max(sorted(by_step), key=lambda s: float(np.mean(by_step[s])))


@dataclass
class Heatmap:
    tasks: list[str]
    steps: list[int]
    values: np.ndarray  # [tasks, steps], NaN where nothing was logged
    label: str  # of the colour bar
    what: str = ""  # what the values are, for the title


def _matrix(lines: Lines, value) -> tuple[list[str], list[int], np.ndarray]:
    """`value(line)` (a float or None) for every task × evaluation step."""
    tasks, steps = task_order(lines), sorted({r["step"] for r in lines})
    row, col = {t: i for i, t in enumerate(tasks)}, {s: j for j, s in enumerate(steps)}
    m = np.full((len(tasks), len(steps)), np.nan)
    for r in lines:
        v = value(r)
        if v is not None:
            m[row[r["task"]], col[r["step"]]] = v
    return tasks, steps, m


def probabilities(lines: Lines) -> Heatmap:
    """The task-sampling probability p of every task at every evaluation."""
    tasks, steps, m = _matrix(lines, lambda r: r.get("p"))
    return Heatmap(tasks, steps, m, "sampling probability p_k")


def uncertainties(lines: Lines) -> Heatmap | None:
    """The scheduler's per-task uncertainty estimates at every evaluation (the state is the
    same on every line of an evaluation; task k's estimate is entry k of its list), or None when
    the logged state has none. Before active uncertainty's first estimate (`estimates` = 0) its
    u is the prior 1, not a measurement, and is left blank."""
    tasks = task_order(lines)
    index = {t: k for k, t in enumerate(tasks)}
    for key, (transform, label, what) in UNCERTAINTY.items():
        states = [r.get("scheduler") or {} for r in lines]
        if not any(_per_task_list(s.get(key), len(tasks)) for s in states):
            continue

        def value(r: dict[str, Any], key: str = key, transform=transform) -> float | None:
            state = r.get("scheduler") or {}
            values = state.get(key)
            if not _per_task_list(values, len(tasks)) or state.get("estimates", 1) == 0:
                return None
            v = values[index[r["task"]]]
            return None if v is None else transform(float(v))

        _, steps, m = _matrix(lines, value)
        return Heatmap(tasks, steps, m, label, what)
    return None


def _per_task_list(values: Any, k: int) -> bool:
    return isinstance(values, list) and len(values) == k and all(
        v is None or isinstance(v, int | float) for v in values
    )  # fmt: skip


def weight_series(lines: Lines) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """{"w": {task: (steps, values)}, "lr_scale": ...} for each of the two that is not 1
    throughout (a run without loss weights or learning-rate scales gets {})."""
    out = {}
    for key in ("w", "lr_scale"):
        if all(r.get(key, 1.0) in (1, 1.0, None) for r in lines):
            continue
        series: dict[str, tuple[list[int], list[float]]] = {}
        for r in sorted(lines, key=lambda r: r["step"]):
            steps, values = series.setdefault(r["task"], ([], []))
            steps.append(r["step"])
            values.append(math.nan if r.get(key) is None else float(r[key]))
        out[key] = series
    return out


def read_schedule(path: Path) -> list[tuple[int, dict[str, float]]]:
    """schedule.csv as (step, {task: amount}): a step of SINGLE mode trains 1 minibatch of its
    task, of MIXED mode `count` examples of each task; ALL mode's "*" rows give {}. A missing
    file gives []; a damaged one is a one-line MtlrunError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise MtlrunError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    rows = []
    for number, line in enumerate(text.splitlines()[1:], 2):
        if not line:
            continue
        step, sep, what = line.partition(",")
        try:
            if not sep or not what:
                raise ValueError
            amounts: dict[str, float] = {}
            if what != "*":
                for part in what.split("|"):
                    task, colon, count = part.rpartition(":")
                    if colon:
                        amounts[task] = amounts.get(task, 0.0) + float(int(count))
                    else:
                        amounts[part] = amounts.get(part, 0.0) + 1.0
            rows.append((int(step), amounts))
        except ValueError:
            raise MtlrunError(f"{path}, line {number}: not a 'step,task' row; damaged?") from None
    return rows


@dataclass
class Shares:
    tasks: list[str]
    edges: np.ndarray  # [windows + 1]: window w covers steps edges[w] .. edges[w + 1] - 1
    values: np.ndarray  # [tasks, windows], each column sums to 1


def schedule_shares(
    rows: list[tuple[int, dict[str, float]]], tasks: list[str], windows: int = SCHEDULE_WINDOWS
) -> Shares | None:
    """Each task's share of what was trained (minibatches, or examples in MIXED mode) in each
    window of consecutive steps; the windows are equally long, the last one maybe shorter.
    `tasks` first, in their order, then any other task the schedule names. None when nothing
    was chosen (ALL mode, or no schedule)."""
    chosen = [(s, a) for s, a in rows if a]
    if not chosen:
        return None
    names = list(tasks) + sorted({t for _, a in chosen for t in a} - set(tasks))
    first, last = min(s for s, _ in chosen), max(s for s, _ in chosen)
    width = max(1, math.ceil((last - first + 1) / windows))
    count = (last - first) // width + 1
    totals = np.zeros((len(names), count))
    index = {t: k for k, t in enumerate(names)}
    for step, amounts in chosen:
        for task, amount in amounts.items():
            totals[index[task], (step - first) // width] += amount
    spent = totals.sum(axis=0)
    shares = np.divide(totals, spent, out=np.zeros_like(totals), where=spent > 0)
    edges = np.minimum(first + width * np.arange(count + 1), last + 1)
    return Shares(names, edges, shares)


# --- drawing ----------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # the Agg canvas; no pyplot, no display

    return Figure(figsize=(width, height), layout="constrained")


def save(fig, directory: Path, name: str) -> list[Path]:
    """`fig` as <directory>/<name>.png and .pdf, each written atomically."""
    written = []
    for fmt in FORMATS:
        buf = io.BytesIO()  # render first: a failed render leaves no file behind
        fig.savefig(buf, format=fmt, dpi=DPI)
        fig.set_layout_engine("none")  # keep the layout just computed: half the drawing time
        path = directory / f"{name}.{fmt}"
        data = buf.getvalue()
        write_atomic(path, lambda f, data=data: f.write(data), mode="wb")
        written.append(path)
    return written


def _colors(n: int) -> list:
    """n distinct colours: the default 10, then tab20 (multidomain16's 16 tasks), then a ramp."""
    from matplotlib import colormaps

    if n <= 10:
        return [f"C{i}" for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def _legend(ax, entries: int) -> None:
    """Inside the axes for a few entries; to the right of them for many, which would hide the
    curves."""
    if entries <= 6:
        ax.legend(fontsize="small", loc="best")
    else:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1),
                  ncols=1 + entries // 24)  # fmt: skip


def _score_axis(metrics: Iterable[str]) -> str:
    """The score axis: scores are logged as fractions and drawn ×100, i.e. percent, or BLEU
    points for BLEU."""
    kinds = set(metrics)
    if kinds == {"bleu"}:
        return "dev BLEU"
    return "dev score (%; BLEU points for BLEU)" if "bleu" in kinds else "dev score (%)"


def draw_dev_curves(lines: Lines, best: int | None):
    curves = dev_curves(lines)
    metric = {r["task"]: r.get("metric", "") for r in lines}
    fig = _figure(7, 4.2)
    ax = fig.add_subplot()
    for color, (task, (steps, scores)) in zip(_colors(len(curves)), curves.items(), strict=True):
        y = 100 * np.asarray(scores)
        marker = "." if len(steps) < 40 else None
        (line,) = ax.plot(steps, y, marker=marker, color=color, label=task)
        if best is not None and best in steps:
            ax.plot([best], [y[steps.index(best)]], marker="*", markersize=12,
                    color=line.get_color(), linestyle="none")  # fmt: skip
    if best is not None:
        ax.axvline(best, color="0.4", linestyle="--", linewidth=1,
                   label=f"best checkpoint (step {best})")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel(_score_axis(metric.values()))
    ax.set_title("Dev score per task")
    ax.grid(alpha=0.3)
    _legend(ax, len(curves) + (best is not None))
    return fig


def _heatmap(fig, ax, h: Heatmap, cmap: str, vmin: float | None = None) -> None:
    image = ax.imshow(np.ma.masked_invalid(h.values), aspect="auto", interpolation="nearest",
                      cmap=cmap, vmin=vmin)  # fmt: skip
    ax.set_yticks(range(len(h.tasks)), h.tasks)
    ticks = np.unique(np.linspace(0, len(h.steps) - 1, min(len(h.steps), 8)).round().astype(int))
    ax.set_xticks(ticks, [str(h.steps[j]) for j in ticks])
    ax.set_xlabel("step (evaluation)")
    fig.colorbar(image, ax=ax, label=h.label)


def draw_task_probabilities(p: Heatmap | None, u: Heatmap | None):
    panels = []  # p from 0, so that a uniform distribution does not look like a spread one
    if p is not None:
        panels.append((p, "viridis", 0.0, "Task sampling distribution (after each evaluation)"))
    if u is not None:
        blank = " (blank: none yet)" if np.isnan(u.values).any() else ""
        panels.append((u, "magma", None, f"Scheduler's {u.what}{blank}"))
    if not panels:
        return None
    height = 1.2 + 0.35 * len(panels[0][0].tasks)
    fig = _figure(7, max(2.6, height) * len(panels))
    for i, (h, cmap, vmin, title) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        _heatmap(fig, ax, h, cmap, vmin)
        ax.set_title(title)
    return fig


def draw_loss_weights(series: dict[str, dict[str, tuple[list[int], list[float]]]]):
    if not series:
        return None
    labels = {"w": "loss weight w_k", "lr_scale": "learning-rate scale"}
    fig = _figure(7, 3.4 * len(series))
    for i, (key, per_task) in enumerate(series.items()):
        ax = fig.add_subplot(len(series), 1, i + 1)
        colors = _colors(len(per_task))
        for color, (task, (steps, values)) in zip(colors, per_task.items(), strict=True):
            marker = "." if len(steps) < 40 else None
            ax.plot(steps, values, marker=marker, color=color, label=task)
        ax.set_xlabel("step")
        ax.set_ylabel(labels[key])
        ax.grid(alpha=0.3)
        _legend(ax, len(per_task))
    titles = {"w": "Loss weight", "lr_scale": "Learning-rate scale"}
    fig.suptitle(" and ".join(titles[k] for k in series) + " per task")
    return fig


def draw_schedule(shares: Shares | None):
    if shares is None:
        return None
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    # a block per window: the last value repeated so that step="post" draws the last window
    values = np.concatenate([shares.values, shares.values[:, -1:]], axis=1)
    ax.stackplot(shares.edges, values, labels=shares.tasks, colors=_colors(len(shares.tasks)),
                 step="post")  # fmt: skip
    ax.set_xlim(shares.edges[0], shares.edges[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("share of the window's training")
    ax.set_title("Schedule: each task's share of the training over time")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


# --- a run ------------------------------------------------------------------------------------
def plot_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Draw every figure that applies to the run in `run_dir` into `out` (default
    <run_dir>/plots); returns the files written. A missing, damaged or empty metrics.jsonl (or
    a damaged schedule.csv) is a one-line MtlrunError."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "plots"
    lines = read_dev_lines(run_dir / "metrics.jsonl")
    if not lines:
        raise MtlrunError(f"{run_dir / 'metrics.jsonl'}: no evaluation yet, nothing to plot")
    tasks = task_order(lines)
    results = _results(run_dir)
    higher = {t: bool(r.get("higher_is_better", True))
              for t, r in (results.get("tasks") or {}).items()}  # fmt: skip
    best = results.get("best_step")
    best = best if isinstance(best, int) else best_step(lines, higher)
    rows = read_schedule(run_dir / "schedule.csv")
    samples = any(a for _, a in rows)  # ALL mode trains every task: p is not used
    figures = {
        "dev_curves": lambda: draw_dev_curves(lines, best),
        "task_probabilities": lambda: draw_task_probabilities(
            probabilities(lines) if samples else None, uncertainties(lines)
        ),
        "loss_weights": lambda: draw_loss_weights(weight_series(lines)),
        "schedule": lambda: draw_schedule(schedule_shares(rows, tasks)),
    }
    written = []
    for name in RUN_FIGURES:
        fig = figures[name]()
        if fig is None:  # does not apply: no empty figure, and no stale one from a rerun
            for fmt in FORMATS:
                (out / f"{name}.{fmt}").unlink(missing_ok=True)
            continue
        written += save(fig, out, name)
    return written


def _results(run_dir: Path) -> dict[str, Any]:
    """results.json when the run has finished and it reads; {} otherwise (the figures then
    find the best step themselves)."""
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def plot_run_quietly(run_dir: Path) -> list[Path]:
    """plot_run at the end of a run: a figure that cannot be drawn is a warning, never a
    failed run (the results are already written)."""
    try:
        written = plot_run(run_dir)
    except Exception as e:  # matplotlib's own errors too: the results are written already
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        log.warning("plots not drawn: %s", message)
        return []
    log.info("%d plots in %s", len(written) // len(FORMATS), run_dir / "plots")
    return written


# --- a sweep ----------------------------------------------------------------------------------
@dataclass
class Band:
    """One column's curve of one task: mean over the column's runs at each step, min and max."""

    steps: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    runs: int


def sweep_curves(groups: Mapping[str, list[Lines]]) -> dict[str, dict[str, Band]]:
    """{task: {column: Band}} from each column's runs' metrics.jsonl dev lines. At each step the
    runs that evaluated it count (a run cut short drops out of the later steps)."""
    out: dict[str, dict[str, Band]] = {}
    for column, runs in groups.items():
        per_task: dict[str, dict[int, list[float]]] = {}
        for lines in runs:
            for task, (steps, scores) in dev_curves(lines).items():
                at = per_task.setdefault(task, {})
                for s, x in zip(steps, scores, strict=True):
                    if not math.isnan(x):
                        at.setdefault(s, []).append(x)
        for task, at in per_task.items():
            steps = sorted(at)
            out.setdefault(task, {})[column] = Band(
                steps,
                [float(np.mean(at[s])) for s in steps],
                [min(at[s]) for s in steps],
                [max(at[s]) for s in steps],
                len(runs),
            )
    return out


def plot_sweep(groups: Mapping[str, list[Lines]], out: Path, by: str) -> list[Path]:
    """Per-task dev curves of a sweep into <out>/dev_curves.png and .pdf: one panel per task,
    one line per column (the mean over its runs, e.g. seeds) with a min–max band."""
    curves = sweep_curves(groups)
    if not curves:
        return []
    metric = {r["task"]: r.get("metric", "") for runs in groups.values() for ls in runs for r in ls}
    ncols = min(3, len(curves))
    nrows = math.ceil(len(curves) / ncols)
    fig = _figure(4.6 * ncols, 3.3 * nrows + 0.6)
    colors = dict(zip(groups, _colors(len(groups)), strict=True))
    for i, (task, columns) in enumerate(curves.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for column, band in columns.items():
            ax.plot(band.steps, 100 * np.asarray(band.mean), color=colors[column],
                    label=f"{column} (n={band.runs})")  # fmt: skip
            ax.fill_between(band.steps, 100 * np.asarray(band.low), 100 * np.asarray(band.high),
                            color=colors[column], alpha=0.2, linewidth=0)  # fmt: skip
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.set_ylabel(_score_axis([metric.get(task, "")]))
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize="small", loc="best", title=by, title_fontsize="small")
    fig.suptitle(f"Dev score per task by {by}: mean over runs, band min–max")
    return save(fig, out, "dev_curves")


def read_sweep_lines(runs: Iterable[tuple[str, Path]]) -> dict[str, list[Lines]]:
    """{column: [each run's metrics.jsonl dev lines]} of (column, run dir) pairs, in order; a
    missing or damaged metrics.jsonl is a one-line MtlrunError."""
    groups: dict[str, list[Lines]] = {}
    for column, path in runs:
        groups.setdefault(column, []).append(read_dev_lines(path / "metrics.jsonl"))
    return groups
