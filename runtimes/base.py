"""The one interface every backend implements.

A runtime has a short life: open it on a source (a file it reads, or a torch module) and a device,
`prepare` a batch (put it where the runtime reads it: device memory for CUDA), `infer` (returns
when the work is really done, outputs left where the runtime put them), `to_numpy`. It is a
context manager: `with open_runtime("onnxruntime", path, "cpu") as rt:` frees it and restores any
process-wide setting (torch's thread count) on exit.

Each backend is one short file whose class declares, as class attributes, what the rest of
poolkit needs to know about it: its name, the artifact format it reads, the devices it runs on,
whether it can show per-layer outputs, and how to build its per-call overhead (Identity) model.
`registry.py` maps names to classes. Verify and bench only see this interface: they never import
torch.onnx or onnxruntime themselves, and a runtime never sees a manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from poolkit.common.errors import DeviceError, PoolkitError
from poolkit.common.outputs import check_outputs

if TYPE_CHECKING:
    from types import TracebackType

    import numpy as np

DEVICES = ("cpu", "cuda")
Reads = Literal["module", "torchscript", "onnx", "pt2", "aoti"]  # "module", or a format name (exporter/formats)
LayerOutputs = list[tuple[str, list["np.ndarray"]]]


@dataclass(frozen=True)
class TimingSettings:
    """How bench opens a runtime to time it. Each backend honours what applies to it and refuses what
    it cannot (`check_timing`): an option silently ignored would label a figure wrongly."""

    spinning: bool = False  # runtimes with `has_spinning`: idle intra-op threads spin-wait
    cuda_graphs: bool = False  # CUDA rows: replay a captured graph
    profile_prefix: str | None = None  # runtimes with `has_profiler`: write a profile trace there
    preallocate_outputs: bool = True  # outputs allocated once by `prepare`, then bound by value


class DeviceEvents(Protocol):
    """What device timing needs: an event recorded on the runtime's stream, and ms between two of them."""

    def record(self) -> Any: ...

    def elapsed_ms(self, start: Any, end: Any) -> float: ...


class TorchCudaEvents:
    """CUDA events on one stream (torch's current stream, or a stream made for a runtime that takes one).

    `cuda` is `torch.cuda` (a fake in the tests), so the device-timing logic runs without a GPU.
    """

    def __init__(self, stream: Any = None, cuda: Any = None) -> None:
        if cuda is None:
            import torch  # lazily: only CUDA rows get here

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


class Runtime:
    """Base of every backend. Subclasses set the class attributes and implement the four calls."""

    name: ClassVar[str]
    reads: ClassVar[Reads]  # "module": an nn.Module in memory; otherwise the artifact format of the file
    devices: ClassVar[tuple[str, ...]] = DEVICES
    engine: ClassVar[Literal["torch", "onnxruntime", "openvino"]]  # whose CUDA support decides whether cuda works
    has_layer_outputs: ClassVar[bool] = False
    has_spinning: ClassVar[bool] = False  # bench records (and sets) its threads' spin-wait
    has_profiler: ClassVar[bool] = False  # bench can ask it which op dominates (`end_profile`)

    device: str
    provider: str  # what really ran it, e.g. CPUExecutionProvider, torch-cuda
    # The arithmetic it really computed in (OpenVINO may pick bf16 on its own): verify judges a
    # reduced-precision row against that precision's rounding, never as fp32.
    precision: str = "fp32"
    threads: int | None

    def prepare(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> Any:
        """Put the batch where the runtime reads it; a tuple feeds a model with several inputs, in order."""
        raise NotImplementedError

    def infer(self, prepared: Any) -> Any:
        raise NotImplementedError

    def to_numpy(self, outputs: Any) -> list[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the session or module and restore process-wide settings; safe to call twice."""

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @classmethod
    def cuda_problem(cls) -> str | None:
        """Why this runtime cannot run on CUDA here (None when it can): asked before any CUDA row."""
        raise NotImplementedError

    @classmethod
    def layer_outputs(cls, source: Any, batch: np.ndarray) -> LayerOutputs:
        """Each top-level layer's output on the CPU: what the divergence finder compares."""
        raise PoolkitError(f"runtime '{cls.name}' cannot report layer outputs")

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Any | None:
        """An Identity model this runtime can open (a module or a file written into `folder`).

        Timing it measures what a call costs when the model does nothing; None where that has no
        meaning (torch.compile, TensorRT).
        """
        return None

    # -- what bench asks of a runtime: the defaults suit a CPU runtime without any of these settings --
    @classmethod
    def preload(cls) -> None:
        """Import the engine now (a bench worker, before anything is timed: a load time is not an import)."""

    @classmethod
    def check_timing(cls, device: str, settings: TimingSettings) -> None:
        """Refuse a timing setting this runtime cannot honour on `device`, before anything is opened."""
        if settings.cuda_graphs and device != "cuda":
            raise PoolkitError("--cuda-graphs applies to CUDA rows only")
        if settings.profile_prefix and not cls.has_profiler:
            raise PoolkitError(f"runtime '{cls.name}' has no profiler")

    @classmethod
    def open_timed(cls, source: Any, device: str, threads: int | None, settings: TimingSettings) -> Runtime:
        """Open the runtime as bench times it (spinning, profiling, CUDA graphs, outputs bound once)."""
        cls.check_timing(device, settings)
        return cls(source, device, threads)  # type: ignore[call-arg]

    def timed_call(self, prepared: Any) -> Callable[[], Any]:
        """The call bench times, returning the outputs. On a device, the launch without its wait, so
        that device events can bracket it (`device_events`); on the CPU, `infer`."""
        return lambda: self.infer(prepared)

    def device_events(self) -> DeviceEvents | None:
        """Events on the stream the runtime launches on (CUDA rows); None where there is no device clock."""
        return None

    @property
    def fixed_memory(self) -> bool:
        """Whether every call reads one prepared memory (a captured CUDA graph): new data goes in by `refill`."""
        return False

    def capture_graph(self, prepared: Any) -> Callable[[], Any] | None:
        """With `cuda_graphs`: the replay of a graph captured on `prepared`, returning the outputs.
        None: the runtime replays its own graph inside `timed_call` (or has none)."""
        return None

    def refill(self, prepared: Any, batch: np.ndarray | tuple[np.ndarray, ...]) -> None:
        """Write `batch` into the memory `prepared` already holds (what a captured graph reads)."""
        raise PoolkitError(f"runtime '{self.name}' cannot refill a prepared batch in place")

    def run_host(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> list[np.ndarray]:
        """End to end as a user's loop runs it: host arrays in, host arrays out, nothing prepared before."""
        return run_batch(self, batch)

    def end_profile(self) -> dict[str, float]:
        """Runtimes with `has_profiler`, opened with `profile_prefix`: kernel microseconds per op type."""
        raise PoolkitError(f"runtime '{self.name}' has no profiler")

    @classmethod
    def reference_loop(cls, source: Any, threads: int, batch: np.ndarray, warmup: int, iters: int) -> Reference | None:
        """This runtime timed with the plainest loop a user would write, outside poolkit's machinery
        (run in a process of its own by the self-check). None: no such loop is known."""
        return None


# Unit roundoff of each precision a runtime may really compute in (2**-(significand bits)).
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "fp16": 2.0**-11, "bf16": 2.0**-8}
ROUNDING_UNITS = 4  # a reduced-precision row may differ from fp32 eager by this many of its own rounding units


def precision_tolerance(precision: str, atol: float, rtol: float) -> tuple[float, float]:
    """(atol, rtol) for a row computed in `precision`: fp32 keeps the asked tolerance; bf16 and fp16 are
    judged against their own rounding (4 units: 1.6e-2 for bf16, 2.0e-3 for fp16), never as fp32."""
    floor = ROUNDING_UNITS * UNIT_ROUNDOFF.get(precision, UNIT_ROUNDOFF["bf16"])
    if precision == "fp32":
        return atol, rtol
    return max(atol, floor), max(rtol, floor)


def run_batch(runtime: Runtime, batch: np.ndarray | tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """The end-to-end path: host batch in (a tuple of arrays for several inputs), host arrays out;
    an output that is not a numeric array (a string, a sequence, a dict) is an `UnusableOutput`."""
    return check_outputs(runtime.to_numpy(runtime.infer(runtime.prepare(batch))))


def require_torch_cuda() -> None:
    """No silent fallback: CUDA asked for and torch cannot see a GPU is an error, exit 2."""
    import torch  # lazily: importing the runtimes (the CLI's option parsing) must not load torch

    if not torch.cuda.is_available():
        built = torch.version.cuda
        why = (
            f"torch {torch.__version__} is built for CUDA {built} but sees no GPU (torch.cuda.is_available() is False)"
            if built
            else f"torch {torch.__version__} is a CPU-only build"
        )
        raise DeviceError(f"--device cuda: {why}")
