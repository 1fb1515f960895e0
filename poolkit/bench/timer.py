"""Time one runtime on one device: what runs inside a bench worker (or in this process with --in-process).

A `LocalTimer` belongs to one runtime on one device. The parent (`scheduler`) asks it to `open` a
model (load time, first inference and warm-up measured there), to run `round`s of counted
iterations (the parent interleaves rounds across runtimes), to time an Identity (`overhead`), to
`profile` a row, and to `close` the model. It never decides how many samples are enough: the
parent does, from the raw samples it collects. Every runtime is asked the same questions through
the `Runtime` interface (`open_timed`, `timed_call`, `device_events`, `capture_graph`,
`run_host`, `end_profile`): what differs per backend is the backend's business.

CUDA rows record device time with the runtime's events around an un-synchronised launch (host
latency includes the wait for the end event), and `--cuda-graphs` replays a captured graph.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from poolkit.bench import process
from poolkit.bench.loop import Clock, Samples, sync_for, timed_loop
from poolkit.bench.outputs import CheckTally, OutputCheck
from poolkit.bench.stats import summarize
from poolkit.runtimes.base import DeviceEvents, Runtime, TimingSettings
from poolkit.runtimes.registry import runtime_class
from poolkit.services.artifacts import ModelArtifacts, open_artifacts

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Opened:
    """What opening a model on a runtime cost: load, first inference, and which provider ran it."""

    load_s: float
    first_s: float
    provider: str
    warmup_s: list[float]


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


class Timer(Protocol):
    """One runtime on one device for a whole bench run, in this process or in a worker of its own."""

    @property
    def alive(self) -> bool: ...

    def open(
        self,
        models_dir: str,
        model: str,
        batches: list[np.ndarray],
        warmup: int,
        expected: list[list[np.ndarray]] | None = None,
        model_obj: ModelArtifacts | None = None,
    ) -> Opened: ...

    def round(self, n: int, e2e: int) -> Round: ...

    def overhead(self, iters: int) -> float | None: ...

    def profile(self, iters: int = 20) -> dict[str, Any] | None: ...

    def close(self) -> None:
        """Close the model (the timer stays, for the next model)."""

    def shutdown(self) -> None:
        """Close the model and the timer itself (its worker, if any)."""


class _FeedProbe(Runtime):
    """Stands in for a runtime so that `ModelArtifacts.with_extra_inputs` hands back the full feed of a
    model with several inputs (the batch first, the seeded extras after): bench then feeds that tuple
    to the runtime itself and every interface call reaches the backend unwrapped."""

    name = "feed"

    def prepare(self, batch: Any) -> Any:
        return batch


def full_feed(artifacts: ModelArtifacts, batch: np.ndarray) -> Any:
    """The batch as every runtime of this model is fed: the array, or a tuple for several inputs."""
    return artifacts.with_extra_inputs(_FeedProbe()).prepare(batch)


def _copied(feed: Any) -> Any:
    return tuple(a.copy() for a in feed) if isinstance(feed, tuple) else feed.copy()


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
        self._events: DeviceEvents | None = None
        self._overheads: dict[tuple[int, ...], float | None] = {}
        self._artifacts: dict[tuple[str, str], ModelArtifacts] = {}
        self.settle = settle
        self.rt: Runtime | None = None
        self.source: Any = None
        self.batch: np.ndarray | None = None
        self.feeds: list[Any] = []
        self.prepared: list[Any] = []
        self.calls: list[Callable[[], Any]] = []
        self.check: OutputCheck | None = None
        self.loaded = self.cursor = 0

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
        batches: list[np.ndarray],
        warmup: int,
        expected: list[list[np.ndarray]] | None = None,
        model_obj: ModelArtifacts | None = None,
    ) -> Opened:
        """Load the model (timed), prepare the batches, time the first inference, then warm up (each timed).

        `batches` rotate call after call; `expected` (eager's outputs for each) checks a sample of the
        outputs produced while timed. A runtime whose prepared memory is fixed (a captured graph) is
        fed the next batch by `refill`, outside the clock; the others get one prepared batch each.
        """
        self.close()
        process.reset_peak_rss()
        self.cls.check_timing(self.device, self.timing)
        artifacts = model_obj if model_obj is not None else self.artifacts(models_dir, model)
        # Load time: session creation (ORT), jit.load + freeze (TorchScript), or rebuilding the module
        # from spec and weights (eager; already built, so near zero, when timed in-process).
        t0 = self.clock()
        source = artifacts.source(self.runtime_name)  # hash checked; eager: the rebuilt module
        if self.cls.reads == "module":
            source = copy.deepcopy(source)  # a runtime moves its module to its device: keep the original
        else:
            t0 = self.clock()  # a file's hash check is not loading it
        self.rt = rt = self.cls.open_timed(source, self.device, self.threads, self.timing)
        load = self.clock() - t0
        self.source, self.batch = source, batches[0]
        self.feeds = [full_feed(artifacts, b) for b in batches]
        self.check = OutputCheck(expected, getattr(rt, "precision", "fp32")) if expected else None
        # Fixed memory is refilled in place: give it a copy, never the caller's arrays (a CPU tensor shares them).
        fixed = [_copied(self.feeds[0])] if rt.fixed_memory else self.feeds
        self.prepared = [rt.prepare(f) for f in fixed]
        self.calls = [rt.timed_call(p) for p in self.prepared]
        t0 = self.clock()
        rt.infer(self.prepared[0])
        first = self.clock() - t0
        graph = rt.capture_graph(self.prepared[0])
        if graph is not None:
            self.calls = [graph]
        self.loaded, self.cursor = 0, 0
        self._events = self._given_events or rt.device_events()
        warm = self._timed(warmup, CheckTally()).host_s if warmup else []
        if self.timing.spinning and self.cls.has_spinning:
            self.settle()  # the warm-up spun the threads too: the next runtime's first round must not meet them
        return Opened(load, first, rt.provider, warm)

    def _timed(self, n: int, tally: CheckTally) -> Samples:
        """`n` model-only calls, rotating batches from the cursor; a sample of outputs checked after each."""
        rt, start, k = self.rt, self.cursor, len(self.feeds)
        assert rt is not None, "open a model first"

        def before(i: int) -> None:
            j = (start + i) % k
            if len(self.calls) == 1 and k > 1 and self.loaded != j:  # fixed memory: new data in place
                rt.refill(self.prepared[0], self.feeds[j])
                self.loaded = j

        def call(i: int) -> Any:
            return self.calls[0 if len(self.calls) == 1 else (start + i) % k]()

        def after(i: int, out: Any) -> None:
            if self.check is not None and self.check.due(start + i):
                self.check.add(tally, (start + i) % k, start + i, rt.to_numpy(out))

        samples = timed_loop(call, n, self.clock, sync_for(self._events), before=before, after=after)
        self.cursor += n
        return samples

    def round(self, n: int, e2e: int) -> Round:
        """`n` counted model-only calls and `e2e` end-to-end calls (host arrays in and out, as a user's
        loop), then, for a runtime whose threads spin, a wait until they are idle (`process.settle`)."""
        rt, feeds, k = self.rt, self.feeds, len(self.feeds)
        assert rt is not None, "open a model first"
        tally = CheckTally()
        model = self._timed(n, tally)
        end_to_end: list[float] = []
        if e2e:
            start = self.cursor

            def check_host(i: int, out: Any) -> None:
                if self.check is not None and self.check.due(start + i):
                    self.check.add(tally, (start + i) % k, start + i, out)

            run = timed_loop(lambda i: rt.run_host(feeds[(start + i) % k]), e2e, self.clock, after=check_host)
            end_to_end, self.loaded = run.host_s, -1  # run_host may have used the fixed memory
        settled = self.settle() if self.timing.spinning and self.cls.has_spinning else 0.0
        return Round(model.host_s, model.device_ms, end_to_end, tally.checked, tally.mismatch, settled,
                     process.peak_rss_mb())  # fmt: skip

    def overhead(self, iters: int) -> float | None:
        """p50 (ms) of an Identity on this runtime, device and batch shape: what a call costs by itself."""
        assert self.batch is not None
        key = tuple(self.batch.shape)
        if key not in self._overheads:
            with tempfile.TemporaryDirectory(prefix="poolkit-identity-") as folder:
                source = self.cls.identity_source(Path(folder), key[1:])
                if source is None:
                    self._overheads[key] = None
                else:
                    with self.cls.open_timed(source, self.device, self.threads, self.timing) as identity:
                        prepared = identity.prepare(self.batch)
                        identity.infer(prepared)
                        samples = timed_loop(lambda i: identity.infer(prepared), max(1, iters), self.clock).host_s
                    self._overheads[key] = summarize([s * 1e3 for s in samples]).p50
        return self._overheads[key]

    def profile(self, iters: int = 20) -> dict[str, Any] | None:
        """Runtimes with a profiler: run the model `iters` times with it on; which op dominates the kernel time."""
        if not self.cls.has_profiler or not self.feeds:
            return None
        with tempfile.TemporaryDirectory(prefix="poolkit-profile-") as folder:
            timing = replace(self.timing, cuda_graphs=False, profile_prefix=str(Path(folder) / "profile"))
            with self.cls.open_timed(self.source, self.device, self.threads, timing) as rt:
                prepared = rt.prepare(self.feeds[0])
                for _ in range(iters):
                    rt.infer(prepared)
                found = dominant_op(rt.end_profile())
        if found is not None:
            found["iters"] = iters
        return found

    def close(self) -> None:
        if self.rt is not None:
            self.rt.close()
        self.rt = self._events = self.check = None
        self.source = self.batch = None
        self.feeds, self.prepared, self.calls = [], [], []

    def shutdown(self) -> None:
        self.close()
