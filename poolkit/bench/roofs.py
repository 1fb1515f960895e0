"""The host's two roofs, measured once per run: memory bandwidth (a STREAM-like triad) and fp32 GEMM rate.

Every CPU row's achieved GB/s and GFLOP/s are then read as shares of what this machine can do
(`bandwidth_share`, `compute_share`) and drawn on a roofline. The triad `a = b + s * c` runs on
arrays each twice the last-level cache (so it streams from memory, not cache) and counts the
three arrays' bytes once, as STREAM does; the GEMM is a square `torch.mm`, 2 n^3 FLOPs. Both use
the run's thread count and keep the best of a few repetitions (the machine's capability, not its
average mood). They cost a fraction of a second: see `seconds` in bench.json.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

LLC_FALLBACK = 32 * 2**20  # when the OS does not say (lscpu inside this VM reports the host's whole L3)
MIN_TRIAD_BYTES = 64 * 2**20  # per array, at least
GEMM_N = 768  # 0.9 GFLOP a call: long enough to reach the peak, short enough for make demo
REPS = 2


@dataclass
class HostRoofs:
    gb_per_s: float  # sustained memory bandwidth, triad
    gflops_per_s: float  # fp32 GEMM
    threads: int
    triad_mb_per_array: float
    gemm_n: int
    seconds: float  # what measuring both cost


def last_level_cache_bytes() -> int:
    for name in ("SC_LEVEL3_CACHE_SIZE", "SC_LEVEL2_CACHE_SIZE"):
        try:
            size = os.sysconf(name)
        except (ValueError, OSError):
            continue
        if size and size > 0:
            return int(size)
    return LLC_FALLBACK


def measure_host_roofs(threads: int, llc_bytes: int | None = None, gemm_n: int = GEMM_N) -> HostRoofs:
    """Triad bandwidth and GEMM rate at `threads` threads (torch's thread count restored after)."""
    import torch  # lazily: bench's workers import this package and must not all load torch

    start = time.perf_counter()
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = max(2 * (llc_bytes or last_level_cache_bytes()), MIN_TRIAD_BYTES) // 4
        a, b, c = torch.empty(n), torch.full((n,), 1.5), torch.full((n,), 0.5)
        triad = _best(lambda: torch.add(b, c, alpha=3.0, out=a))
        x, y = torch.full((gemm_n, gemm_n), 0.5), torch.empty(gemm_n, gemm_n)
        gemm = _best(lambda: torch.mm(x, x, out=y))
    finally:
        torch.set_num_threads(saved)
    return HostRoofs(
        gb_per_s=3 * n * 4 / triad / 1e9,
        gflops_per_s=2 * gemm_n**3 / gemm / 1e9,
        threads=threads,
        triad_mb_per_array=n * 4 / 2**20,
        gemm_n=gemm_n,
        seconds=time.perf_counter() - start,
    )


def _best(call: object) -> float:
    """Seconds of the fastest of REPS timed calls, after one untimed call (first touch, warm caches)."""
    assert callable(call)
    call()
    best = float("inf")
    for _ in range(REPS):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best
