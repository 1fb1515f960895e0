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
Reads = Literal["module", "torchscript", "onnx"]
LayerOutputs = list[tuple[str, list["np.ndarray"]]]


class Runtime:
    """Base of every backend. Subclasses set the class attributes and implement the four calls."""

    name: ClassVar[str]
    reads: ClassVar[Reads]  # "module": an nn.Module in memory; otherwise the artifact format of the file
    devices: ClassVar[tuple[str, ...]] = DEVICES
    engine: ClassVar[Literal["torch", "onnxruntime"]]  # whose CUDA support decides whether cuda works
    has_layer_outputs: ClassVar[bool] = False

    device: str
    provider: str  # what really ran it, e.g. CPUExecutionProvider, torch-cuda
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
