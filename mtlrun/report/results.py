"""The run's result files: results.json, results.csv and results.md (written atomically), and
the rich table printed at the end. Scores are stored as fractions and shown as percentages.

When the collapse guard tripped (results["collapse"], see training/trainer.py), the task the
schedule collapsed onto and the average row carry COLLAPSE_MARK in results.md and the rich table,
with the guard's one-line message as a footnote; a learned schedule that cannot be told from
uniform sampling (results["uniform_like"]) gets its footnote too."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mtlrun import strict_json
from mtlrun.atomic import write_text_atomic
from mtlrun.training.schedule_stats import collapse_message, uniform_message

COLLAPSE_MARK = "†"
DIVERGED_MARK = "‡"  # a task whose dev loss blew up (trainer's divergence guard: "blown_up")


def collapse_note(results: dict[str, Any]) -> str | None:
    """The footnote for a run whose learned schedule collapsed; None otherwise."""
    record = results.get("collapse")
    if not record:
        return None
    return f"{COLLAPSE_MARK} {collapse_message(results.get('scheduler', 'the scheduler'), record)}"


def uniform_note(results: dict[str, Any]) -> str | None:
    """The footnote for a run whose learned schedule was indistinguishable from uniform."""
    record = results.get("uniform_like")
    return uniform_message(results.get("scheduler", "the scheduler"), record) if record else None


def notes(results: dict[str, Any]) -> list[str]:
    """Footnotes: a collapsed or uniform-like learned schedule, blown-up dev losses, which
    BLEU, skipped non-finite updates."""
    out = [n for n in [collapse_note(results), uniform_note(results), transfer_note(results)] if n]
    for task, r in (results.get("blown_up") or {}).items():
        out.append(f"{DIVERGED_MARK} {task}: dev loss {r['loss']:.3g} at step {r['step']}, over "
                   "100 times the chance loss: the model diverged; these scores are not a "
                   "result")  # fmt: skip
    signatures = {r["bleu_signature"] for r in results["tasks"].values() if "bleu_signature" in r}
    for signature in sorted(signatures):
        out.append(f"BLEU: sacrebleu {signature}, on detokenised output")
    if results.get("skipped_steps"):
        out.append(f"{results['skipped_steps']} of {results['steps']} updates were skipped for "
                   "a non-finite loss or gradient (trainer.nonfinite=skip)")  # fmt: skip
    return out


def transfer_note(results: dict[str, Any]) -> str | None:
    """The line results.md and the terminal add for a transfer result."""
    t = results.get("transfer")
    if not t:
        return None
    sd = "" if t["sd"] is None or math.isnan(t["sd"]) else f" ± {100 * t['sd']:.1f}"
    return (f"transfer to {t['task']} (a new head on the frozen encoder, {t['folds']}-fold "
            f"cross-validation over its {t['examples']} examples): {t['metric']} "
            f"{100 * t['score']:.1f} %{sd}")  # fmt: skip


def rows(results: dict[str, Any]) -> list[list[str]]:
    """Task rows (a row per extra metric a task reports under its primary one) then the
    average of the primary metrics; the collapsed-onto task, blown-up tasks and the average
    marked."""
    collapsed = (results.get("collapse") or {}).get("task")
    blown_up = set(results.get("blown_up") or ())

    def name(n: str) -> str:
        marks = (COLLAPSE_MARK if n == collapsed else "") + (DIVERGED_MARK if n in blown_up else "")
        return f"{n} {marks}" if marks else n

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.2f}"

    out = []
    for n, r in results["tasks"].items():
        out.append([name(n), r["metric"], pct(r["dev"]), pct(r["test"])])
        extra = r.get("metrics") or {}
        for metric in extra.get("dev", {}):
            if metric != r["metric"]:
                out.append([n, metric, pct(extra["dev"].get(metric)),
                            pct(extra.get("test", {}).get(metric))])  # fmt: skip
    agg = results["aggregate"]
    average = "average" + (" " if collapsed or blown_up else "")
    average += (COLLAPSE_MARK if collapsed else "") + (DIVERGED_MARK if blown_up else "")
    out.append([average, "", f"{100 * agg['dev']:.2f}", f"{100 * agg['test']:.2f}"])
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
    if notes(results):
        lines += ["", *notes(results)]
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
    for note in notes(results):
        console.print(note, style="bold yellow", markup=False, highlight=False)
    console.print(f"results in {run_dir}")
