"""Statistics for `mtlrun-report`: how sure a sweep's numbers are. Pure functions of lists of
scores (one score per run); docs/report.md explains when to trust each.

- `bootstrap_ci`: the percentile bootstrap confidence interval of the mean over seeds
  (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13), with a fixed RNG seed so
  that a report is the same every time it is made.
- `paired_test`: two settings compared on runs that match in everything else (the same seed):
  the paired t-test (Student 1908, "The probable error of a mean"; `scipy.stats.ttest_rel`) and
  the exact two-sided paired permutation (sign-flip) test (Fisher 1935, *The Design of
  Experiments*), which enumerates all 2^n sign flips for n <= 16 pairs.
- `noise_floor`: the sample standard deviation (ddof=1) of one setting's scores over seeds, the
  spread a difference between settings has to beat.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000  # B, bootstrap resamples (and random sign flips beyond EXACT_MAX_PAIRS)
RNG_SEED = 0  # fixed: the same sweep gives the same report
EXACT_MAX_PAIRS = 16  # 2^16 = 65,536 sign flips, enumerated exactly


def _finite(values: Sequence[float]) -> np.ndarray | None:
    """`values` as a float array, or None if one of them is not a finite number."""
    x = np.asarray(values, dtype=float)
    return x if np.all(np.isfinite(x)) else None


def bootstrap_ci(
    values: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = RNG_SEED,
) -> tuple[float, float] | None:
    """The percentile bootstrap confidence interval of the mean of `values` (Efron & Tibshirani
    1993, ch. 13): draw `resamples` samples of size n from `values` with replacement, take each
    one's mean, and return the (1 - confidence)/2 and (1 + confidence)/2 quantiles of those
    means. The RNG is `numpy.random.default_rng(seed)`, so the same values give the same
    interval. None with fewer than 2 values or a value that is not finite (an undefined
    score): there is no spread to resample.

    The interval always lies within [min(values), max(values)], and for small n it is too
    narrow (its spread is the plug-in sd, sqrt((n-1)/n) times the sample sd): for normal scores
    a "95 %" interval covers the mean about 75 % of the time with 3 seeds, 84 % with 5, 91 % with
    10 (docs/report.md)."""
    x = _finite(values)
    if x is None or len(x) < 2:
        return None
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    alpha = 1 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def sign_flip_p(
    differences: Sequence[float], resamples: int = RESAMPLES, seed: int = RNG_SEED
) -> tuple[float, bool]:
    """The two-sided paired permutation test of mean difference 0 (Fisher 1935): under the null
    hypothesis each pair's two scores are exchangeable, so each difference's sign is a fair
    coin. The p-value is the share of sign assignments s in {-1, +1}^n whose |mean(s * d)| is at
    least the observed |mean(d)| (the observed assignment included). For n <= 16 all 2^n
    assignments are enumerated (exact: the p-value is a multiple of 1/2^n, at least 2/2^n when
    no difference is 0); beyond that `resamples` random assignments give (1 + hits) /
    (1 + resamples) (Phipson & Smyth 2010, Stat. Appl. Genet. Mol. Biol. 9(1)).

    Returns (p, exact). Ties are counted with scipy's relative tolerance (100 machine epsilons),
    so rounding does not split sign assignments that are equal in exact arithmetic."""
    d = _finite(differences)
    if d is None or len(d) == 0:
        raise ValueError("sign_flip_p needs at least one finite difference")
    n = len(d)
    if n <= EXACT_MAX_PAIRS:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        signs, exact = 1 - 2 * bits, True  # row 0 is the observed assignment
    else:
        signs = np.random.default_rng(seed).choice([-1, 1], size=(resamples, n))
        exact = False
    observed = abs(d.sum())
    gamma = 100 * np.finfo(float).eps * observed
    hits = int(np.count_nonzero(np.abs(signs @ d) >= observed - gamma))
    if exact:
        return hits / 2**n, True
    return (1 + hits) / (1 + resamples), False


@dataclass(frozen=True)
class PairedTest:
    n: int  # pairs
    mean_diff: float  # mean of a - b
    sd_diff: float  # sample std (ddof=1) of a - b
    t_p: float | None  # paired t-test, two-sided; None when the differences do not vary
    perm_p: float  # paired permutation (sign-flip) test, two-sided
    perm_exact: bool  # all 2^n sign flips enumerated (n <= 16)


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Paired comparison of two settings over matching runs: `a[i]` and `b[i]` come from runs
    that differ only in the compared setting (the same seed and other swept keys).

    - t-test: `scipy.stats.ttest_rel(a, b)`, two-sided; t = mean(d) / (sd(d) / sqrt(n)) with
      n - 1 degrees of freedom. Assumes the differences are normal. Undefined (None) when all
      differences are equal, e.g. a task that scores 0 under both settings: sd(d) = 0.
    - permutation: `sign_flip_p(a - b)`, exact for n <= 16; assumes only that each difference
      is as likely to have either sign under the null hypothesis.

    Raises ValueError for unequal lengths, fewer than 2 pairs or a non-finite score."""
    if len(a) != len(b):
        raise ValueError(f"paired_test needs pairs: {len(a)} vs {len(b)} scores")
    x, y = _finite(a), _finite(b)
    if x is None or y is None:
        raise ValueError("paired_test needs finite scores")
    n = len(x)
    if n < 2:
        raise ValueError(f"paired_test needs at least 2 pairs, got {n}")
    d = x - y
    sd = float(np.std(d, ddof=1))
    t_p = None
    if sd > 1e-12 * float(np.max(np.abs(d))):  # else constant differences (up to rounding)
        from scipy import stats as scipy_stats  # slow to import; only --compare needs it

        with warnings.catch_warnings():  # scipy's precision warning for nearly equal differences
            warnings.simplefilter("ignore", RuntimeWarning)
            t_p = float(scipy_stats.ttest_rel(x, y).pvalue)
    perm_p, exact = sign_flip_p(d)
    return PairedTest(n, float(d.mean()), sd, t_p, perm_p, exact)


def noise_floor(values: Sequence[float]) -> float | None:
    """The sample standard deviation (ddof=1, `statistics.stdev`) of one setting's scores over
    seeds: how far two runs of the same setting land apart by chance alone. A difference between
    settings of the order of this number is not evidence that they differ. None for fewer than
    2 values."""
    if len(values) < 2:
        return None
    return statistics.stdev(values)


def smallest_exact_p(n: int) -> float:
    """The smallest p-value the exact two-sided sign-flip test can give with n pairs: 2 / 2^n
    (all differences of one sign). With n <= 5 it exceeds 0.05."""
    return min(1.0, 2 / 2**n) if n > 0 else math.nan
