"""The run's result files: results.json, results.csv and results.md (written atomically), and
the rich table printed at the end. Scores are stored as fractions and shown as percentages.

When the collapse guard tripped (results["collapse"], see training/trainer.py), the task the
schedule collapsed onto and the average row carry COLLAPSE_MARK in results.md and the rich table,
with the guard's one-line message as a footnote."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mtlrun import strict_json
from mtlrun.atomic import write_text_atomic
from mtlrun.training.schedule_stats import collapse_message

COLLAPSE_MARK = "†"


def collapse_note(results: dict[str, Any]) -> str | None:
    """The footnote for a run whose learned schedule collapsed; None otherwise."""
    record = results.get("collapse")
    if not record:
        return None
    return f"{COLLAPSE_MARK} {collapse_message(results.get('scheduler', 'the scheduler'), record)}"


def rows(results: dict[str, Any]) -> list[list[str]]:
    """Task rows then the average; the collapsed-onto task and the average marked."""
    collapsed = (results.get("collapse") or {}).get("task")

    def name(n: str, marked: bool) -> str:
        return f"{n} {COLLAPSE_MARK}" if marked else n

    out = [[name(n, n == collapsed), r["metric"], f"{100 * r['dev']:.2f}",
            f"{100 * r['test']:.2f}"] for n, r in results["tasks"].items()]  # fmt: skip
    agg = results["aggregate"]
    out.append([name("average", collapsed is not None), "", f"{100 * agg['dev']:.2f}",
                f"{100 * agg['test']:.2f}"])  # fmt: skip
    return out


HEADER = ["task", "metric", "dev (%)", "test (%)"]


def write_results(run_dir: Path, results: dict[str, Any]) -> None:
    write_text_atomic(run_dir / "results.json", strict_json.dumps(results, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "metric", "dev", "test"])
    for name, r in results["tasks"].items():
        writer.writerow([name, r["metric"], r["dev"], r["test"]])
    writer.writerow(["average", "", results["aggregate"]["dev"], results["aggregate"]["test"]])
    write_text_atomic(run_dir / "results.csv", buf.getvalue())
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    note = collapse_note(results)
    if note:
        lines += ["", note]
    title = f"# Results (best dev checkpoint: step {results['best_step']} of {results['steps']})"
    write_text_atomic(run_dir / "results.md", title + "\n\n" + "\n".join(lines) + "\n")


def print_results(results: dict[str, Any], run_dir: Path) -> None:
    table = Table(title=f"Results — best dev checkpoint at step {results['best_step']}")
    for h in HEADER:
        table.add_column(h, justify="left" if h in ("task", "metric") else "right")
    body = rows(results)
    for r in body[:-1]:
        table.add_row(*r)
    table.add_row(*body[-1], style="bold", end_section=False)
    console = Console()
    console.print(table)
    note = collapse_note(results)
    if note:
        console.print(note, style="bold yellow", markup=False, highlight=False)
    console.print(f"results in {run_dir}")
