"""TorchScript: `torch.jit.script` by default, `torch.jit.trace` on request (`--method`).

torch 2.14 deprecates torch.jit; the files still save and load, and `--format pt2` is where to go.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from poolkit.common.capture import captured_output
from poolkit.common.files import write_bytes_atomic
from poolkit.exporter.formats.base import ArtifactFormat, ArtifactWritten, ExportRequest, SweepPath

if TYPE_CHECKING:
    import torch
    from torch import nn

METHODS = ("script", "trace")  # torch.jit.script, or torch.jit.trace on an example batch

JIT_DEPRECATION_NOTE = (
    "torch {version} marks torch.jit (TorchScript) as deprecated; the artifacts still save and load "
    "with torch.jit.load. Move to torch.export: 'poolkit export --format pt2' (an ExportedProgram, "
    "read by --runtime export), or '--format aoti' to compile it ahead of time."
)

_REPRO = """example = torch.from_numpy(x[:2])
compiled = torch.jit.script(model) if "{how}" == "script" else torch.jit.trace(model, example, check_trace=False)
try:
    out = torch.jit.freeze(compiled.eval())(torch.from_numpy(x))
except Exception as exc:
    sys.exit(f"REPRODUCED: TorchScript fails: {{str(exc).strip().splitlines()[0][:300]}}")
actual = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
declared = [[] for _ in actual]
"""


def export_torchscript(
    model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path, method: str = "script"
) -> list[str]:
    """Write the scripted or traced model to `path` and load it back once to prove it loads.

    Returns the warnings torch raised (its deprecation of torch.jit among them) so the caller can
    say it once instead of flooding the terminal. `example` (traced only) is a tuple for several inputs.
    """
    import torch  # lazily: `poolkit --help` imports the format registry, and must stay instant

    with captured_output() as out:
        if method == "script":
            compiled = torch.jit.script(model)
        elif method == "trace":
            compiled = torch.jit.trace(model, example, check_trace=False)
        else:
            raise ValueError(f"unknown TorchScript method '{method}' (script or trace)")
        buffer = io.BytesIO()  # torch.jit.save into a file aborts the whole process on a full disk
        torch.jit.save(compiled, buffer)
        write_bytes_atomic(path, buffer.getvalue())
        torch.jit.load(str(path), map_location="cpu")
    return out.warnings


class TorchScriptFormat(ArtifactFormat):
    name = "torchscript"
    suffix = ".torchscript.pt"
    methods = METHODS
    method_option = "method"
    any_batch = True  # a scripted module runs its own code: it takes any batch
    sweep_paths: ClassVar[tuple[SweepPath, ...]] = tuple(SweepPath(f"torchscript-{m}", m, f"ts-{m}") for m in METHODS)
    sweep_runtime = "torchscript"

    def export(
        self, module: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path, request: ExportRequest
    ) -> ArtifactWritten:
        return ArtifactWritten(warnings=export_torchscript(module, example, path, request.method))

    def failure_hint(self, method: str, user_model: bool) -> str:
        return (
            " (torch.jit.script cannot compile this code: try --method trace)"
            if method == "script" and user_model
            else ""
        )

    def repro(self, method: str, *, provider: str, export_failed: bool, n_outputs: int, opset: int | None) -> str:
        return _REPRO.format(how=method)
