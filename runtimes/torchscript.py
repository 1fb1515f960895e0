"""TorchScript artifacts: `torch.jit.load`, then frozen and optimised for inference.

A TorchScript file is code: loading one runs what it contains. Callers open only files whose
sha256 matches a manifest entry poolkit wrote (see SECURITY in the README).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.runtimes.base import LayerOutputs, Reads
from poolkit.runtimes.capabilities import HasLayerOutputs, IdentityModel
from poolkit.runtimes.eager import TorchModuleRuntime, module_layer_outputs

if TYPE_CHECKING:
    import numpy as np


def load_torchscript(path: Path, device: str = "cpu") -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.14 deprecates torch.jit; export already said so once
        return torch.jit.load(str(path), map_location=device).eval()


class TorchScriptRuntime(TorchModuleRuntime, HasLayerOutputs, IdentityModel):
    name = "torchscript"
    reads: Reads = "torchscript"

    def __init__(self, path: Path, device: str, threads: int | None = None) -> None:
        super().__init__(path, device, threads)
        self.provider = f"torchscript-frozen-{device}"
        self.mode["frozen"] = True

    @classmethod
    def load(cls, source: Any, device: str = "cpu") -> Any:
        """Loaded and frozen: freezing inlines the weights as constants, what a deployment runs and what we time."""
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.freeze(load_torchscript(source, device))

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
