"""torch.compile (inductor), optional: its first call compiles, which bench reports as the first run."""

from __future__ import annotations

from typing import Any

from poolkit.runtimes.base import Reads
from poolkit.runtimes.eager import TorchModuleRuntime


class CompiledRuntime(TorchModuleRuntime):
    name = "compile"
    reads: Reads = "module"

    def __init__(self, module: Any, device: str, threads: int | None = None) -> None:
        import torch

        super().__init__(module, device, threads)
        self.module = torch.compile(self.module, dynamic=False)
        self.provider = f"torch.compile-inductor-{device}"
        self.mode["compiler"] = "inductor, dynamic=False"

    @classmethod
    def reference_module(cls, source: Any) -> Any | None:
        return None  # its first call compiles: a plain loop would time something else
