"""Latency statistics over per-iteration samples, computed exactly so tests can check them to the digit.

Percentiles use the nearest-rank rule (as onnxruntime_perf_test does): p-th percentile is the
value at rank ceil(p/100 * n) of the sorted samples. The 95% confidence interval of the median is
the distribution-free order-statistic interval: ranks j and n - j + 1 with j the largest rank
such that P(Binomial(n, 1/2) <= j - 1) <= 2.5 % (exact up to 1,000 samples; beyond, the normal
approximation floor((n - 1.96 sqrt(n)) / 2)). With fewer than 6 samples it is the whole range.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

Z95 = 1.959963984540054
UNSTABLE_CV = 0.10  # torch.utils.benchmark warns when IQR/median >= 0.1; we flag CV above 10 %


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
    cv: float  # std / mean

    @property
    def unstable(self) -> bool:
        return self.cv > UNSTABLE_CV


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


def summarize(samples: list[float]) -> Stats:
    if not samples:
        raise ValueError("no samples")
    s = sorted(samples)
    mean = statistics.fmean(s)
    std = statistics.stdev(s) if len(s) > 1 else 0.0
    low, high = median_ci95(s)
    return Stats(
        n=len(s),
        min=s[0],
        max=s[-1],
        mean=mean,
        std=std,
        p50=percentile(s, 50),
        p90=percentile(s, 90),
        p99=percentile(s, 99),
        ci95_low=low,
        ci95_high=high,
        cv=std / mean if mean else 0.0,
    )
