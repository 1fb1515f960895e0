"""The core every backend implements: the `Runtime` protocol.

A runtime has a short life: open it on a source (a file it reads, or a torch module) and a device
(`Runtime(source, device, threads)`, the declared constructor), `prepare` a batch (put it where the
runtime reads it: device memory for CUDA), `infer` (returns when the work is really done, outputs
left where the runtime put them), `to_numpy`, `close`. It says what really ran it (`provider`,
`precision`, `threads`, and `mode`: the settings of its own that change a figure, read back from the
engine). It is a context manager: `with open_runtime("onnxruntime", path, "cpu") as rt:` frees it and
restores any process-wide setting (torch's thread count) on exit.

Each backend is one short file whose class declares, as class attributes, what the rest of poolkit
needs to know about it: its name, the artifact format it reads, the devices it runs on, the engine
whose CUDA support decides. What only one caller needs (bench's timing hooks, verify's layer outputs)
is an optional capability, a protocol of its own in `capabilities.py` that the class declares by
subclassing it. `registry.py` maps names to classes. A runtime never sees a manifest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, runtime_checkable

from poolkit.common.errors import DeviceError
from poolkit.common.outputs import check_outputs

if TYPE_CHECKING:
    from types import TracebackType

    import numpy as np

DEVICES = ("cpu", "cuda")
Reads = Literal["module", "torchscript", "onnx", "pt2", "aoti"]  # "module", or a format name (exporter/formats)
Engine = Literal["torch", "onnxruntime", "openvino"]
LayerOutputs = list[tuple[str, list["np.ndarray"]]]


@runtime_checkable
class Runtime(Protocol):
    """What every caller may use of every backend. Backends subclass it and set the class attributes."""

    name: str  # what --runtime calls it
    reads: Reads  # "module": an nn.Module in memory; otherwise the artifact format of the file
    devices: tuple[str, ...] = DEVICES
    engine: Engine  # whose CUDA support decides whether cuda works

    device: str
    provider: str  # what really ran it, e.g. CPUExecutionProvider, torch-cuda
    # The arithmetic it really computed in (OpenVINO may pick bf16 on its own): verify judges a
    # reduced-precision row against that precision's rounding, never as fp32.
    precision: str = "fp32"
    threads: int | None
    mode: dict[str, Any]  # its own settings that change a figure (ORT spinning, OpenVINO's hint), read back

    def __init__(self, source: Any, device: str, threads: int | None = None) -> None:
        """Open `source` (a `Path` to the format it reads, or a module) on `device` with `threads` intra-op threads."""

    def prepare(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> Any:
        """Put the batch where the runtime reads it; a tuple feeds a model with several inputs, in order."""

    def infer(self, prepared: Any) -> Any:
        """Run on a prepared batch; returns when the work is done, the outputs where the runtime put them."""

    def to_numpy(self, outputs: Any) -> list[np.ndarray]:
        """The outputs of `infer` as host arrays."""

    def close(self) -> None:
        """Free the session or module and restore process-wide settings; safe to call twice."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @classmethod
    def cuda_problem(cls) -> str | None:
        """Why this runtime cannot run on CUDA here (None when it can): asked before any CUDA row."""


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
