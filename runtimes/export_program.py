"""torch.export programs (`.pt2`): `torch.export.load`, then the program's `module()` called eagerly.

Loading a .pt2 deserialises a graph and its tensors; it runs no pickled code. Callers still open
only files whose sha256 matches a manifest entry poolkit wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poolkit.runtimes.base import Reads
from poolkit.runtimes.capabilities import IdentityModel
from poolkit.runtimes.eager import TorchModuleRuntime


class ExportedProgramRuntime(TorchModuleRuntime, IdentityModel):
    name = "export"
    reads: Reads = "pt2"

    def __init__(self, path: Path, device: str, threads: int | None = None) -> None:
        super().__init__(path, device, threads)
        self.provider = f"torch.export-{device}"

    @classmethod
    def preload(cls) -> None:
        import torch.export  # noqa: F401

    @classmethod
    def load(cls, source: Any, device: str = "cpu") -> Any:
        """`torch.export.load(path).module()`: what a user's plain loop calls too."""
        import torch  # lazily: the registry is imported by `poolkit --help`

        return torch.export.load(str(source)).module()

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Any:
        import torch
        from torch.export import Dim

        path = Path(folder) / "identity.pt2"
        example = torch.zeros((2, *sample_shape))
        program = torch.export.export(torch.nn.Identity(), (example,), dynamic_shapes=({0: Dim("batch")},))
        torch.export.save(program, str(path))
        return path
