"""Eager PyTorch: the reference every artifact is compared with, run on a module in memory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from poolkit.runtimes.base import LayerOutputs, Reads, Runtime, require_torch_cuda

if TYPE_CHECKING:
    import numpy as np


class TorchModuleRuntime(Runtime):
    """Shared by every torch backend: a module called under inference_mode on one device.

    torch's intra-op thread count is process-wide: it is set on open and restored on close, so a
    runtime never changes what runs after it.
    """

    engine = "torch"

    def __init__(self, module: Any, device: str, threads: int | None = None) -> None:
        import torch

        if device == "cuda":
            require_torch_cuda()
            # Full fp32 on CUDA, as on the CPU: TF32 would change the numbers verify compares.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self._torch = torch
        self._saved_threads: int | None = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.device = device
        self.provider = f"torch-{device}"
        self.module = module.to(device) if hasattr(module, "to") else module

    @classmethod
    def cuda_problem(cls) -> str | None:
        from poolkit.common.errors import DeviceError

        try:
            require_torch_cuda()
        except DeviceError as exc:
            return str(exc).removeprefix("--device cuda: ")
        return None

    def prepare(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> Any:
        if isinstance(batch, tuple):
            return tuple(self._torch.from_numpy(b).to(self.device) for b in batch)
        return self._torch.from_numpy(batch).to(self.device)

    def infer(self, prepared: Any) -> Any:
        with self._torch.inference_mode():
            out = self.module(*prepared) if isinstance(prepared, tuple) else self.module(prepared)
        if self.device == "cuda":
            self._torch.cuda.synchronize()
        return out

    def to_numpy(self, outputs: Any) -> list[np.ndarray]:
        outs = outputs if isinstance(outputs, tuple | list) else (outputs,)
        return [o.detach().cpu().numpy() for o in outs]

    def close(self) -> None:
        self.module = None
        if self._saved_threads is not None:
            self._torch.set_num_threads(self._saved_threads)
            self._saved_threads = None


class EagerRuntime(TorchModuleRuntime):
    """The module itself, as PyTorch runs it."""

    name = "eager"
    reads: ClassVar[Reads] = "module"
    has_layer_outputs = True

    @classmethod
    def layer_outputs(cls, source: Any, batch: np.ndarray) -> LayerOutputs:
        """Only a chain of layers (an nn.Sequential, as every spec builds) can be run one layer at a
        time; a module with its own forward() (a user's model) may do anything between its layers."""
        import torch

        from poolkit.common.errors import PoolkitError

        if not isinstance(source, torch.nn.Sequential):
            raise PoolkitError(
                f"{type(source).__name__} has its own forward(): its layers are not a chain to run one by one"
            )
        return module_layer_outputs(source, batch)

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Any:
        import torch

        return torch.nn.Identity()


def module_layer_outputs(module: Any, batch: np.ndarray) -> LayerOutputs:
    """Each top-level layer's output (conv1, maxpool1, ...), run in order on the CPU."""
    import torch

    results = []
    x: Any = torch.from_numpy(batch)
    with torch.inference_mode():
        for name, layer in module.named_children():
            x = layer(x)
            outs = x if isinstance(x, tuple) else (x,)
            results.append((name, [o.detach().cpu().numpy() for o in outs]))
    return results
