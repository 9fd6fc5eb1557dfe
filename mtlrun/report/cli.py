"""The `mtlrun-report` command: one comparison table (tasks x swept setting) from a multirun sweep.

    mtlrun-report SWEEP_DIR [--by KEY] [--split test|dev] [--out DIR] [--baselines FILE]
                  [--plots] [--tta] [--ci] [--compare A B] [--noise-column COLUMN]
    mtlrun-report DIR DIR ... [options]   (any run directories and sweeps, as one sweep;
                                           the report goes where they meet)
    mtlrun-report RUN_DIR --plots [--out DIR]      (redraw one run's plots)

Writes report.md, report.csv and report.tex (atomically) and prints the table; --plots adds
dev_curves.png/.pdf (per-task dev curves, mean over each column's runs), --tta adds
time_to_accuracy.md/.csv. --ci adds bootstrap confidence intervals to the cells, --compare A B a
paired test of two columns over matching seeds (report.md, report_compare.csv/.tex); every
table carries the noise floor (mtlrun/report/stats.py, docs/report.md). Exit status: 0 ok;
1 no finished run in the sweep (the failed/unfinished ones are listed); 2 a usage mistake (not
a sweep, unknown --by key, --baselines on multi-task runs, a missing or damaged metrics.jsonl
for --plots, an unknown --compare or --noise-column column, fewer than 2 pairs to compare),
always as one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from mtlrun.atomic import write_text_atomic
from mtlrun.errors import MtlrunError
from mtlrun.report import plots
from mtlrun.report import time_to_accuracy as tta
from mtlrun.report.sweep import (
    UNSET,
    NotASweep,
    baselines,
    build_table,
    collect_runs,
    compare,
    read_run,
    setting,
)
from mtlrun.report.tables import (
    compare_csv,
    compare_latex,
    print_failures,
    print_table,
    to_csv,
    to_latex,
    to_markdown,
)


class ReportError(Exception):
    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mtlrun-report",
        description="Compare the runs of an `mtlrun -m` sweep: rows = tasks + average, columns = "
        "a swept setting, cells = mean ± sample std (ddof=1) in % over the other swept keys.",
    )
    p.add_argument(
        "sweep", type=Path, nargs="+",
        help="a multirun directory (hydra.sweep.dir), or any run directories and sweeps: "
        "their runs are compared as one sweep",
    )  # fmt: skip
    p.add_argument(
        "--by",
        default="scheduler",
        metavar="KEY",
        help="override key for the columns, e.g. scheduler.T or optimizer.lr "
        "(default: scheduler); read from the overrides, else config.yaml",
    )
    p.add_argument(
        "--split",
        choices=["test", "dev"],
        default="test",
        help="which scores to compare (default: test)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where to write report.md/.csv/.tex (default: the sweep dir)",
    )
    p.add_argument(
        "--baselines",
        type=Path,
        metavar="FILE",
        help="for a sweep of scheduler=single runs: write FILE, JSON {task: mean dev "
        "score}, for scheduler.baselines=FILE",
    )
    p.add_argument(
        "--plots",
        action="store_true",
        help="also draw dev_curves.png/.pdf: each task's dev score over steps, one line per "
        "column (mean over its runs) with a min-max band; given a run directory instead of a "
        "sweep, redraw that run's plots (into RUN_DIR/plots, or --out)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="also write time_to_accuracy.md/.csv: the step (and seconds) at which each task "
        "first reached 90/95/99 %% of its dev score at the best checkpoint",
    )
    p.add_argument(
        "--ci",
        action="store_true",
        help="add to each cell the 95 %% percentile bootstrap confidence interval of its mean "
        "over seeds, [lo, hi] (10,000 resamples, fixed RNG seed; none for one run)",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="paired comparison of columns A and B over runs that match in every other swept "
        "key (the seed): per task and average, mean difference A - B, paired t-test p and "
        "exact sign-flip permutation p, number of pairs",
    )
    p.add_argument(
        "--noise-column",
        metavar="COLUMN",
        help="the column whose sd over seeds is the noise floor printed under every table "
        "(default: uniform, with --by scheduler)",
    )
    return p.parse_args(argv)


def report(args: argparse.Namespace, console: Console) -> None:
    paths = [p.expanduser() for p in args.sweep]
    for path in paths:
        if not path.is_dir():
            raise ReportError(f"{path}: no such directory")
    # where the report goes by default: the sweep, or the directory holding the runs given
    sweep_dir = paths[0] if len(paths) == 1 else Path(os.path.commonpath(paths))
    if args.plots and len(paths) == 1 and (sweep_dir / "metrics.jsonl").is_file():
        _plot_run(sweep_dir, args.out, console)  # one run: redraw its plots
        return
    runs = []
    for path in paths:
        if (path / ".hydra").is_dir() or (path / "run.json").is_file():  # one run
            runs.append(read_run(path))
            continue
        try:
            runs += collect_runs(path)
        except NotASweep as e:
            raise ReportError(str(e)) from None
    finished = [r for r in runs if r.results is not None]
    if not finished:
        print_failures(runs, console)
        raise ReportError(
            f"no finished runs in {sweep_dir}: all {len(runs)} job(s) failed or are unfinished",
            status=1,
        )
    if all(setting(r, args.by) is None for r in finished):
        raise ReportError(f"--by {args.by}: no finished job sets {args.by} (overrides or config)")
    # validate --baselines before writing anything, so a mistake leaves no partial output
    scores = None
    if args.baselines is not None:
        try:
            scores = baselines(runs)
        except ValueError as e:
            raise ReportError(str(e)) from None

    curves = None
    if args.plots:  # read every run's metrics.jsonl first: a damaged one leaves no output
        try:
            curves = plots.read_sweep_lines((setting(r, args.by) or UNSET, r.path)
                                            for r in finished)  # fmt: skip
        except MtlrunError as e:
            raise ReportError(str(e)) from None

    try:  # statistics' usage mistakes (an unknown column, too few pairs) before any output
        table = build_table(runs, by=args.by, split=args.split, ci=args.ci,
                            noise_column=args.noise_column)  # fmt: skip
        comparison = compare(table, runs, *args.compare) if args.compare else None
    except ValueError as e:
        raise ReportError(str(e)) from None
    out: Path = (args.out or sweep_dir).expanduser()
    files = {
        "report.md": to_markdown(table, runs, sweep_dir, comparison),
        "report.csv": to_csv(table),
        "report.tex": to_latex(table, runs),
    }
    if comparison is not None:
        files["report_compare.csv"] = compare_csv(comparison, table)
        files["report_compare.tex"] = compare_latex(comparison, table)
    for name, text in files.items():
        write_text_atomic(out / name, text)
    if scores is not None:
        write_text_atomic(args.baselines, json.dumps(scores, indent=2, sort_keys=True) + "\n")
    if args.tta:
        tagged = [(setting(r, args.by) or UNSET, r.path.name, r.results) for r in finished]
        write_text_atomic(out / "time_to_accuracy.md",
                          tta.to_markdown(*tta.sweep_table(tagged), args.by))  # fmt: skip
        write_text_atomic(out / "time_to_accuracy.csv", tta.to_csv(tagged))
    drawn = plots.plot_sweep(curves, out, args.by) if curves is not None else []

    print_table(table, runs, console, comparison)
    if UNSET in table.columns:
        console.print(f"note: some jobs do not set {args.by}; they are in column {UNSET}")
    console.print(f"report in {out}/report.{{md,csv,tex}}")
    if comparison is not None:
        console.print(f"comparison in {out}/report_compare.{{csv,tex}}", soft_wrap=True)
    if args.tta:
        console.print(f"time to accuracy in {out}/time_to_accuracy.{{md,csv}}", soft_wrap=True)
    if drawn:
        console.print(f"plots in {out}/dev_curves.{{png,pdf}}", soft_wrap=True)
    if scores is not None:
        console.print(f"baselines (dev, mean over seeds) in {args.baselines}")
        if any(v <= 0 for v in scores.values()):
            console.print("warning: a baseline is 0; scheduler.baselines needs scores > 0")


def _plot_run(run_dir: Path, out: Path | None, console: Console) -> None:
    try:
        written = plots.plot_run(run_dir, out.expanduser() if out else None)
    except MtlrunError as e:
        raise ReportError(str(e)) from None
    names = ", ".join(sorted({p.stem for p in written}))
    console.print(f"plots ({names}) in {written[0].parent}", soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        report(args, Console())
    except ReportError as e:
        print(f"mtlrun-report: error: {e}", file=sys.stderr)
        sys.exit(e.status)
    except MtlrunError as e:  # a write that failed (atomic.write_atomic says why)
        print(f"mtlrun-report: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # e.g. an unwritable --out
        print(f"mtlrun-report: error: {e}", file=sys.stderr)
        sys.exit(2)
