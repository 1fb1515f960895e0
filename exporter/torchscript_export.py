"""TorchScript export: `torch.jit.script` by default, `torch.jit.trace` on request."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from poolkit.common.capture import captured_output
from poolkit.common.files import write_bytes_atomic

if TYPE_CHECKING:
    import torch
    from torch import nn

METHODS = ("script", "trace")  # torch.jit.script, or torch.jit.trace on an example batch

JIT_DEPRECATION_NOTE = (
    "torch {version} marks torch.jit (TorchScript) as deprecated; the artifacts still save and load "
    "with torch.jit.load, and ONNX is the format to move to."
)


def export_torchscript(
    model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path, method: str = "script"
) -> list[str]:
    """Write the scripted or traced model to `path` and load it back once to prove it loads.

    Returns the warnings torch raised (its deprecation of torch.jit among them) so the caller can
    say it once instead of flooding the terminal. `example` (traced only) is a tuple for several inputs.
    """
    import torch

    with captured_output() as out:
        if method == "script":
            compiled = torch.jit.script(model)
        elif method == "trace":
            compiled = torch.jit.trace(model, example, check_trace=False)
        else:
            raise ValueError(f"unknown TorchScript method '{method}' (script or trace)")
        buffer = io.BytesIO()  # torch.jit.save into a file aborts the process on a full disk
        torch.jit.save(compiled, buffer)
        write_bytes_atomic(path, buffer.getvalue())
        torch.jit.load(str(path), map_location="cpu")
    return out.warnings
