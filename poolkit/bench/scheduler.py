"""Interleaved rounds across runtimes: how bench spreads a drift of the machine over every row alike.

For one model, batch and device, every open row (a runtime with a model or one of its precision
variants open) takes a round in turn, each round starting one row later, so no row always follows
another. Fixed count: `iters` split in `rounds`. Adaptive (`min_time_s`): rounds of about ROUND_S
until each row's median is known well enough (like torch.utils.benchmark's adaptive_autorange).
A row collects its samples here while it runs (`OpenRow`) and becomes a `Measurement` when done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from poolkit.bench.measurement import BenchSettings, Measurement
from poolkit.bench.stats import summarize
from poolkit.bench.worker import WorkerTimer
from poolkit.common.errors import PoolkitError

ROUND_S = 0.05  # adaptive mode: about this much sampling per runtime per round


def _quiet(*args: Any) -> None:
    """What a progress callback does when nobody shows the progress."""


@dataclass
class Progress:
    """Where bench says how far it is: the units of work once known (rounds to time), each step with
    the units it completed (a round, an adaptive row done, a row that will not run), each model begun."""

    total: Callable[[int], None] = _quiet
    step: Callable[[str, int], None] = _quiet
    model: Callable[[str], None] = _quiet


@dataclass
class OpenRow:
    """A row with its runtime open: what it is and what opening it said (`opened`, a Measurement without
    samples), its timer, the cost estimate adaptive rounds are sized by, and the samples so far."""

    opened: Measurement
    timer: WorkerTimer
    estimate_s: float
    done: bool = False
    samples_ms: list[float] = field(default_factory=list)
    e2e_samples_ms: list[float] = field(default_factory=list)
    device_samples_ms: list[float] = field(default_factory=list)
    outputs_checked: int = 0
    outputs_matched: bool | None = None
    settle_ms: float = 0.0
    peak_rss_mb: float | None = None
    status: str = "ok"
    reason: str | None = None

    @property
    def slot(self) -> str:
        """What the row's timer calls it: one worker holds a runtime's fp32 model and its variants at once."""
        return self.opened.precision

    def fail(self, reason: str) -> None:
        """The row fails and posts no time: its samples are dropped."""
        self.status, self.reason, self.done = "failed", reason, True
        self.samples_ms, self.e2e_samples_ms, self.device_samples_ms = [], [], []

    def finish(self, **after: Any) -> Measurement:
        """The row as a value, its statistics computed once (`after`: what was measured after the rounds)."""
        kept: dict[str, Any] = {f: getattr(self, f) for f in ("status", "reason", "outputs_checked", "outputs_matched")}
        samples: dict[str, Any] = {
            f: tuple(getattr(self, f)) for f in ("samples_ms", "e2e_samples_ms", "device_samples_ms")
        }
        return replace(self.opened, **kept, **samples, settle_ms=self.settle_ms, peak_rss_mb=self.peak_rss_mb, **after)


def take_round(row: OpenRow, n: int) -> None:
    """`n` samples for the row (as many end to end). A failing round, or outputs that differ from
    eager's, fail the row and drop its samples: a wrong answer never posts a fast time."""
    try:
        got = row.timer.round(row.slot, n, n)
    except PoolkitError as exc:
        row.fail(str(exc))
        return
    row.outputs_checked += got.checked
    row.settle_ms += got.settle_s * 1e3
    if got.peak_rss_mb is not None:
        row.peak_rss_mb = max(row.peak_rss_mb or 0.0, got.peak_rss_mb)
    if got.mismatch is not None:
        row.outputs_matched = False
        row.fail(f"outputs checked while timed: {got.mismatch}")
        return
    if got.checked:
        row.outputs_matched = True
    row.samples_ms.extend(h * 1e3 for h in got.host_s)
    row.device_samples_ms.extend(got.device_ms)
    row.e2e_samples_ms.extend(e * 1e3 for e in got.e2e_s)


def round_counts(iters: int, rounds: int) -> list[int]:
    """`iters` split as evenly as possible in `rounds` rounds (never an empty round)."""
    rounds = max(1, min(rounds, iters))
    return [iters // rounds + (1 if i < iters % rounds else 0) for i in range(rounds)]


def progress_units(settings: BenchSettings) -> int:
    """What one row adds to the progress bar: its rounds (fixed count), or 1 when done (adaptive)."""
    return len(round_counts(settings.iters or 100, settings.rounds)) if settings.min_time_s is None else 1


def sample_interleaved(
    rows: list[OpenRow], settings: BenchSettings, on_round: Callable[[OpenRow, int], None] | None = None
) -> None:
    """Rounds across rows, each round starting one row later, so no row always follows another;
    `on_round(row, units)` after each (the progress bar: a unit per round, or per adaptive row done).

    Fixed count: `iters` split in `rounds`. Adaptive (`min_time_s`): every row samples at least
    `min_time_s` and 10 iterations, then until its median's 95 % interval is within `ci_target` of
    the median, or `max_time_s` is spent (then it is flagged `imprecise`).
    """
    tell = on_round or (lambda row, units: None)
    if settings.min_time_s is None:
        for r, n in enumerate(round_counts(settings.iters or 100, settings.rounds)):
            for row in rotated(rows, r):
                if not row.done:
                    take_round(row, n)
                tell(row, 1)  # a failed row's rounds count as done: the bar reaches its end
        return
    limit = settings.max_time_s if settings.max_time_s is not None else max(10 * settings.min_time_s, 1.0)
    r = 0
    while not all(row.done for row in rows):
        for row in rotated(rows, r):
            if row.done:
                continue
            n = max(1, min(1000, int(ROUND_S / max(row.estimate_s, 1e-7))))
            take_round(row, n)
            row.done = row.done or adaptive_done(row.samples_ms, settings, limit)
            if row.done:
                tell(row, 1)
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
