"""The `mtlrun-report` command: one comparison table (tasks x swept setting) from a multirun sweep.

    mtlrun-report SWEEP_DIR [--by KEY] [--split test|dev] [--out DIR] [--baselines FILE]

Writes report.md, report.csv and report.tex (atomically) and prints the table. Exit status: 0 ok;
1 no finished run in the sweep (the failed/unfinished ones are listed); 2 a usage mistake (not a
sweep, unknown --by key, --baselines on multi-task runs), always as one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from mtlrun.atomic import write_text_atomic
from mtlrun.report.sweep import UNSET, NotASweep, baselines, build_table, collect_runs, setting
from mtlrun.report.tables import print_failures, print_table, to_csv, to_latex, to_markdown


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
    p.add_argument("sweep", type=Path, help="the multirun directory (hydra.sweep.dir)")
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
    return p.parse_args(argv)


def report(args: argparse.Namespace, console: Console) -> None:
    sweep_dir: Path = args.sweep.expanduser()
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir}: no such directory")
    try:
        runs = collect_runs(sweep_dir)
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

    table = build_table(runs, by=args.by, split=args.split)
    out: Path = (args.out or sweep_dir).expanduser()
    files = {
        "report.md": to_markdown(table, runs, sweep_dir),
        "report.csv": to_csv(table),
        "report.tex": to_latex(table, runs),
    }
    for name, text in files.items():
        write_text_atomic(out / name, text)
    if scores is not None:
        write_text_atomic(args.baselines, json.dumps(scores, indent=2, sort_keys=True) + "\n")

    print_table(table, runs, console)
    if UNSET in table.columns:
        console.print(f"note: some jobs do not set {args.by}; they are in column {UNSET}")
    console.print(f"report in {out}/report.{{md,csv,tex}}")
    if scores is not None:
        console.print(f"baselines (dev, mean over seeds) in {args.baselines}")
        if any(v <= 0 for v in scores.values()):
            console.print("warning: a baseline is 0; scheduler.baselines needs scores > 0")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        report(args, Console())
    except ReportError as e:
        print(f"mtlrun-report: error: {e}", file=sys.stderr)
        sys.exit(e.status)
    except OSError as e:  # e.g. an unwritable --out
        print(f"mtlrun-report: error: {e}", file=sys.stderr)
        sys.exit(2)
