"""The one interface every backend implements, and the registry that opens them.

A runtime has a short life: open it for an artifact and a device, `prepare` a batch (put it
where the runtime reads it: device memory for CUDA), `infer` (returns when the work is really
done, outputs left where the runtime put them), `to_numpy`. Verify and bench only see this
protocol: they never import torch.onnx or onnxruntime themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from poolkit.errors import DeviceError, PoolkitError

if TYPE_CHECKING:
    import numpy as np

    from exporter.manifest import ExportRecord

DEVICES = ("cpu", "cuda")


@runtime_checkable
class Runtime(Protocol):
    name: str  # eager | torchscript | onnxruntime | tensorrt | compile
    device: str  # cpu | cuda
    provider: str  # what really ran it, e.g. CPUExecutionProvider, torch-cuda
    threads: int | None

    def prepare(self, batch: np.ndarray) -> Any: ...

    def infer(self, prepared: Any) -> Any: ...

    def to_numpy(self, outputs: Any) -> list[np.ndarray]: ...

    def close(self) -> None: ...


def run_batch(runtime: Runtime, batch: np.ndarray) -> list[np.ndarray]:
    """The end-to-end path: host batch in, host arrays out (copies included)."""
    return runtime.to_numpy(runtime.infer(runtime.prepare(batch)))


@dataclass(frozen=True)
class Artifact:
    """Where a runtime finds what it runs: the manifest record and the folder it lives in."""

    record: ExportRecord
    models_dir: Path

    @property
    def path(self) -> Path:
        return self.models_dir / (self.record.path or "")

    @property
    def weights_path(self) -> Path:
        return self.models_dir / (self.record.weights or "")


# Which artifact format each runtime reads; eager rebuilds from spec + weights of any record.
RUNTIME_FORMATS: dict[str, str | None] = {
    "eager": None,
    "torchscript": "torchscript",
    "onnxruntime": "onnx",
    "tensorrt": "onnx",
    "compile": None,
}
DEFAULT_RUNTIMES = ("eager", "torchscript", "onnxruntime")


def check_runtime_names(names: tuple[str, ...] | list[str]) -> None:
    for name in names:
        if name not in RUNTIME_FORMATS:
            raise PoolkitError(f"unknown runtime '{name}' (known: {', '.join(RUNTIME_FORMATS)})")


def _opener(name: str) -> Callable[..., Runtime]:
    if name == "eager":
        from runtimes.eager import EagerRuntime

        return EagerRuntime
    if name == "compile":
        from runtimes.compiled import CompiledRuntime

        return CompiledRuntime
    if name == "torchscript":
        from runtimes.torchscript import TorchScriptRuntime

        return TorchScriptRuntime
    if name in ("onnxruntime", "tensorrt"):
        from runtimes.onnxruntime import OnnxRuntime

        return lambda artifact, device, threads=None: OnnxRuntime(
            artifact, device, threads, tensorrt=name == "tensorrt"
        )
    check_runtime_names([name])
    raise AssertionError(name)


def open_runtime(name: str, artifact: Artifact, device: str, threads: int | None = None) -> Runtime:
    """Open `name` on `device`; raises DeviceError when that device cannot really run it."""
    if device not in DEVICES:
        raise PoolkitError(f"unknown device '{device}' (cpu or cuda)")
    return _opener(name)(artifact, device, threads)


def require_torch_cuda() -> None:
    """No silent fallback: CUDA asked for and torch cannot see a GPU is an error, exit 2."""
    import torch

    if not torch.cuda.is_available():
        built = torch.version.cuda
        why = (
            f"torch {torch.__version__} is built for CUDA {built} but sees no GPU (torch.cuda.is_available() is False)"
            if built
            else f"torch {torch.__version__} is a CPU-only build"
        )
        raise DeviceError(f"--device cuda: {why}")


def set_torch_threads(threads: int | None) -> int:
    """Set (when given) and return torch's intra-op thread count, so every row records it."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def layer_outputs(name: str, artifact: Artifact, batch: np.ndarray) -> list[tuple[str, list[np.ndarray]]]:
    """Each top-level layer's output as `name` computes it (CPU): what the divergence finder compares."""
    if name == "eager":
        from runtimes.eager import eager_layer_outputs

        return eager_layer_outputs(artifact, batch)
    if name == "torchscript":
        from runtimes.torchscript import torchscript_layer_outputs

        return torchscript_layer_outputs(artifact, batch)
    if name in ("onnxruntime", "tensorrt"):
        from runtimes.onnxruntime import onnx_layer_outputs

        return onnx_layer_outputs(artifact, batch)
    raise PoolkitError(f"runtime '{name}' cannot report layer outputs")


def cuda_problem(runtimes: list[str] | tuple[str, ...]) -> str | None:
    """Why CUDA rows cannot run for these runtimes, or None: torch's CUDA and/or ORT's CUDA provider."""
    problems = []
    if any(r in ("eager", "torchscript", "compile") for r in runtimes):
        try:
            require_torch_cuda()
        except DeviceError as exc:
            problems.append(str(exc).removeprefix("--device cuda: "))
    if any(r in ("onnxruntime", "tensorrt") for r in runtimes):
        from runtimes.onnxruntime import cuda_provider_problem

        problem = cuda_provider_problem()
        if problem:
            problems.append(problem)
    return "; ".join(problems) or None


def require_cuda(runtimes: list[str] | tuple[str, ...], asked_by: str = "--device cuda") -> None:
    """No silent fallback: CUDA asked for where it cannot run is a DeviceError (exit 2) naming the missing piece."""
    problem = cuda_problem(runtimes)
    if problem:
        raise DeviceError(f"{asked_by}: {problem}")


def open_identity(
    name: str, device: str, sample_shape: tuple[int, ...], folder: Path, threads: int | None
) -> Runtime | None:
    """The same runtime around an Identity model: what a call costs when the model does nothing.

    None for runtimes where that has no meaning here (torch.compile, TensorRT).
    """
    from exporter.manifest import ExportRecord

    if name == "eager":
        import torch

        from runtimes.eager import TorchModuleRuntime

        runtime = TorchModuleRuntime(torch.nn.Identity(), device, threads)
        runtime.name = "eager"
        return runtime
    if name == "torchscript":
        import warnings

        import torch

        path = Path(folder) / "identity.torchscript.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation, said once by export
            torch.jit.save(torch.jit.script(torch.nn.Identity()), str(path))
        fmt = "torchscript"
    elif name == "onnxruntime":
        from runtimes.onnxruntime import write_identity_model

        path = write_identity_model(Path(folder) / "identity.onnx", sample_shape)
        fmt = "onnx"
    else:
        return None
    record = ExportRecord("identity", "identity", fmt, "identity", "ok", ["batch", *sample_shape], path=path.name)
    return open_runtime(name, Artifact(record, Path(folder)), device, threads)
