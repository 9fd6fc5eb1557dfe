"""Render a sweep's comparison `Table` as Markdown, CSV, LaTeX and a rich table.

Cells are percentages, "mean ± std" with the sample std (ddof=1); one run gives the mean alone
(no std). "(n=K)" follows a cell where runs are missing. The CSV keeps fractions, like results.csv.

A cell with a run whose learned schedule collapsed onto one task is marked † (LaTeX: a dagger;
CSV: the `collapsed` column counts such runs), and a footnote lists those runs (job directory,
the task, its share), as the warnings list failed and unfinished runs.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from mtlrun.report.sweep import AVERAGE, Cell, Run, Table, swept_keys

MISSING = "–"
COLLAPSED = "†"
COLLAPSED_TEX = "$^\\dagger$"
COLLAPSE_NOTE = "a learned schedule collapsed onto one task in a run of this cell"


def cell_text(table: Table, row: str, column: str, pm: str = "±", mark: str = COLLAPSED) -> str:
    cell: Cell = table.cells[row, column]
    if cell.mean is None:
        return MISSING
    text = f"{100 * cell.mean:.2f}"
    if cell.std is not None:
        text += f" {pm} {100 * cell.std:.2f}"
    if (row, column) in table.show_n:
        text += f" (n={cell.n})"
    if (row, column) in table.collapsed:
        text += f" {mark}"
    return text


def caption(table: Table) -> str:
    over = ", ".join(table.averaged_over) or "the runs"
    marked = f"; {COLLAPSED} {COLLAPSE_NOTE}" if table.collapsed else ""
    return (
        f"{table.split} scores in %, columns = {table.by}: mean ± sample std (ddof=1; none "
        f"for one run) over {over}; best per row marked; (n=K) where runs are missing{marked}"
    )


def _shown_overrides(run: Run, swept: set[str]) -> str:
    """Only the swept overrides (the rest are the same for every job, and in the job's
    .hydra/overrides.yaml); all of them if none is swept."""
    shown = [o for o in run.overrides if o.partition("=")[0].lstrip("+") in swept]
    return " ".join(shown or run.overrides)


def failure_lines(runs: list[Run]) -> list[tuple[str, str, str]]:
    """(path, overrides, why) for every failed or unfinished job."""
    swept = set(swept_keys(runs))
    return [(str(r.path), _shown_overrides(r, swept), r.problem or "")
            for r in runs if r.results is None]  # fmt: skip


def _pct(x: object) -> str:
    return f"{x:.0%}" if isinstance(x, int | float) else "?"


def collapse_lines(runs: list[Run]) -> list[tuple[str, str, str]]:
    """(path, overrides, what) for every finished job whose learned schedule collapsed."""
    swept = set(swept_keys(runs))
    out = []
    for r in runs:
        c = r.collapse
        if c is not None:
            what = (
                f"collapsed onto {c['task']} ({_pct(c.get('share'))} of "
                f"{c.get('decisions', '?')} decisions, threshold {_pct(c.get('threshold'))})"
            )
            out.append((str(r.path), _shown_overrides(r, swept), what))
    return out


def to_markdown(table: Table, runs: list[Run], sweep_dir: Path) -> str:
    def md(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [f"# Sweep report: {sweep_dir}", "", caption(table) + ".", ""]
    lines.append("| task | " + " | ".join(md(c) for c in table.columns) + " |")
    lines.append("|---|" + "---:|" * len(table.columns))
    for row in table.rows:
        cells = [cell_text(table, row, c) for c in table.columns]
        cells = [f"**{t}**" if (row, c) in table.best else t
                 for c, t in zip(table.columns, cells, strict=True)]  # fmt: skip
        lines.append(f"| {md(row)} | " + " | ".join(cells) + " |")
    collapsed = collapse_lines(runs)
    if collapsed:
        lines += [
            "",
            f"{COLLAPSED} Learned schedule collapsed onto one task in {len(collapsed)} "
            "run(s); their scores measure one task's training, not a schedule:",
            "",
        ]
        lines += [f"- `{p}` ({o or 'no overrides'}): {what}" for p, o, what in collapsed]
    failed = failure_lines(runs)
    if failed:
        lines += ["", f"## Failed or unfinished runs ({len(failed)})", ""]
        lines += [f"- `{p}` ({o or 'no overrides'}): {why}" for p, o, why in failed]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """One line per (task, column) with at least one run; fractions, std empty for n=1;
    `collapsed`: how many of the cell's runs had a learned schedule collapse (0 = none)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "column", "mean", "std", "n", "collapsed"])
    for row in table.rows:
        for c in table.columns:
            cell = table.cells[row, c]
            if cell.n:
                std = "" if cell.std is None else cell.std
                writer.writerow([row, c, cell.mean, std, cell.n, table.collapsed.get((row, c), 0)])
    return buf.getvalue()


_TEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(table: Table, runs: list[Run] | None = None) -> str:
    """A bare tabular (no packages needed), for \\input inside a paper's table environment.
    Collapsed cells get $^\\dagger$, a last row explains it, and % comments list the runs."""
    lines = [f"% {caption(table)}"]
    lines += [f"% collapsed: {p} ({o}): {what}" for p, o, what in collapse_lines(runs or [])]
    lines.append("\\begin{tabular}{l" + "r" * len(table.columns) + "}")
    lines += ["\\hline", " & ".join(["Task", *map(tex_escape, table.columns)]) + " \\\\", "\\hline"]
    for row in table.rows:
        if row == AVERAGE:
            lines.append("\\hline")
        cells = [cell_text(table, row, c, pm="$\\pm$", mark=COLLAPSED_TEX) for c in table.columns]
        cells = [f"\\textbf{{{t}}}" if (row, c) in table.best else t
                 for c, t in zip(table.columns, cells, strict=True)]  # fmt: skip
        name = "Average" if row == AVERAGE else tex_escape(row)
        lines.append(" & ".join([name, *cells]) + " \\\\")
    lines.append("\\hline")
    if table.collapsed:
        width = len(table.columns) + 1
        lines.append(f"\\multicolumn{{{width}}}{{l}}{{{COLLAPSED_TEX} {COLLAPSE_NOTE}}} \\\\")
    lines.append("\\end{tabular}")
    return "\n".join(lines) + "\n"


def print_table(table: Table, runs: list[Run], console: Console) -> None:
    rich = RichTable(title=f"Sweep: {table.split} scores (%) by {table.by}")
    rich.add_column("task")
    for c in table.columns:
        rich.add_column(Text(c), justify="right")
    last_task = table.rows[-2] if len(table.rows) > 1 else None  # a rule above "average"
    for row in table.rows:
        cells = [Text(cell_text(table, row, c), style="bold green" * ((row, c) in table.best))
                 for c in table.columns]  # fmt: skip
        name = Text(row, style="bold" if row == AVERAGE else "")
        rich.add_row(name, *cells, end_section=row == last_task)
    console.print(rich)
    console.print(Text(caption(table), style="dim"))
    print_failures(runs, console)


def print_failures(runs: list[Run], console: Console) -> None:
    """The warnings: failed or unfinished runs, and runs whose learned schedule collapsed."""
    failed = failure_lines(runs)
    if failed:
        console.print(Text(f"{len(failed)} failed or unfinished run(s):", style="bold yellow"))
        for path, overrides, why in failed:
            console.print(Text(f"  {path}  [{overrides or 'no overrides'}]  {why}"))
    collapsed = collapse_lines(runs)
    if collapsed:
        console.print(
            Text(f"{COLLAPSED} {len(collapsed)} run(s) whose learned schedule collapsed onto one "
                 "task (their scores measure one task's training, not a schedule):",
                 style="bold yellow")
        )  # fmt: skip
        for path, overrides, what in collapsed:
            console.print(Text(f"  {path}  [{overrides or 'no overrides'}]  {what}"))
