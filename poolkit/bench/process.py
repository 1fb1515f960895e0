"""What a bench worker knows about its own process: when its threads have gone idle, and its peak memory.

Settling: a runtime whose idle threads spin-wait (ONNX Runtime's default) keeps burning the cores
for tens of milliseconds after its last call returns (measured here: about 100 ms of wall time, a
quarter of a core, on the shared 2-core machine), which inflated the next runtime's tail 10-50x.
So after each round such a worker waits until its own process stops using CPU before it replies:
the parent's next round then starts on quiet cores, while the runtime's own figure is still
timed with its threads spinning, as a plain loop runs it. The process CPU clock sums every thread;
Linux updates a running thread's share at each scheduler tick, so the window spans several ticks.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable
from pathlib import Path

SETTLE_WINDOW_S = 0.01  # longer than a 4 ms scheduler tick, so a spinning thread shows up in every window
SETTLE_IDLE_SHARE = 0.1  # idle: the process used under 10 % of one core over a window
SETTLE_LIMIT_S = 0.5  # never wait longer than this (a thread that never idles is the runtime's, not ours)


def settle(
    cpu: Callable[[], float] = time.process_time,
    sleep: Callable[[float], None] = time.sleep,
    window_s: float = SETTLE_WINDOW_S,
    limit_s: float = SETTLE_LIMIT_S,
) -> float:
    """Sleep in windows until one passes with this process (all its threads) nearly idle; the time waited."""
    waited = 0.0
    while waited < limit_s:
        before = cpu()
        sleep(window_s)
        waited += window_s
        if cpu() - before < SETTLE_IDLE_SHARE * window_s:
            break
    return waited


STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> None:
    """Start a new peak-memory window (Linux: writing 5 to clear_refs resets VmHWM); elsewhere a no-op."""
    with contextlib.suppress(OSError):
        CLEAR_REFS.write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory (MB) since the last reset: VmHWM, or the process's lifetime peak (getrusage)."""
    with contextlib.suppress(OSError, ValueError):
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
