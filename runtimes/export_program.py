"""torch.export programs (`.pt2`): `torch.export.load`, then the program's `module()` called eagerly.

Loading a .pt2 deserialises a graph and its tensors; it runs no pickled code. Callers still open
only files whose sha256 matches a manifest entry poolkit wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from poolkit.runtimes.base import Reads, require_torch_cuda
from poolkit.runtimes.eager import TorchModuleRuntime


class ExportedProgramRuntime(TorchModuleRuntime):
    name = "export"
    reads: ClassVar[Reads] = "pt2"

    def __init__(self, path: Path, device: str, threads: int | None = None) -> None:
        import torch  # lazily: the registry is imported by `poolkit --help`

        if device == "cuda":
            require_torch_cuda()  # before torch.export.load, whose own error would be a traceback
        super().__init__(torch.export.load(str(path)).module(), device, threads)
        self.provider = f"torch.export-{device}"

    @classmethod
    def preload(cls) -> None:
        import torch.export  # noqa: F401

    @classmethod
    def reference_module(cls, source: Any) -> Any:
        """The plain loop a user writes: `torch.export.load(path).module()` called on the batch."""
        import torch

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
