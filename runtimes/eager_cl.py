"""Eager PyTorch in channels_last: the module's weights and the batch in NHWC memory order.

A fair eager baseline for pooling and convolutions on the CPU: PyTorch's NHWC kernels run
max-pool 6-10x faster than the default NCHW layout (pytorch/pytorch#42719), so "ONNX Runtime is
5x faster at max-pool" is held against the best eager, not the default layout. Outputs come back
with the values of NCHW (only their strides differ), so verify and bench compare them as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.runtimes.base import Reads
from poolkit.runtimes.capabilities import IdentityModel
from poolkit.runtimes.eager import EagerRuntime, TorchModuleRuntime

if TYPE_CHECKING:
    import numpy as np


class ChannelsLastRuntime(TorchModuleRuntime, IdentityModel):
    """No layer outputs: layer by layer is the default layout's business (eager's)."""

    name = "eager-cl"
    reads: Reads = "module"

    def __init__(self, module: Any, device: str, threads: int | None = None) -> None:
        super().__init__(module, device, threads)
        if hasattr(self.module, "to"):
            self.module = self.module.to(memory_format=self._torch.channels_last)
        self.provider = f"torch-{device}-channels_last"
        self.mode["memory_format"] = "channels_last"

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Any:
        return EagerRuntime.identity_source(folder, sample_shape)

    def prepare(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> Any:
        prepared = super().prepare(batch)
        if isinstance(prepared, tuple):
            return tuple(self._nhwc(t) for t in prepared)
        return self._nhwc(prepared)

    def _nhwc(self, tensor: Any) -> Any:
        return tensor.contiguous(memory_format=self._torch.channels_last) if tensor.dim() == 4 else tensor
