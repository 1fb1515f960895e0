"""What a runtime may offer beyond the core `Runtime`: each capability a protocol of its own.

A backend declares one by subclassing it (`class OnnxRuntime(OnnxSession, HasLayerOutputs)`); a caller
asks `isinstance(rt, Profiled)` or `issubclass(cls, Spinning)` and otherwise takes the plain path. The
protocols hold methods only, so `issubclass` works on classes; a class has a capability when it or a
base defines the methods, so a backend that must not have one (TensorRT's layer outputs) does not
inherit from the class that has it. bench asks for most of them; verify for layer outputs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from poolkit.runtimes.base import LayerOutputs, Runtime

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TimingSettings:
    """How bench opens a runtime to time it; what a runtime cannot honour is refused (`bench.timer.check_timing`)."""

    spinning: bool = False  # `Spinning` runtimes: idle intra-op threads spin-wait
    cuda_graphs: bool = False  # CUDA rows of `GraphReplay` runtimes: replay a captured graph
    profile_prefix: str | None = None  # `Profiled` runtimes: write a profile trace there
    preallocate_outputs: bool = True  # outputs allocated once by `prepare`, then bound by value


class DeviceEvents(Protocol):
    """What device timing needs: an event recorded on the runtime's stream, and ms between two of them."""

    def record(self) -> Any: ...

    def elapsed_ms(self, start: Any, end: Any) -> float: ...


class TorchCudaEvents:
    """CUDA events on one stream (torch's current one, or one made for a runtime that takes a stream); `cuda` is
    `torch.cuda` (a fake in the tests), so the device-timing logic runs without a GPU."""

    def __init__(self, stream: Any = None, cuda: Any = None) -> None:
        if cuda is None:
            import torch  # lazily: only CUDA rows get here, and the registry must not load torch

            cuda = torch.cuda
        self._cuda = cuda
        self.stream = stream if stream is not None else cuda.current_stream()

    @classmethod
    def on_new_stream(cls, cuda: Any = None) -> TorchCudaEvents:
        events = cls(cuda=cuda)
        events.stream = events._cuda.Stream()
        return events

    def record(self) -> Any:
        event = self._cuda.Event(enable_timing=True)
        event.record(self.stream)
        return event

    def elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(start.elapsed_time(end))


@dataclass(frozen=True)
class Reference:
    """A runtime timed by a tool that is not poolkit (a plain loop, torch.utils.benchmark): what bench must match."""

    tool: str
    median_ms: float
    samples: int
    min_ms: float | None = None  # the fastest call (or block of calls, per call): what a loaded machine leaves alone


def plain_loop(tool: str, call: Callable[[], Any], warmup: int, iters: int) -> Reference:
    """`call` as a user's loop times it: `warmup` calls, then `iters` each between two perf_counter readings."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
    return Reference(tool, statistics.median(samples), iters, min(samples))


@dataclass(frozen=True)
class KernelProfile:
    """Kernel microseconds per op type, and whose profiler measured them (said in the row's notes)."""

    tool: str
    kernel_us: dict[str, float]


@runtime_checkable
class TimedOpen(Protocol):
    """Opens as bench times it, honouring `TimingSettings`; without it bench opens it with its constructor."""

    @classmethod
    def open_timed(cls, source: Any, device: str, threads: int | None, settings: TimingSettings) -> Runtime: ...


@runtime_checkable
class DeviceTimed(Protocol):
    """CUDA rows: the call without its wait, so that events on the runtime's stream bracket the launch."""

    def timed_call(self, prepared: Any) -> Callable[[], Any]: ...  # returns the outputs; on the CPU: `infer`

    def device_events(self) -> DeviceEvents | None: ...  # on its stream; None without a device clock (CPU)


@runtime_checkable
class GraphReplay(Protocol):
    """`--cuda-graphs`: a replay reads one prepared memory (`fixed_memory`); the next batch goes in by `refill`."""

    def fixed_memory(self) -> bool: ...

    # The replay of a graph captured on `prepared`; None: it replays its own inside its call (ORT's), or has none.
    def capture_graph(self, prepared: Any) -> Callable[[], Any] | None: ...

    def refill(self, prepared: Any, batch: np.ndarray | tuple[np.ndarray, ...]) -> None: ...


@runtime_checkable
class HostRun(Protocol):
    """End to end as a user's loop runs it, where that is not prepare + infer + to_numpy (ORT's `session.run`)."""

    def run_host(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> list[np.ndarray]: ...


@runtime_checkable
class Spinning(Protocol):
    """Its idle threads may spin-wait (`TimingSettings.spinning`): bench waits for them to idle after each round."""

    def spins(self) -> bool: ...


@runtime_checkable
class Profiled(Protocol):
    """Opened with `TimingSettings.profile_prefix`, it profiles its calls; `end_profile` sums them per op."""

    def end_profile(self) -> KernelProfile: ...


@runtime_checkable
class HasLayerOutputs(Protocol):
    """Each top-level layer's output on the CPU: what the divergence finder compares."""

    @classmethod
    def layer_outputs(cls, source: Any, batch: np.ndarray) -> LayerOutputs: ...


@runtime_checkable
class IdentityModel(Protocol):
    """An Identity it can open (a module, or a file written into `folder`): what a call costs by itself."""

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Any | None: ...


@runtime_checkable
class ReferenceLoop(Protocol):
    """Timed by the plainest loop a user would write, outside poolkit; None: no plain loop means the same."""

    @classmethod
    def reference_loop(
        cls, source: Any, threads: int, batch: np.ndarray, warmup: int, iters: int
    ) -> Reference | None: ...


@runtime_checkable
class Preloads(Protocol):
    """Imports its engine now (a bench worker, before anything is timed: a load time is not an import)."""

    @classmethod
    def preload(cls) -> None: ...
