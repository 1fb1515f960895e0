"""AOTInductor: the torch.export program compiled ahead of time into a package (`.aoti.pt2`).

`torch._inductor.aoti_compile_and_package` compiles for the device of the module and example
(the CPU here: poolkit exports on the CPU); the package says which in its metadata
(`AOTI_DEVICE_KEY`), and `--runtime aoti` refuses a CPU package on CUDA and the other way round.
The compile (g++, seconds) is the export's cost, recorded apart as `compile_seconds`; it is not
part of a runtime's cold start. Loading runs only what `aoti_load_package` runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from poolkit.common.capture import captured_output
from poolkit.common.files import write_atomic
from poolkit.exporter.formats.base import ArtifactFormat, ArtifactWritten, ExportRequest, SweepPath
from poolkit.exporter.formats.pt2 import REPRO_TEMPLATE, export_program

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.export import ExportedProgram


def compile_package(program: ExportedProgram, path: Path) -> None:
    """aoti_compile_and_package into `path` (its own name must end in .pt2: compiled beside, then moved)."""
    from torch._inductor import aoti_compile_and_package  # lazily: `poolkit --help` imports the registry

    with tempfile.TemporaryDirectory(prefix=".aoti-", dir=path.parent) as tmp:
        target = Path(tmp) / "model.pt2"
        with captured_output():
            aoti_compile_and_package(program, package_path=str(target))
        os.replace(target, path)


class AotiFormat(ArtifactFormat):
    name = "aoti"
    suffix = ".aoti.pt2"
    methods = ("aoti",)
    open_channels = True
    # Not in `--format all`: one compile costs seconds per model (measured, see the README), which the
    # demo's budget cannot pay for the whole zoo; name it with --format aoti.
    in_all = False
    sweep_paths: ClassVar[tuple[SweepPath, ...]] = (SweepPath("pt2-aoti", "aoti", "pt2-aoti"),)
    sweep_default = False
    sweep_dynamic_shapes = True  # which pool/conv configurations torch.export takes at any size
    sweep_runtime = "aoti"

    def export(
        self, module: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path, request: ExportRequest
    ) -> ArtifactWritten:
        program, dims = export_program(module, example, request)
        start = time.perf_counter()
        write_atomic(path, lambda tmp: compile_package(program, tmp))
        return ArtifactWritten(dims=dims, compile_seconds=round(time.perf_counter() - start, 3))

    def repro(self, method: str, *, provider: str, export_failed: bool, n_outputs: int, opset: int | None) -> str:
        load = (
            "lambda p: torch._inductor.aoti_load_package(torch._inductor.aoti_compile_and_package("
            "torch.export.load(p), package_path=p.replace('.pt2', '.aoti.pt2')))"
        )
        return "import torch._inductor\n" + REPRO_TEMPLATE.format(load=load)
