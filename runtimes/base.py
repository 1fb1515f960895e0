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

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from types import TracebackType

    import numpy as np

DEVICES = ("cpu", "cuda")
Reads = Literal["module", "torchscript", "onnx", "pt2", "aoti"]  # "module", or a format name (exporter/formats)
LayerOutputs = list[tuple[str, list["np.ndarray"]]]


class Runtime:
    """Base of every backend. Subclasses set the class attributes and implement the four calls."""

    name: ClassVar[str]
    reads: ClassVar[Reads]  # "module": an nn.Module in memory; otherwise the artifact format of the file
    devices: ClassVar[tuple[str, ...]] = DEVICES
    engine: ClassVar[Literal["torch", "onnxruntime", "openvino"]]  # whose CUDA support decides whether cuda works
    has_layer_outputs: ClassVar[bool] = False

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
        from poolkit.common.errors import PoolkitError

        raise PoolkitError(f"runtime '{cls.name}' cannot report layer outputs")

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Any | None:
        """An Identity model this runtime can open (a module or a file written into `folder`).

        Timing it measures what a call costs when the model does nothing; None where that has no
        meaning (torch.compile, TensorRT).
        """
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
    """The end-to-end path: host batch in (a tuple of arrays for several inputs), host arrays out."""
    return runtime.to_numpy(runtime.infer(runtime.prepare(batch)))


def require_torch_cuda() -> None:
    """No silent fallback: CUDA asked for and torch cannot see a GPU is an error, exit 2."""
    import torch

    from poolkit.common.errors import DeviceError

    if not torch.cuda.is_available():
        built = torch.version.cuda
        why = (
            f"torch {torch.__version__} is built for CUDA {built} but sees no GPU (torch.cuda.is_available() is False)"
            if built
            else f"torch {torch.__version__} is a CPU-only build"
        )
        raise DeviceError(f"--device cuda: {why}")
