"""torch.compile (inductor), optional: its first call compiles, which bench reports as the first run."""

from __future__ import annotations

from runtimes.base import Artifact
from runtimes.eager import TorchModuleRuntime, rebuild_eager


class CompiledRuntime(TorchModuleRuntime):
    name = "compile"

    def __init__(self, artifact: Artifact, device: str, threads: int | None = None) -> None:
        import torch

        super().__init__(rebuild_eager(artifact), device, threads)
        self.module = torch.compile(self.module, dynamic=False)
        self.provider = f"torch.compile-inductor-{device}"
