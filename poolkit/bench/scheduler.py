"""Interleaved rounds across runtimes: how bench spreads a drift of the machine over every row alike.

For one model, batch and device, every open row (a runtime with its model open) takes a round in
turn, each round starting one runtime later, so no runtime always follows another. Fixed count:
`iters` split in `rounds`. Adaptive (`min_time_s`): rounds of about ROUND_S until each row's
median is known well enough (like torch.utils.benchmark's adaptive_autorange).
"""

from __future__ import annotations

from dataclasses import dataclass

from poolkit.bench.measurement import BenchSettings, Measurement
from poolkit.bench.stats import summarize
from poolkit.bench.timer import Timer
from poolkit.common.errors import PoolkitError

ROUND_S = 0.05  # adaptive mode: about this much sampling per runtime per round


@dataclass
class OpenRow:
    """A model x runtime x device row with its runtime open: its Measurement, its timer, and the cost
    estimate adaptive rounds are sized by."""

    m: Measurement
    timer: Timer
    estimate_s: float
    done: bool = False


def fail(row: OpenRow, reason: str) -> None:
    """The row fails and posts no time: its samples are dropped."""
    row.m.status, row.m.reason, row.done = "failed", reason, True
    row.m.samples_ms, row.m.e2e_samples_ms, row.m.device_samples_ms = [], [], []


def take_round(row: OpenRow, n: int) -> None:
    """`n` samples for the row (as many end to end). A failing round, or outputs that differ from
    eager's, fail the row and drop its samples: a wrong answer never posts a fast time."""
    try:
        got = row.timer.round(n, n)
    except PoolkitError as exc:
        fail(row, str(exc))
        return
    m = row.m
    m.outputs_checked += got.checked
    m.settle_ms += got.settle_s * 1e3
    if got.peak_rss_mb is not None:
        m.peak_rss_mb = max(m.peak_rss_mb or 0.0, got.peak_rss_mb)
    if got.mismatch is not None:
        m.outputs_matched = False
        fail(row, f"outputs checked while timed: {got.mismatch}")
        return
    if got.checked:
        m.outputs_matched = True
    m.samples_ms.extend(h * 1e3 for h in got.host_s)
    m.device_samples_ms.extend(got.device_ms)
    m.e2e_samples_ms.extend(e * 1e3 for e in got.e2e_s)


def round_counts(iters: int, rounds: int) -> list[int]:
    """`iters` split as evenly as possible in `rounds` rounds (never an empty round)."""
    rounds = max(1, min(rounds, iters))
    return [iters // rounds + (1 if i < iters % rounds else 0) for i in range(rounds)]


def sample_interleaved(rows: list[OpenRow], settings: BenchSettings) -> None:
    """Rounds across runtimes, each round starting one runtime later, so no runtime always follows another.

    Fixed count: `iters` split in `rounds`. Adaptive (`min_time_s`): every row samples at least
    `min_time_s` and 10 iterations, then until its median's 95 % interval is within `ci_target` of
    the median, or `max_time_s` is spent (then it is flagged `imprecise`).
    """
    if settings.min_time_s is None:
        for r, n in enumerate(round_counts(settings.iters or 100, settings.rounds)):
            for row in rotated(rows, r):
                if not row.done:
                    take_round(row, n)
        return
    limit = settings.max_time_s if settings.max_time_s is not None else max(10 * settings.min_time_s, 1.0)
    r = 0
    while not all(row.done for row in rows):
        for row in rotated(rows, r):
            if row.done:
                continue
            n = max(1, min(1000, int(ROUND_S / max(row.estimate_s, 1e-7))))
            take_round(row, n)
            row.done = row.done or adaptive_done(row.m.samples_ms, settings, limit)
        r += 1


def adaptive_done(samples_ms: list[float], settings: BenchSettings, limit_s: float) -> bool:
    spent = sum(samples_ms) / 1e3
    if spent >= limit_s:
        return True
    if spent < (settings.min_time_s or 0) or len(samples_ms) < max(10, settings.iters or 0):
        return False
    return summarize(samples_ms).ci95_rel_width <= settings.ci_target


def rotated(rows: list[OpenRow], r: int) -> list[OpenRow]:
    k = r % len(rows) if rows else 0
    return rows[k:] + rows[:k]
