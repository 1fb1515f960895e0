"""AOTInductor packages (`.aoti.pt2`): `torch._inductor.aoti_load_package`, then called like a module.

A package is compiled for one device: its metadata (`AOTI_DEVICE_KEY`) says which, and it is read
from the archive before loading, so a CPU package asked to run on CUDA (or the other way round) is
refused naming why, instead of failing inside the loader. Loading maps a shared library that
poolkit's own export compiled; callers open only files whose sha256 matches the manifest.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from poolkit.common.errors import DeviceError
from poolkit.runtimes.base import Reads, require_torch_cuda
from poolkit.runtimes.eager import TorchModuleRuntime


def package_device(path: Path) -> str:
    """The device an AOTInductor package was compiled for ("cpu", "cuda"), from its wrapper metadata."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith("_metadata.json") and "/aotinductor/" in name and ".kernel" not in name:
                key = json.loads(archive.read(name)).get("AOTI_DEVICE_KEY")
                if key:
                    return str(key).split(":")[0]
    raise ValueError(f"{path.name} is not an AOTInductor package (no AOTI_DEVICE_KEY in its metadata)")


class AotiRuntime(TorchModuleRuntime):
    """No Identity model (a compile per bench run costs seconds): its per-call overhead is torch.export's."""

    name = "aoti"
    reads: Reads = "aoti"

    def __init__(self, path: Path, device: str, threads: int | None = None) -> None:
        from torch._inductor import aoti_load_package  # lazily: `poolkit --help` imports the registry

        compiled_for = package_device(Path(path))
        if compiled_for != device:
            raise DeviceError(
                f"{Path(path).name} is an AOTInductor package compiled for {compiled_for}: it cannot run on "
                f"--device {device} (AOTInductor compiles for one device; export it again on {device})"
            )
        if device == "cuda":
            require_torch_cuda()
        super().__init__(aoti_load_package(str(path)), device, threads)
        self.provider = f"aoti-{device}"

    @classmethod
    def preload(cls) -> None:
        import torch._inductor  # noqa: F401

    @classmethod
    def reference_module(cls, source: Any) -> Any:
        """The plain loop a user writes: the `aoti_load_package(path)` callable on the batch."""
        from torch._inductor import aoti_load_package

        return aoti_load_package(str(source))
