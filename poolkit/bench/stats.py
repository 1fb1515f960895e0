"""Latency statistics over per-iteration samples, computed exactly so tests can check them to the digit.

Percentiles use the nearest-rank rule (as onnxruntime_perf_test does): p-th percentile is the
value at rank ceil(p/100 * n) of the sorted samples. The 95% confidence interval of the median is
the distribution-free order-statistic interval: ranks j and n - j + 1 with j the largest rank
such that P(Binomial(n, 1/2) <= j - 1) <= 2.5 % (exact up to 1,000 samples; beyond, the normal
approximation floor((n - 1.96 sqrt(n)) / 2)). With fewer than 6 samples it is the whole range.

Tails need samples: MLPerf's inference rules ask for at least 64 samples behind a p90 and 662
behind a p99 (the counts for which the percentile's 99 % interval stays near the figure); `Stats`
says whether each tail has that many. Comparing two runs uses scipy's Mann-Whitney U test on the
raw samples and the Hodges-Lehmann shift (median of all pairwise differences) with its
distribution-free 95 % interval (Lehmann's order statistics of the pairwise differences).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
UNSTABLE_IQR = 0.10  # torch.utils.benchmark's rule: unstable when IQR/median >= 0.1 (the CV is kept, not used)
MIN_SAMPLES_P90 = 64  # MLPerf inference rules: samples needed before a p90 is worth reporting
MIN_SAMPLES_P99 = 662  # ... and before a p99


@dataclass
class Stats:
    n: int
    min: float
    max: float
    mean: float
    std: float
    p50: float
    p90: float
    p99: float
    ci95_low: float  # of the median
    ci95_high: float
    cv: float  # std / mean: one tail sample makes it large, so it is recorded, not used for the flag
    p90_reliable: bool = False  # n >= MIN_SAMPLES_P90
    p99_reliable: bool = False  # n >= MIN_SAMPLES_P99
    p25: float = 0.0
    p75: float = 0.0
    iqr_rel: float = 0.0  # (p75 - p25) / p50: a spread no single tail sample can move

    @property
    def unstable(self) -> bool:
        """torch.utils.benchmark's rule: the middle half of the samples spans 10 % of the median or more."""
        return self.iqr_rel >= UNSTABLE_IQR

    @property
    def ci95_rel_width(self) -> float:
        """Width of the median's 95 % interval as a share of the median: what adaptive sampling narrows."""
        return (self.ci95_high - self.ci95_low) / self.p50 if self.p50 > 0 else math.inf


def percentile(sorted_samples: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    n = len(sorted_samples)
    rank = max(1, math.ceil(p / 100 * n))
    return sorted_samples[min(rank, n) - 1]


def median_ci_rank(n: int) -> int:
    """The 1-based rank j of the lower bound; the upper bound is rank n - j + 1."""
    if n > 1000:
        return max(1, math.floor((n - Z95 * math.sqrt(n)) / 2))
    total = 2**n
    cumulative = 0
    j = 1
    for k in range(n):
        cumulative += math.comb(n, k)
        if cumulative / total > 0.025:
            break
        j = k + 1  # P(X <= j - 1) <= 2.5 %: rank j still leaves at most 2.5 % below
    return min(j, (n + 1) // 2)


def median_ci95(sorted_samples: list[float]) -> tuple[float, float]:
    n = len(sorted_samples)
    j = median_ci_rank(n)
    return sorted_samples[j - 1], sorted_samples[n - j]


def summarize(samples: Sequence[float]) -> Stats:
    if not samples:
        raise ValueError("no samples")
    s = sorted(samples)
    mean = statistics.fmean(s)
    std = statistics.stdev(s) if len(s) > 1 else 0.0
    low, high = median_ci95(s)
    p25, p50, p75 = percentile(s, 25), percentile(s, 50), percentile(s, 75)
    return Stats(
        n=len(s),
        min=s[0],
        max=s[-1],
        mean=mean,
        std=std,
        p50=p50,
        p90=percentile(s, 90),
        p99=percentile(s, 99),
        ci95_low=low,
        ci95_high=high,
        cv=std / mean if mean else 0.0,
        p90_reliable=len(s) >= MIN_SAMPLES_P90,
        p99_reliable=len(s) >= MIN_SAMPLES_P99,
        p25=p25,
        p75=p75,
        iqr_rel=(p75 - p25) / p50 if p50 > 0 else 0.0,
    )


@dataclass
class Shift:
    """How sample b differs from sample a: Mann-Whitney U p-value and the Hodges-Lehmann shift b - a."""

    n_a: int
    n_b: int
    p_value: float
    shift: float  # Hodges-Lehmann: median of all pairwise differences b_j - a_i
    shift_low: float  # its distribution-free 95 % interval
    shift_high: float

    @property
    def significant(self) -> bool:
        """Different at the 5 % level, and the interval of the shift excludes zero (both must agree)."""
        return self.p_value < 0.05 and (self.shift_low > 0 or self.shift_high < 0)


def hodges_lehmann(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """(shift, low, high): the median of the pairwise differences b_j - a_i and its 95 % interval.

    The interval's ranks come from the normal approximation of U's null distribution
    (Lehmann 1963; the same as R's wilcox.test(conf.int=TRUE) for larger samples):
    k = floor(n_a n_b / 2 - z sqrt(n_a n_b (n_a + n_b + 1) / 12)); bounds are the k-th smallest and
    k-th largest difference.
    """
    diffs = np.sort(np.subtract.outer(np.asarray(b, dtype=float), np.asarray(a, dtype=float)).ravel())
    m, n = len(a), len(b)
    k = math.floor(m * n / 2 - Z95 * math.sqrt(m * n * (m + n + 1) / 12))
    k = min(max(k, 1), len(diffs))
    return float(np.median(diffs)), float(diffs[k - 1]), float(diffs[len(diffs) - k])


def shift_test(a: Sequence[float], b: Sequence[float]) -> Shift:
    """Mann-Whitney U (two-sided, scipy.stats) on raw samples, with the Hodges-Lehmann shift of b against a."""
    from scipy.stats import mannwhitneyu  # lazily: scipy takes a while to import and only --baseline needs it

    if not a or not b:
        raise ValueError("no samples")
    p = float(mannwhitneyu(b, a, alternative="two-sided").pvalue) if len(set(a) | set(b)) > 1 else 1.0
    shift, low, high = hodges_lehmann(a, b)
    return Shift(len(a), len(b), p, shift, low, high)
