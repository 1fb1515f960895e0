"""Statistics on known samples, to the digit, and a timing loop driven by a scripted clock."""

from __future__ import annotations

import pytest

from poolkit.bench.stats import median_ci95, percentile, summarize


def test_summary_of_one_to_a_hundred() -> None:
    s = summarize([float(i) for i in range(100, 0, -1)])  # order does not matter
    assert (s.n, s.min, s.max, s.mean) == (100, 1.0, 100.0, 50.5)
    assert (s.p50, s.p90, s.p99) == (50.0, 90.0, 99.0)  # nearest rank
    assert (s.ci95_low, s.ci95_high) == (40.0, 61.0)  # ranks 40 and 61 of 100
    assert s.std == pytest.approx(29.011491975882016)
    assert s.cv == pytest.approx(29.011491975882016 / 50.5) and s.unstable


def test_nearest_rank_percentiles_on_ten_samples() -> None:
    samples = sorted([12.0, 10.0, 11.0, 13.0, 10.5, 10.2, 10.1, 30.0, 10.3, 10.4])
    assert percentile(samples, 50) == 10.4
    assert percentile(samples, 90) == 13.0
    assert percentile(samples, 99) == 30.0
    assert median_ci95(samples) == (10.1, 13.0)  # ranks 2 and 9 of 10: P(Bin(10, 1/2) <= 1) = 1.07 %


def test_median_interval_ranks() -> None:
    from poolkit.bench.stats import median_ci_rank

    assert [median_ci_rank(n) for n in (5, 6, 10, 20, 100, 1000)] == [1, 1, 2, 6, 40, 469]
    assert median_ci_rank(5000) == 2430  # normal approximation beyond 1,000 samples


def test_a_steady_run_is_not_unstable() -> None:
    s = summarize([1.0, 1.01, 0.99, 1.0, 1.02, 0.98])
    assert not s.unstable and s.p50 == 1.0
