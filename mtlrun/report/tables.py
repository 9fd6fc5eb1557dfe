"""Render a sweep's comparison `Table` as Markdown, CSV, LaTeX and a rich table.

Cells are percentages, "mean ± std" with the sample std (ddof=1); one run gives the mean alone
(no std). "(n=K)" follows a cell where runs are missing. The CSV keeps fractions, like results.csv.
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


def cell_text(table: Table, row: str, column: str, pm: str = "±") -> str:
    cell: Cell = table.cells[row, column]
    if cell.mean is None:
        return MISSING
    text = f"{100 * cell.mean:.2f}"
    if cell.std is not None:
        text += f" {pm} {100 * cell.std:.2f}"
    if (row, column) in table.show_n:
        text += f" (n={cell.n})"
    return text


def caption(table: Table) -> str:
    over = ", ".join(table.averaged_over) or "the runs"
    return (
        f"{table.split} scores in %, columns = {table.by}: mean ± sample std (ddof=1; none "
        f"for one run) over {over}; best per row marked; (n=K) where runs are missing"
    )


def failure_lines(runs: list[Run]) -> list[tuple[str, str, str]]:
    """(path, overrides, why) for every failed or unfinished job. Only the swept overrides are
    shown (the rest are the same for every job, and in the job's .hydra/overrides.yaml)."""
    swept = set(swept_keys(runs))
    out = []
    for r in runs:
        if r.results is None:
            shown = [o for o in r.overrides if o.partition("=")[0].lstrip("+") in swept]
            out.append((str(r.path), " ".join(shown or r.overrides), r.problem or ""))
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
    failed = failure_lines(runs)
    if failed:
        lines += ["", f"## Failed or unfinished runs ({len(failed)})", ""]
        lines += [f"- `{p}` ({o or 'no overrides'}): {why}" for p, o, why in failed]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """One line per (task, column) with at least one run; fractions, std empty for n=1."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "column", "mean", "std", "n"])
    for row in table.rows:
        for c in table.columns:
            cell = table.cells[row, c]
            if cell.n:
                writer.writerow([row, c, cell.mean, "" if cell.std is None else cell.std, cell.n])
    return buf.getvalue()


_TEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(table: Table) -> str:
    """A bare tabular (no packages needed), for \\input inside a paper's table environment."""
    lines = [f"% {caption(table)}", "\\begin{tabular}{l" + "r" * len(table.columns) + "}"]
    lines += ["\\hline", " & ".join(["Task", *map(tex_escape, table.columns)]) + " \\\\", "\\hline"]
    for row in table.rows:
        if row == AVERAGE:
            lines.append("\\hline")
        cells = [cell_text(table, row, c, pm="$\\pm$") for c in table.columns]
        cells = [f"\\textbf{{{t}}}" if (row, c) in table.best else t
                 for c, t in zip(table.columns, cells, strict=True)]  # fmt: skip
        name = "Average" if row == AVERAGE else tex_escape(row)
        lines.append(" & ".join([name, *cells]) + " \\\\")
    lines += ["\\hline", "\\end{tabular}"]
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
    failed = failure_lines(runs)
    if failed:
        console.print(Text(f"{len(failed)} failed or unfinished run(s):", style="bold yellow"))
        for path, overrides, why in failed:
            console.print(Text(f"  {path}  [{overrides or 'no overrides'}]  {why}"))
