"""mtlrun-report's statistics: bootstrap CIs, the paired tests, the noise floor (stats.py), and
--ci / --compare / --noise-column on handmade sweep directories (no training)."""

from __future__ import annotations

import csv
import itertools
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats
from test_report import C, job, report

from mtlrun.report import stats
from mtlrun.report.sweep import build_table, collect_runs, compare


def t2_p(t: float) -> float:
    """Two-sided p of Student's t with 2 degrees of freedom, closed form: the CDF is
    1/2 + t / (2 sqrt(2 + t^2))."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


# --- stats.py ---------------------------------------------------------------------------------


def test_sign_flip_all_positive_is_two_of_two_to_the_n():
    p, exact = stats.sign_flip_p([0.1, 0.2, 0.3, 0.4, 0.5])
    assert exact and p == 2 / 32  # only "all +" and "all -" reach |sum| = 1.5
    assert stats.sign_flip_p([-0.1, -0.2, -0.3, -0.4, -0.5])[0] == 2 / 32
    assert stats.smallest_exact_p(5) == 2 / 32 and stats.smallest_exact_p(6) < 0.05


def test_sign_flip_by_hand():
    # d = (1, -2, 3), observed sum 2; the 8 signed sums are +-6, +-4, +-2, 0, 0: six reach |2|
    assert stats.sign_flip_p([1.0, -2.0, 3.0]) == (6 / 8, True)
    assert stats.sign_flip_p([0.0, 0.0, 0.0]) == (1.0, True)  # no difference: p = 1
    # ties in exact arithmetic stay ties despite rounding: 0.1 + 0.2 vs 0.3
    assert stats.sign_flip_p([0.1, 0.2, -0.3])[0] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sign_flip_matches_scipy_permutation_test(seed: int):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.7, 0.05, 7), rng.normal(0.68, 0.05, 7)
    ref = scipy_stats.permutation_test(
        (a, b), lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples", n_resamples=np.inf, alternative="two-sided",
    )  # fmt: skip
    assert stats.sign_flip_p(a - b)[0] == pytest.approx(ref.pvalue, abs=1e-12)
    assert stats.paired_test(a, b).perm_p == pytest.approx(ref.pvalue, abs=1e-12)


def test_sign_flip_beyond_16_pairs_is_monte_carlo():
    p, exact = stats.sign_flip_p(np.linspace(0.01, 0.2, 20))
    assert not exact and p == 1 / (1 + stats.RESAMPLES)  # (1 + 0 hits) / (1 + B)
    d = np.random.default_rng(3).normal(0.01, 0.05, 17)
    signs = 1 - 2 * ((np.arange(2**17)[:, None] >> np.arange(17)) & 1)
    truth = np.mean(np.abs(signs @ d) >= abs(d.sum()) * (1 - 1e-12))
    p, exact = stats.sign_flip_p(d)
    assert not exact and abs(p - truth) < 0.015  # 3 sd of 10,000 draws at p ~ 0.3
    assert stats.sign_flip_p(d) == (p, False)  # fixed RNG seed


def test_paired_t_test_by_hand_and_scipy():
    a, b = [3.0, 5.0, 7.0], [1.0, 2.0, 3.0]  # d = 2, 3, 4: mean 3, sd 1, t = 3 sqrt(3)
    r = stats.paired_test(a, b)
    assert (r.n, r.mean_diff, r.sd_diff) == (3, pytest.approx(3.0), pytest.approx(1.0))
    assert r.t_p == pytest.approx(t2_p(3 * math.sqrt(3)))
    assert r.t_p == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    assert (r.perm_p, r.perm_exact) == (2 / 8, True)


def test_paired_t_test_undefined_for_constant_differences():
    r = stats.paired_test([0.7, 0.8, 0.9], [0.6, 0.7, 0.8])  # d = 0.1 each, up to rounding
    assert r.t_p is None and r.mean_diff == pytest.approx(0.1) and r.perm_p == 2 / 8
    r = stats.paired_test([0.0, 0.0], [0.0, 0.0])
    assert r.t_p is None and r.perm_p == 1.0 and r.mean_diff == 0.0


def test_paired_test_refuses():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        stats.paired_test([0.5], [0.4])
    with pytest.raises(ValueError, match="pairs"):
        stats.paired_test([0.5, 0.6], [0.4])
    with pytest.raises(ValueError, match="finite"):
        stats.paired_test([0.5, math.nan], [0.4, 0.5])


def test_bootstrap_ci_two_values_by_hand():
    # resample means of (a, b): a, (a+b)/2, b with probability 1/4, 1/2, 1/4, so the 2.5 % and
    # 97.5 % quantiles are a and b
    assert stats.bootstrap_ci([0.5, 0.6]) == (0.5, 0.6)
    assert stats.bootstrap_ci([0.5]) is None and stats.bootstrap_ci([]) is None
    assert stats.bootstrap_ci([0.5, math.nan, 0.7]) is None


def test_bootstrap_ci_contains_mean_is_reproducible_and_shrinks_with_n():
    small = np.array([0.6, 0.72, 0.65, 0.8, 0.7])
    large = np.tile(small, 16)  # the same spread, 16 times the runs: about 1/4 the width
    lo, hi = stats.bootstrap_ci(small)
    assert min(small) <= lo < small.mean() < hi <= max(small)
    assert stats.bootstrap_ci(small) == (lo, hi)  # fixed RNG seed: the same report twice
    assert stats.bootstrap_ci(small, seed=1) != (lo, hi)
    lo80, hi80 = stats.bootstrap_ci(large)
    assert lo80 < large.mean() < hi80 and hi80 - lo80 < (hi - lo) / 2
    # n = 80: close to the normal interval mean +- 1.96 sd_plugin / sqrt(n)
    half = 1.96 * large.std(ddof=0) / math.sqrt(80)
    assert lo80 == pytest.approx(large.mean() - half, abs=0.1 * half)
    assert hi80 == pytest.approx(large.mean() + half, abs=0.1 * half)
    lo90, hi90 = stats.bootstrap_ci(large, confidence=0.9)
    assert lo80 < lo90 < hi90 < hi80


def test_noise_floor_is_the_sample_std():
    values = [0.61, 0.58, 0.66, 0.6]
    assert stats.noise_floor(values) == statistics.stdev(values)
    assert stats.noise_floor([0.6]) is None


# --- sweeps -------------------------------------------------------------------------------------

U = {1: {"a": 0.50, "b": 0.90}, 2: {"a": 0.60, "b": 0.80}, 3: {"a": 0.70, "b": 0.85}}
P = {1: {"a": 0.60, "b": 0.90}, 2: {"a": 0.75, "b": 0.80}, 3: {"a": 0.80, "b": 0.85}}


def avg(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """uniform / proportional x seed 1, 2, 3; task b scores the same under both."""
    s = tmp_path / "sweep"
    num = itertools.count()
    for name, scores in (("uniform", U), ("proportional", P)):
        for seed, sc in scores.items():
            job(s, next(num), [f"scheduler={name}", f"seed={seed}", C], sc)
    return s


def test_compare_pairs_by_seed(sweep: Path):
    t = build_table(collect_runs(sweep))
    c = compare(t, collect_runs(sweep), "uniform", "proportional")
    assert c.matched_on == ["seed"] and c.pairs == {"a": 3, "b": 3, "average": 3}
    a = c.tests["a"]  # d = -0.1, -0.15, -0.1: mean -0.11667, sd 0.02887, t = -7
    assert a.mean_diff == pytest.approx(-0.35 / 3) and a.perm_p == 2 / 8
    assert a.t_p == pytest.approx(t2_p(-7.0))
    assert c.tests["b"].t_p is None and c.tests["b"].perm_p == 1.0  # identical scores
    diffs = [avg(U[s]) - avg(P[s]) for s in (1, 2, 3)]
    assert c.tests["average"].mean_diff == pytest.approx(statistics.fmean(diffs))
    assert c.tests["average"].t_p == pytest.approx(scipy_stats.ttest_1samp(diffs, 0).pvalue)


def test_compare_leaves_out_runs_without_a_partner(tmp_path: Path):
    s = tmp_path / "sweep"
    job(s, 0, ["scheduler=uniform", "seed=1", C], U[1])
    job(s, 1, ["scheduler=uniform", "seed=2", C], U[2])
    job(s, 2, ["scheduler=uniform", "seed=3", C], U[3])
    job(s, 3, ["scheduler=uniform", "seed=5", C], {"a": 0.1})  # no proportional seed 5
    job(s, 4, ["scheduler=proportional", "seed=1", C], {"a": P[1]["a"]})  # lacks task b
    job(s, 5, ["scheduler=proportional", "seed=2", C], P[2])
    job(s, 6, ["scheduler=proportional", "seed=3", C], error="out of memory")  # failed
    job(s, 7, ["scheduler=proportional", "seed=4", C], P[3])  # no uniform seed 4
    runs = collect_runs(s)
    c = compare(build_table(runs), runs, "uniform", "proportional")
    assert c.pairs == {"a": 2, "b": 1, "average": 2}
    assert c.unpaired == 3  # uniform seeds 3 (its partner failed) and 5, proportional seed 4
    assert c.tests["b"] is None  # one pair: no test
    assert c.tests["a"].mean_diff == pytest.approx(((0.5 - 0.6) + (0.6 - 0.75)) / 2)
    assert c.tests["average"].mean_diff == pytest.approx(
        (avg(U[1]) - P[1]["a"] + avg(U[2]) - avg(P[2])) / 2
    )


def test_compare_refuses(sweep: Path):
    runs = collect_runs(sweep)
    t = build_table(runs)
    with pytest.raises(ValueError, match="no column 'greedy'.*uniform, proportional"):
        compare(t, runs, "uniform", "greedy")
    with pytest.raises(ValueError, match="two different columns"):
        compare(t, runs, "uniform", "uniform")
    job(sweep, 9, ["scheduler=proportional", "seed=3", C], P[3])  # a second seed-3 run
    runs = collect_runs(sweep)
    with pytest.raises(ValueError, match="agree on every swept key"):
        compare(build_table(runs), runs, "uniform", "proportional")


def test_noise_floor_is_the_stdev_of_the_uniform_runs(sweep: Path):
    t = build_table(collect_runs(sweep))
    assert t.noise is not None and t.noise.column == "uniform"
    assert t.noise.values["a"] == statistics.stdev(U[s]["a"] for s in U)
    assert t.noise.values["b"] == statistics.stdev(U[s]["b"] for s in U)
    assert t.noise.values["average"] == pytest.approx(statistics.stdev(avg(U[s]) for s in U))
    t = build_table(collect_runs(sweep), noise_column="proportional")
    assert t.noise.values["a"] == statistics.stdev(P[s]["a"] for s in P)


# --- the command ----------------------------------------------------------------------------------


def test_noise_line_under_every_table(sweep: Path, capsys):
    code, out, _ = report([sweep], capsys)
    line = (
        "noise floor (sd of uniform over seeds): a 10.00, b 5.00; average "
        f"{100 * statistics.stdev(avg(U[s]) for s in U):.2f} (percentage points)"
    )
    assert code == 0 and line in out.splitlines()
    assert line in (sweep / "report.md").read_text().splitlines()
    tex = (sweep / "report.tex").read_text()
    assert "\\multicolumn{3}{l}{noise floor (sd of uniform over seeds): average 4.33; tasks " in tex
    assert f"% {line}" in tex.splitlines()


def test_no_uniform_column_is_one_line_not_a_failure(tmp_path: Path, capsys):
    s = tmp_path / "sweep"
    for i, (lr, seed, score) in enumerate([("0.1", 1, 0.5), ("0.1", 2, 0.7), ("0.01", 1, 0.6)]):
        job(s, i, [f"optimizer.lr={lr}", f"seed={seed}"], {"a": score})
    code, out, _ = report([s, "--by", "optimizer.lr"], capsys)
    assert code == 0
    assert [ln for ln in out.splitlines() if "noise floor" in ln] == [
        "noise floor: no uniform column among the values of optimizer.lr "
        "(--noise-column COLUMN picks one)"
    ]
    code, out, _ = report([s, "--by", "optimizer.lr", "--noise-column", "0.1"], capsys)
    assert code == 0 and "noise floor (sd of 0.1 over seeds): a 14.14; average 14.14" in out
    code, out, _ = report([s, "--by", "optimizer.lr", "--noise-column", "0.01"], capsys)
    assert "noise floor (sd of 0.01 over seeds): needs 2 or more finished runs of 0.01" in out
    code, _, err = report([s, "--by", "optimizer.lr", "--noise-column", "0.5"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("mtlrun-report: error: --noise-column 0.5: no such column")


def test_ci_cells_and_csv(tmp_path: Path, capsys):
    s = tmp_path / "sweep"  # two seeds per column: the interval is [min, max] exactly
    job(s, 0, ["scheduler=uniform", "seed=1", C], {"a": 0.5})
    job(s, 1, ["scheduler=uniform", "seed=2", C], {"a": 0.6})
    job(s, 2, ["scheduler=proportional", "seed=1", C], {"a": 0.7})
    code, out, _ = report([s, "--ci"], capsys)
    assert code == 0 and "[50.00, 60.00]" in out and "percentile bootstrap" in out
    md = (s / "report.md").read_text()
    assert "| a (accuracy) | 55.00 ± 7.07 [50.00, 60.00] | **70.00 (n=1)** |" in md
    tex = (s / "report.tex").read_text()
    assert r"a (accuracy) & 55.00 $\pm$ 7.07 [50.00, 60.00] & \textbf{70.00 (n=1)} \\" in tex
    rows = list(csv.DictReader((s / "report.csv").open()))
    assert list(rows[0]) == ["task", "column", "mean", "std", "n", "collapsed", "ci_low", "ci_high"]
    u = next(r for r in rows if (r["task"], r["column"]) == ("a", "uniform"))
    p = next(r for r in rows if (r["task"], r["column"]) == ("a", "proportional"))
    assert (float(u["ci_low"]), float(u["ci_high"])) == (0.5, 0.6)
    assert (p["ci_low"], p["ci_high"]) == ("", "")  # one run: no interval
    code, _, _ = report([s], capsys)  # without --ci: the columns and cells as before
    assert "ci_low" not in (s / "report.csv").read_text()
    assert "[" not in (s / "report.md").read_text().split("| task |")[1].split("noise")[0]


def test_compare_tables(sweep: Path, tmp_path: Path, capsys):
    out_dir = tmp_path / "out"
    code, out, _ = report([sweep, "--compare", "uniform", "proportional", "--out", out_dir], capsys)
    assert code == 0 and "uniform − proportional" in out and "no p can be below 0.25" in out
    md = (out_dir / "report.md").read_text()
    assert "## Paired comparison: uniform − proportional" in md
    assert f"| a | -11.67 | {t2_p(7.0):.3g} | 0.25 | 3 |" in md
    assert "| b | +0.00 | – | 1 | 3 |" in md
    section = md.split("## Paired comparison")[1]
    assert "noise floor (sd of uniform over seeds): a 10.00, b 5.00" in section
    rows = {r["task"]: r for r in csv.DictReader((out_dir / "report_compare.csv").open())}
    assert list(rows) == ["a", "b", "average"]
    assert float(rows["a"]["mean_diff"]) == pytest.approx(-0.35 / 3)
    assert float(rows["a"]["t_p"]) == pytest.approx(t2_p(7.0))
    assert (rows["a"]["perm_p"], rows["a"]["n_pairs"], rows["b"]["t_p"]) == ("0.25", "3", "")
    assert float(rows["a"]["noise_floor"]) == pytest.approx(0.1)
    tex = (out_dir / "report_compare.tex").read_text()
    assert "a & $-11.67$ & " in tex and tex.count("\\begin{tabular}") == 1
    assert (out_dir / "report.csv").read_text().startswith("task,column,mean,std,n,collapsed\n")


def test_compare_mistakes_exit_2_in_one_line(sweep: Path, tmp_path: Path, capsys):
    out_dir = tmp_path / "out"
    code, _, err = report([sweep, "--compare", "uniform", "greedy", "--out", out_dir], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("mtlrun-report: error: --compare: no column 'greedy'")
    s = tmp_path / "one_pair"  # seeds 1, 2 vs 2, 3: one pair
    job(s, 0, ["scheduler=uniform", "seed=1", C], U[1])
    job(s, 1, ["scheduler=uniform", "seed=2", C], U[2])
    job(s, 2, ["scheduler=proportional", "seed=2", C], P[2])
    job(s, 3, ["scheduler=proportional", "seed=3", C], P[3])
    code, _, err = report([s, "--compare", "uniform", "proportional", "--out", out_dir], capsys)
    assert code == 2 and err.count("\n") == 1 and "1 pair(s) of finished runs match on seed" in err
    assert not out_dir.exists()  # nothing written
