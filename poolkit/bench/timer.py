"""Time one runtime on one device: what runs inside a bench worker (or in this process with --in-process).

A `LocalTimer` belongs to one runtime on one device; the parent holds it through a `worker.WorkerTimer`
(in a worker process, or in this process), which answers the same calls. The parent (`scheduler`) asks it to `open` a
model in a precision (load time, first inference and warm-up measured there; a runtime's fp32 model
and its variants stay open side by side, each in a slot named by its precision), to run `round`s of
counted iterations on a slot (the parent interleaves rounds across rows), to time an Identity
(`overhead`), to `profile` a slot, and to `close` the model. It never decides how many samples are
enough: the parent does, from the raw samples it collects. A runtime is asked only what it declares
(`runtimes.capabilities`): a timed open, the launch without its wait and device events, a captured
graph, spinning, a profiler, an Identity model; the rest takes the plain path here.

CUDA rows record device time with the runtime's events around an un-synchronised launch (host
latency includes the wait for the end event), and `--cuda-graphs` replays a captured graph.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from poolkit.bench import process
from poolkit.bench.explain import Opener, identity_p50, profile
from poolkit.bench.loop import Clock, Samples, sync_for, timed_loop
from poolkit.bench.outputs import CheckTally, OutputCheck
from poolkit.common.errors import PoolkitError
from poolkit.runtimes.base import Runtime, run_batch
from poolkit.runtimes.capabilities import (
    DeviceEvents,
    DeviceTimed,
    GraphReplay,
    HostRun,
    Profiled,
    Spinning,
    TimedOpen,
    TimingSettings,
)
from poolkit.runtimes.registry import runtime_class
from poolkit.services.artifacts import ModelArtifacts, open_artifacts


@dataclass
class Opened:
    """What opening a model on a runtime cost (load, first inference, warm-up), and what ran it (provider, mode)."""

    load_s: float
    first_s: float
    provider: str
    warmup_s: list[float]
    mode: dict[str, Any] = field(default_factory=dict)


@dataclass
class Round:
    """One round's samples: model-only host seconds, device ms (CUDA rows), end-to-end host seconds;
    how many outputs were checked and the first mismatch; the settling wait; the peak memory so far."""

    host_s: list[float]
    device_ms: list[float] = field(default_factory=list)
    e2e_s: list[float] = field(default_factory=list)
    checked: int = 0
    mismatch: str | None = None
    settle_s: float = 0.0
    peak_rss_mb: float | None = None


def check_timing(cls: type[Runtime], device: str, settings: TimingSettings) -> None:
    """Refuse a timing setting the runtime cannot honour on `device`, before anything is opened."""
    if settings.cuda_graphs and (device != "cuda" or not issubclass(cls, GraphReplay)):
        raise PoolkitError("--cuda-graphs applies to CUDA rows only")
    if settings.profile_prefix and not issubclass(cls, Profiled):
        raise PoolkitError(f"runtime '{cls.name}' has no profiler")


def open_timed(cls: type[Runtime], source: Any, device: str, threads: int | None, settings: TimingSettings) -> Runtime:
    """The runtime opened as bench times it: its own timed open where it has one, else its constructor."""
    check_timing(cls, device, settings)
    if issubclass(cls, TimedOpen):
        return cls.open_timed(source, device, threads, settings)
    return cls(source, device, threads)


def _copied(feed: Any) -> Any:
    return tuple(a.copy() for a in feed) if isinstance(feed, tuple) else feed.copy()


@dataclass
class Slot:
    """One open model (a precision of it) on the timer's runtime: its batches prepared, its calls, its check."""

    rt: Runtime
    source: Any
    feeds: list[Any]
    prepared: list[Any]
    calls: list[Callable[[], Any]]
    check: OutputCheck | None
    events: DeviceEvents | None = None
    loaded: int = 0  # the batch a fixed memory holds now
    cursor: int = 0  # calls so far: which batch comes next, which call is checked


class LocalTimer:
    """One runtime on one device, timed in this process."""

    def __init__(
        self,
        runtime: str,
        device: str,
        threads: int | None,
        spinning: bool,
        cuda_graphs: bool = False,
        clock: Clock = time.perf_counter,
        events: DeviceEvents | None = None,
        settle: Callable[[], float] = process.settle,
    ) -> None:
        self.cls = runtime_class(runtime)
        self.runtime_name, self.device, self.threads = self.cls.name, device, threads
        self.timing = TimingSettings(spinning=spinning, cuda_graphs=cuda_graphs)
        self.clock = clock
        self._given_events = events  # None: the runtime's own (CUDA rows), none on the CPU
        self._overheads: dict[tuple[int, ...], float | None] = {}
        self._artifacts: dict[tuple[str, str], ModelArtifacts] = {}
        self.settle = settle
        self.slots: dict[str, Slot] = {}

    @property
    def alive(self) -> bool:
        return True

    def artifacts(self, models_dir: str, name: str) -> ModelArtifacts:
        key = (str(models_dir), name)
        if key not in self._artifacts:
            (self._artifacts[key],) = open_artifacts(Path(models_dir), [name])
        return self._artifacts[key]

    def open(
        self,
        models_dir: str,
        model: str,
        precision: str,
        batches: list[np.ndarray],
        warmup: int,
        expected: list[list[np.ndarray]] | None = None,
        model_obj: ModelArtifacts | None = None,
    ) -> Opened:
        """Load the model in `precision` (timed), prepare the batches, time the first inference, then warm up.

        `batches` rotate call after call; `expected` (eager's outputs for each) checks a sample of the
        outputs produced while timed, at the precision the row computes in. A runtime whose prepared
        memory is fixed (a captured graph) is fed the next batch by `refill`, outside the clock; the
        others get one prepared batch each.
        """
        self.close(precision)
        if not self.slots:
            process.reset_peak_rss()
        check_timing(self.cls, self.device, self.timing)
        artifacts = model_obj if model_obj is not None else self.artifacts(models_dir, model)
        # Load time: session creation (ORT), jit.load + freeze (TorchScript), or rebuilding the module
        # from spec and weights (eager; already built, so near zero, when timed in-process).
        t0 = self.clock()
        source = artifacts.source(self.runtime_name, precision)  # hash checked; eager: the rebuilt module
        if self.cls.reads == "module":
            source = copy.deepcopy(source)  # a runtime moves its module to its device: keep the original
        else:
            t0 = self.clock()  # a file's hash check is not loading it
        rt = open_timed(self.cls, source, self.device, self.threads, self.timing)
        load = self.clock() - t0
        feeds = [artifacts.feed(b) for b in batches]
        computed_in = precision if precision != "fp32" else rt.precision
        check = OutputCheck(expected, computed_in) if expected else None
        # Fixed memory is refilled in place: give it a copy, never the caller's arrays (a CPU tensor shares them).
        fixed = isinstance(rt, GraphReplay) and rt.fixed_memory()
        prepared = [rt.prepare(f) for f in ([_copied(feeds[0])] if fixed else feeds)]
        calls = [rt.timed_call(p) if isinstance(rt, DeviceTimed) else partial(rt.infer, p) for p in prepared]
        slot = self.slots[precision] = Slot(rt, source, feeds, prepared, calls, check)
        t0 = self.clock()
        rt.infer(prepared[0])
        first = self.clock() - t0
        graph = rt.capture_graph(prepared[0]) if isinstance(rt, GraphReplay) else None
        if graph is not None:
            slot.calls = [graph]
        slot.events = self._given_events or (rt.device_events() if isinstance(rt, DeviceTimed) else None)
        warm = self._timed(slot, warmup, CheckTally()).host_s if warmup else []
        if isinstance(rt, Spinning) and rt.spins():
            self.settle()  # the warm-up spun the threads too: the next runtime's first round must not meet them
        return Opened(load, first, rt.provider, warm, dict(rt.mode))

    def _slot(self, slot: str) -> Slot:
        if slot not in self.slots:
            raise PoolkitError(f"bench worker: no model open in slot {slot!r}")
        return self.slots[slot]

    def _timed(self, slot: Slot, n: int, tally: CheckTally) -> Samples:
        """`n` model-only calls, rotating batches from the cursor; a sample of outputs checked after each."""
        rt, start, k = slot.rt, slot.cursor, len(slot.feeds)

        def before(i: int) -> None:
            j = (start + i) % k
            if len(slot.calls) == 1 and k > 1 and slot.loaded != j:  # fixed memory: new data in place
                assert isinstance(rt, GraphReplay)
                rt.refill(slot.prepared[0], slot.feeds[j])
                slot.loaded = j

        def call(i: int) -> Any:
            return slot.calls[0 if len(slot.calls) == 1 else (start + i) % k]()

        def after(i: int, out: Any) -> None:
            if slot.check is not None and slot.check.due(start + i):
                slot.check.add(tally, (start + i) % k, start + i, rt.to_numpy(out))

        samples = timed_loop(call, n, self.clock, sync_for(slot.events), before=before, after=after)
        slot.cursor += n
        return samples

    def round(self, slot_name: str, n: int, e2e: int) -> Round:
        """`n` counted model-only calls and `e2e` end-to-end calls (host arrays in and out, as a user's
        loop), then, for a runtime whose threads spin, a wait until they are idle (`process.settle`)."""
        slot = self._slot(slot_name)
        rt, feeds, k = slot.rt, slot.feeds, len(slot.feeds)
        tally = CheckTally()
        model = self._timed(slot, n, tally)
        end_to_end: list[float] = []
        if e2e:
            start = slot.cursor

            def check_host(i: int, out: Any) -> None:
                if slot.check is not None and slot.check.due(start + i):
                    slot.check.add(tally, (start + i) % k, start + i, out)

            host = rt.run_host if isinstance(rt, HostRun) else (lambda batch: run_batch(rt, batch))
            run = timed_loop(lambda i: host(feeds[(start + i) % k]), e2e, self.clock, after=check_host)
            end_to_end, slot.loaded = run.host_s, -1  # run_host may have used the fixed memory
        settled = self.settle() if isinstance(rt, Spinning) and rt.spins() else 0.0
        peak = process.peak_rss_mb()
        return Round(model.host_s, model.device_ms, end_to_end, tally.checked, tally.mismatch, settled, peak)

    def _opener(self) -> Opener:
        return lambda source, timing: open_timed(self.cls, source, self.device, self.threads, timing)

    def overhead(self, slot_name: str, iters: int) -> float | None:
        """p50 (ms) of an Identity on this runtime, device and batch shape: what a call costs by itself."""
        feed = self._slot(slot_name).feeds[0]
        key = tuple((feed[0] if isinstance(feed, tuple) else feed).shape)
        if key not in self._overheads:
            self._overheads[key] = identity_p50(self.cls, self._opener(), self.timing, key, iters, self.clock)
        return self._overheads[key]

    def profile(self, slot_name: str, iters: int = 20) -> dict[str, Any] | None:
        """Runtimes with a profiler: run the model `iters` times with it on; which op dominates the kernel time."""
        slot = self._slot(slot_name)
        return profile(self.cls, self._opener(), self.timing, slot.source, slot.feeds[0], iters)

    def close(self, slot: str | None = None) -> None:
        for name in [slot] if slot is not None else list(self.slots):
            if name in self.slots:
                self.slots.pop(name).rt.close()

    def shutdown(self) -> None:
        self.close()
