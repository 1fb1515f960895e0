"""TorchScript artifacts: `torch.jit.load`, then frozen and optimised for inference.

A TorchScript file is code: loading one runs what it contains. Callers open only files whose
sha256 matches a manifest entry poolkit wrote (see SECURITY in the README).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from poolkit.runtimes.base import LayerOutputs, Reads, require_torch_cuda
from poolkit.runtimes.eager import TorchModuleRuntime, module_layer_outputs

if TYPE_CHECKING:
    import numpy as np


def load_torchscript(path: Path, device: str = "cpu") -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.14 deprecates torch.jit; export already said so once
        return torch.jit.load(str(path), map_location=device).eval()


class TorchScriptRuntime(TorchModuleRuntime):
    name = "torchscript"
    reads: ClassVar[Reads] = "torchscript"
    has_layer_outputs = True

    def __init__(self, path: Path, device: str, threads: int | None = None) -> None:
        import torch

        if device == "cuda":
            require_torch_cuda()  # before torch.jit.load, whose own error would be a traceback
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # freeze inlines weights as constants: what a deployment runs, and what we should time.
            module = torch.jit.freeze(load_torchscript(path, device))
        super().__init__(module, device, threads)
        self.provider = f"torchscript-frozen-{device}"

    @classmethod
    def reference_module(cls, source: Any) -> Any:
        """The artifact loaded and frozen, as `__init__` runs it."""
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.freeze(load_torchscript(source))

    @classmethod
    def layer_outputs(cls, source: Any, batch: np.ndarray) -> LayerOutputs:
        """Layer by layer through the artifact's own submodules (unfrozen, so they still exist)."""
        return module_layer_outputs(load_torchscript(source), batch)

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Path:
        import torch

        path = Path(folder) / "identity.torchscript.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation, said once by export
            torch.jit.save(torch.jit.script(torch.nn.Identity()), str(path))
        return path
