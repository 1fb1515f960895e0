"""Statistics on known samples, to the digit, and a timing loop driven by a scripted clock."""

from __future__ import annotations

import itertools

import pytest

from poolkit.bench.loop import time_calls
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


def test_time_calls_counts_warmup_apart_and_times_each_iteration() -> None:
    # each call is bracketed by two clock readings; the first call (first inference) by the first two
    ticks = itertools.accumulate([0.0, 0.5, 0.0, 0.001, 0.0, 0.002, 0.0, 0.003])
    clock_values = iter(list(ticks))
    calls = []
    timing = time_calls(lambda: calls.append(1), warmup=2, iters=3, min_time_s=None, clock=lambda: next(clock_values))
    assert timing.first_s == 0.5
    assert timing.samples_s == pytest.approx([0.001, 0.002, 0.003])
    assert len(calls) == 1 + 2 + 3


def test_min_time_runs_until_enough_time_and_ten_iterations() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.05  # every reading advances 50 ms: each timed call lasts 50 ms
        return now[0]

    timing = time_calls(lambda: None, warmup=0, iters=None, min_time_s=1.0, clock=clock)
    assert len(timing.samples_s) == 20 and sum(timing.samples_s) == pytest.approx(1.0)
    short = time_calls(lambda: None, warmup=0, iters=None, min_time_s=0.1, clock=clock)
    assert len(short.samples_s) == 10  # never fewer than ten
