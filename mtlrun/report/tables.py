"""Render a sweep's comparison `Table` as Markdown, CSV, LaTeX and a rich table.

Cells are percentages, "mean ± std" with the sample std (ddof=1); one run gives the mean alone
(no std). "(n=K)" follows a cell where runs are missing. The CSV keeps fractions, like results.csv.

A cell with a run whose learned schedule collapsed onto one task is marked † (LaTeX: a dagger;
CSV: the `collapsed` column counts such runs), and a footnote lists those runs (job directory,
the task, its share), as the warnings list failed and unfinished runs.

Statistics (mtlrun/report/stats.py, docs/report.md): with `--ci` a cell adds its bootstrap
confidence interval, "mean ± std [lo, hi]" (CSV: ci_low, ci_high columns); every table has the
noise floor line under it; `--compare A B` adds a paired comparison table (a section of
report.md; report_compare.csv and report_compare.tex, since report.csv and report.tex each hold
one table).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from mtlrun.report import stats
from mtlrun.report.sweep import AVERAGE, Cell, Comparison, Run, Table, swept_keys

MISSING = "–"
COLLAPSED = "†"
COLLAPSED_TEX = "$^\\dagger$"
COLLAPSE_NOTE = "a learned schedule collapsed onto one task in a run of this cell"


def cell_text(
    table: Table,
    row: str,
    column: str,
    pm: str = "±",
    mark: str = COLLAPSED,
    ci_sep: str = " ",
) -> str:
    """ "mean ± std", then " [lo, hi]" (its CI, after `ci_sep`) when the table has CIs, "(n=K)"
    where runs are missing and the collapse mark."""
    cell: Cell = table.cells[row, column]
    if cell.mean is None:
        return MISSING
    text = f"{100 * cell.mean:.2f}"
    if cell.std is not None:
        text += f" {pm} {100 * cell.std:.2f}"
    if cell.ci is not None:
        text += f"{ci_sep}[{100 * cell.ci[0]:.2f}, {100 * cell.ci[1]:.2f}]"
    if (row, column) in table.show_n:
        text += f" (n={cell.n})"
    if (row, column) in table.collapsed:
        text += f" {mark}"
    return text


def caption(table: Table) -> str:
    over = ", ".join(table.averaged_over) or "the runs"
    marked = f"; {COLLAPSED} {COLLAPSE_NOTE}" if table.collapsed else ""
    ci = ""
    if table.ci is not None:
        ci = (
            f" [lo, hi] = {table.ci:.0%} percentile bootstrap interval of the mean "
            f"(B = {stats.RESAMPLES:,}, RNG seed {stats.RNG_SEED}; none for one run);"
        )
    return (
        f"{table.split} scores in %, columns = {table.by}: mean ± sample std (ddof=1; none "
        f"for one run) over {over};{ci} best per row marked; (n=K) where runs are "
        f"missing{marked}"
    )


def _over_seeds(table: Table) -> str:
    return "seeds" if table.averaged_over in ([], ["seed"]) else ", ".join(table.averaged_over)


def noise_text(table: Table, compact: bool = False) -> str:
    """The line under every table: the noise floor, the sample std (ddof=1) over seeds of the
    uniform column (or --noise-column), in percentage points, per task and for the average
    row. `compact` (LaTeX, whose table is in % already): the average and the range over tasks
    only."""
    floor = table.noise
    if floor is None:
        where = "in this sweep" if table.by == "scheduler" else f"among the values of {table.by}"
        return f"noise floor: no uniform column {where} (--noise-column COLUMN picks one)"
    head = f"noise floor (sd of {floor.column} over {_over_seeds(table)})"
    if all(v is None for v in floor.values.values()):
        return f"{head}: needs 2 or more finished runs of {floor.column}"

    def pts(v: float | None) -> str:
        return MISSING if v is None else f"{100 * v:.2f}"

    tasks = {r: v for r, v in floor.values.items() if r != AVERAGE}
    average = f"average {pts(floor.values.get(AVERAGE))}"
    if compact:
        known = [v for v in tasks.values() if v is not None]
        spread = f"; tasks {pts(min(known))}–{pts(max(known))}" if known else ""
        return f"{head}: {average}{spread}"
    per_task = ", ".join(f"{r} {pts(v)}" for r, v in tasks.items())
    return f"{head}: {per_task}; {average} (percentage points)"


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


def _md(s: str) -> str:
    return s.replace("|", "\\|")


def to_markdown(
    table: Table, runs: list[Run], sweep_dir: Path, comparison: Comparison | None = None
) -> str:
    md = _md

    lines = [f"# Sweep report: {sweep_dir}", "", caption(table) + ".", ""]
    lines.append("| task | " + " | ".join(md(c) for c in table.columns) + " |")
    lines.append("|---|" + "---:|" * len(table.columns))
    for row in table.rows:
        cells = [cell_text(table, row, c) for c in table.columns]
        cells = [f"**{t}**" if (row, c) in table.best else t
                 for c, t in zip(table.columns, cells, strict=True)]  # fmt: skip
        lines.append(f"| {md(table.label(row))} | " + " | ".join(cells) + " |")
    lines += ["", noise_text(table)]
    collapsed = collapse_lines(runs)
    if collapsed:
        lines += [
            "",
            f"{COLLAPSED} Learned schedule collapsed onto one task in {len(collapsed)} "
            "run(s); their scores measure one task's training, not a schedule:",
            "",
        ]
        lines += [f"- `{p}` ({o or 'no overrides'}): {what}" for p, o, what in collapsed]
    if comparison is not None:
        lines += ["", *compare_markdown(comparison, table)]
    failed = failure_lines(runs)
    if failed:
        lines += ["", f"## Failed or unfinished runs ({len(failed)})", ""]
        lines += [f"- `{p}` ({o or 'no overrides'}): {why}" for p, o, why in failed]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """One line per (task, column) with at least one run; fractions, std empty for n=1;
    `collapsed`: how many of the cell's runs had a learned schedule collapse (0 = none). With
    CIs (--ci): ci_low, ci_high, the bootstrap interval of the mean (empty for n=1)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    ci = ["ci_low", "ci_high"] if table.ci is not None else []
    writer.writerow(["task", "column", "mean", "std", "n", "collapsed", *ci])
    for row in table.rows:
        for c in table.columns:
            cell = table.cells[row, c]
            if cell.n:
                std = "" if cell.std is None else cell.std
                line = [row, c, cell.mean, std, cell.n, table.collapsed.get((row, c), 0)]
                if ci:
                    line += list(cell.ci) if cell.ci is not None else ["", ""]
                writer.writerow(line)
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
    lines = [f"% {caption(table)}", f"% {noise_text(table)}"]
    lines += [f"% collapsed: {p} ({o}): {what}" for p, o, what in collapse_lines(runs or [])]
    lines.append("\\begin{tabular}{l" + "r" * len(table.columns) + "}")
    lines += ["\\hline", " & ".join(["Task", *map(tex_escape, table.columns)]) + " \\\\", "\\hline"]
    for row in table.rows:
        if row == AVERAGE:
            lines.append("\\hline")
        cells = [cell_text(table, row, c, pm="$\\pm$", mark=COLLAPSED_TEX) for c in table.columns]
        cells = [f"\\textbf{{{t}}}" if (row, c) in table.best else t
                 for c, t in zip(table.columns, cells, strict=True)]  # fmt: skip
        name = "Average" if row == AVERAGE else tex_escape(table.label(row))
        lines.append(" & ".join([name, *cells]) + " \\\\")
    lines.append("\\hline")
    width = len(table.columns) + 1
    if table.collapsed:
        lines.append(f"\\multicolumn{{{width}}}{{l}}{{{COLLAPSED_TEX} {COLLAPSE_NOTE}}} \\\\")
    lines.append(_tex_noise_row(table, width))
    lines.append("\\end{tabular}")
    return "\n".join(lines) + "\n"


def _tex_noise_row(table: Table, width: int) -> str:
    """The noise floor under a LaTeX table: its average and range only (a line per task would
    widen the table); the full line is a % comment above the tabular."""
    text = tex_escape(noise_text(table, compact=True))
    return f"\\multicolumn{{{width}}}{{l}}{{{text}}} \\\\"


def print_table(
    table: Table, runs: list[Run], console: Console, comparison: Comparison | None = None
) -> None:
    rich = RichTable(title=f"Sweep: {table.split} scores (%) by {table.by}")
    rich.add_column("task")
    for c in table.columns:
        rich.add_column(Text(c), justify="right")
    last_task = table.rows[-2] if len(table.rows) > 1 else None  # a rule above "average"
    for row in table.rows:
        cells = [Text(cell_text(table, row, c, ci_sep="\n"),
                      style="bold green" * ((row, c) in table.best))
                 for c in table.columns]  # fmt: skip
        name = Text(table.label(row), style="bold" if row == AVERAGE else "")
        rich.add_row(name, *cells, end_section=row == last_task)
    console.print(rich)
    console.print(Text(caption(table), style="dim"))
    console.print(Text(noise_text(table)), soft_wrap=True)  # one line, to copy
    if comparison is not None:
        print_comparison(comparison, table, console)
    print_failures(runs, console)


def p_text(p: float | None) -> str:
    return MISSING if p is None else f"{p:.3g}"


def _diff_text(comparison: Comparison, row: str) -> str:
    test = comparison.tests[row]
    return MISSING if test is None else f"{100 * test.mean_diff:+.2f}"


def compare_header(comparison: Comparison) -> list[str]:
    return ["task", f"{comparison.a} − {comparison.b}", "t-test p", "permutation p",
            "n pairs"]  # fmt: skip


def compare_rows(comparison: Comparison) -> list[list[str]]:
    """Per row: mean difference a - b in points, t-test p, permutation p, pairs."""
    out = []
    for row in comparison.rows:
        test = comparison.tests[row]
        out.append([
            row, _diff_text(comparison, row),
            p_text(None if test is None else test.t_p),
            p_text(None if test is None else test.perm_p),
            str(comparison.pairs[row]),
        ])  # fmt: skip
    return out


def compare_caption(comparison: Comparison) -> str:
    """How the runs were paired and what each column is."""
    on = ", ".join(comparison.matched_on) or "no swept key"
    left = (
        f" ({comparison.unpaired} run(s) without a partner left out)" if comparison.unpaired else ""
    )
    tests = [t for t in comparison.tests.values() if t is not None]
    if all(t.perm_exact for t in tests):
        n = comparison.pairs[AVERAGE]
        perm = (
            f"exact two-sided sign-flip test over all 2^n sign flips of the differences (with "
            f"n = {n} pairs no p can be below {p_text(stats.smallest_exact_p(n))})"
        )
    else:
        perm = (
            f"two-sided sign-flip test, exact up to {stats.EXACT_MAX_PAIRS} pairs, else "
            f"{stats.RESAMPLES:,} random sign flips (RNG seed {stats.RNG_SEED})"
        )
    return (
        f"{comparison.split} scores; runs of {comparison.a} and {comparison.b} paired on "
        f"{on}{left}; {comparison.a} − {comparison.b}: mean difference in percentage points; "
        f"t-test p: paired t-test (scipy.stats.ttest_rel), two-sided, {MISSING} when the "
        f"differences do not vary; permutation p: {perm}; p-values are per row, not corrected "
        "for testing several rows"
    )


def compare_markdown(comparison: Comparison, table: Table) -> list[str]:
    """The comparison section of report.md."""
    lines = [f"## Paired comparison: {_md(comparison.a)} − {_md(comparison.b)}", ""]
    lines += [compare_caption(comparison) + ".", ""]
    lines.append("| " + " | ".join(map(_md, compare_header(comparison))) + " |")
    lines.append("|---|" + "---:|" * 4)
    lines += ["| " + " | ".join([_md(r[0]), *r[1:]]) + " |" for r in compare_rows(comparison)]
    return [*lines, "", noise_text(table)]


def compare_csv(comparison: Comparison, table: Table) -> str:
    """report_compare.csv: per row, a, b, the mean and sd of a - b (fractions), both p-values
    (empty where undefined or fewer than 2 pairs), whether the permutation p is exact, the
    pairs, and the row's noise floor (empty without one)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "a", "b", "mean_diff", "sd_diff", "t_p", "perm_p", "perm_exact",
                     "n_pairs", "noise_floor"])  # fmt: skip
    for row in comparison.rows:
        test = comparison.tests[row]
        noise = table.noise.values.get(row) if table.noise is not None else None
        fields: list[object] = ["", "", "", "", ""]
        if test is not None:
            t_p = "" if test.t_p is None else test.t_p
            fields = [test.mean_diff, test.sd_diff, t_p, test.perm_p, test.perm_exact]
        writer.writerow([row, comparison.a, comparison.b, *fields, comparison.pairs[row],
                         "" if noise is None else noise])  # fmt: skip
    return buf.getvalue()


def compare_latex(comparison: Comparison, table: Table) -> str:
    """report_compare.tex: a bare tabular like report.tex."""
    lines = [f"% {compare_caption(comparison)}", f"% {noise_text(table)}"]
    lines += ["\\begin{tabular}{lrrrr}", "\\hline"]
    a, b = tex_escape(comparison.a), tex_escape(comparison.b)
    lines.append(f"Task & {a} $-$ {b} & $t$-test $p$ & permutation $p$ & $n$ \\\\")
    lines.append("\\hline")
    for r in compare_rows(comparison):
        if r[0] == AVERAGE:
            lines.append("\\hline")
        name = "Average" if r[0] == AVERAGE else tex_escape(r[0])
        diff = r[1] if r[1] == MISSING else f"${r[1]}$"  # a minus sign, not a hyphen
        lines.append(" & ".join([name, diff, *r[2:]]) + " \\\\")
    lines += ["\\hline", _tex_noise_row(table, 5), "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def print_comparison(comparison: Comparison, table: Table, console: Console) -> None:
    rich = RichTable(title=f"Paired comparison: {comparison.split} scores, points")
    for i, h in enumerate(compare_header(comparison)):
        rich.add_column(Text(h), justify="right" if i else "left")
    body = compare_rows(comparison)
    for r in body:
        style = "bold" if r[0] == AVERAGE else ""
        rich.add_row(
            *(Text(c, style=style) for c in r), end_section=len(body) > 1 and r is body[-2]
        )
    console.print(rich)
    console.print(Text(compare_caption(comparison), style="dim"))
    console.print(Text(noise_text(table)), soft_wrap=True)  # one line, to copy


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
