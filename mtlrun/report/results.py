"""The run's result files: results.json, results.csv and results.md (written atomically), and
the rich table printed at the end. Scores are stored as fractions and shown as percentages."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mtlrun.atomic import write_text_atomic


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = [[name, r["metric"], f"{100 * r['dev']:.2f}", f"{100 * r['test']:.2f}"]
           for name, r in results["tasks"].items()]  # fmt: skip
    agg = results["aggregate"]
    out.append(["average", "", f"{100 * agg['dev']:.2f}", f"{100 * agg['test']:.2f}"])
    return out


HEADER = ["task", "metric", "dev (%)", "test (%)"]


def write_results(run_dir: Path, results: dict[str, Any]) -> None:
    write_text_atomic(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "metric", "dev", "test"])
    for name, r in results["tasks"].items():
        writer.writerow([name, r["metric"], r["dev"], r["test"]])
    writer.writerow(["average", "", results["aggregate"]["dev"], results["aggregate"]["test"]])
    write_text_atomic(run_dir / "results.csv", buf.getvalue())
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
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
    console.print(f"results in {run_dir}")
