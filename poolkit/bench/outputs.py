"""Outputs checked while timed (MLPerf's TEST01 idea) over rotating inputs (TEST04's).

A row is timed on several distinct batches, cycled call after call, so a runtime cannot post a
fast time by caching one answer; every CHECK_EVERY-th call's outputs (the batches taking turns) (taken after the clock
stopped) are compared with eager PyTorch's outputs for that very batch. A runtime that returns
stale outputs (a CUDA graph replayed on the wrong memory, an IO binding left on the previous
batch) or wrong ones fails its row instead of posting a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poolkit.runtimes.base import precision_tolerance
from poolkit.services.comparator import compare

ROTATE = 4  # distinct batches per row
CHECK_EVERY = 13  # check one call in this many; coprime with ROTATE, so every batch gets checked
CHECK_ATOL = 1e-4  # generous beside verify's 1e-5: this catches stale or wrong outputs, not rounding
CHECK_RTOL = 1e-4


@dataclass
class CheckTally:
    """How many outputs were checked in a round and the first mismatch, if any."""

    checked: int = 0
    mismatch: str | None = None


class OutputCheck:
    """Eager's outputs for each rotating batch, and the comparison of what the runtime produced."""

    def __init__(self, expected: list[list[np.ndarray]], precision: str = "fp32") -> None:
        self.expected = expected
        # A row computed in bf16 / fp16 (OpenVINO's default on a bf16 CPU) is checked at its own rounding, as
        # verify does: fp32's 1e-4 would fail every honest bf16 output and say nothing about staleness.
        self.atol, self.rtol = precision_tolerance(precision, CHECK_ATOL, CHECK_RTOL)

    def due(self, call_index: int) -> bool:
        return call_index % CHECK_EVERY == 0

    def add(self, tally: CheckTally, batch_index: int, call_index: int, actual: list[np.ndarray]) -> None:
        tally.checked += 1
        if tally.mismatch is None:
            tally.mismatch = self.differs(batch_index, actual, call_index)

    def differs(self, batch_index: int, actual: list[np.ndarray], call_index: int) -> str | None:
        expected = self.expected[batch_index]
        where = f"call {call_index} (batch {batch_index + 1} of {len(self.expected)})"
        if len(actual) != len(expected):
            return f"{where} gave {len(actual)} outputs, eager {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            result = compare(e, np.asarray(a), self.atol, self.rtol)
            if not result.passed:
                what = "shape" if result.shape_mismatch else f"max abs difference {result.max_abs:.3g}"
                return f"{where}: output {i} differs from eager ({what})"
        return None
