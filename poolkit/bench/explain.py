"""What explains a row's figure, measured beside it: what a call costs with a model that does nothing
(an Identity on the same runtime, device and batch), and, for a slow row, which op its profiler
says dominates. Each asks the runtime for a capability (`IdentityModel`, `Profiled`) and is None
where it has none."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from poolkit.bench.loop import Clock, timed_loop
from poolkit.bench.stats import summarize
from poolkit.runtimes.base import Runtime
from poolkit.runtimes.capabilities import IdentityModel, Profiled, TimingSettings

Opener = Callable[[Any, TimingSettings], Runtime]  # a source and timing settings -> the runtime opened as timed


def identity_p50(
    cls: type[Runtime], opener: Opener, timing: TimingSettings, shape: tuple[int, ...], iters: int, clock: Clock
) -> float | None:
    """p50 (ms) of an Identity of batch `shape` on the runtime: what a call costs by itself."""
    if not issubclass(cls, IdentityModel):
        return None
    batch = np.zeros(shape, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="poolkit-identity-") as folder:
        source = cls.identity_source(Path(folder), shape[1:])
        if source is None:
            return None
        with opener(source, timing) as identity:
            prepared = identity.prepare(batch)
            identity.infer(prepared)
            samples = timed_loop(lambda i: identity.infer(prepared), max(1, iters), clock).host_s
    return summarize([s * 1e3 for s in samples]).p50


def profile(
    cls: type[Runtime], opener: Opener, timing: TimingSettings, source: Any, feed: Any, iters: int = 20
) -> dict[str, Any] | None:
    """Run the model `iters` times under the runtime's profiler; which op dominates the kernel time, by whose profiler."""
    if not issubclass(cls, Profiled):
        return None
    with tempfile.TemporaryDirectory(prefix="poolkit-profile-") as folder:
        profiled = replace(timing, cuda_graphs=False, profile_prefix=str(Path(folder) / "profile"))
        with opener(source, profiled) as rt:
            prepared = rt.prepare(feed)
            for _ in range(iters):
                rt.infer(prepared)
            assert isinstance(rt, Profiled)
            kernels = rt.end_profile()
    found = dominant_op(kernels.kernel_us)
    return None if found is None else {"tool": kernels.tool, **found, "iters": iters}


def dominant_op(kernel_us: dict[str, float]) -> dict[str, Any] | None:
    """From kernel microseconds per op type (a runtime's `end_profile`), the op taking most and its share."""
    total = sum(kernel_us.values())
    if not kernel_us or total <= 0:
        return None
    ranked = sorted(kernel_us.items(), key=lambda kv: -kv[1])
    op, us = ranked[0]
    return {
        "op": op,
        "share": us / total,
        "ops": [{"op": name, "us": t, "share": t / total} for name, t in ranked],
        "kernel_us": total,
    }
