"""ONNX export through `torch.onnx.export` (dynamo by default, the legacy TorchScript one on request).

Every file is checked with `onnx.checker.check_model(full_check=True)` and carries in its metadata
what it was built from, so an artifact found on disk explains itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from poolkit.common.capture import captured_output
from poolkit.common.files import write_atomic

if TYPE_CHECKING:
    import torch
    from torch import nn

EXPORTERS = ("dynamo", "legacy")


def output_names(n_outputs: int) -> list[str]:
    return ["output"] if n_outputs == 1 else [f"output_{i}" for i in range(n_outputs)]


def input_names(n_inputs: int) -> list[str]:
    return ["input"] if n_inputs == 1 else [f"input_{i}" for i in range(n_inputs)]


def export_onnx(
    model: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    path: Path,
    *,
    opset: int | None,
    exporter: str,
    dynamic_batch: bool,
    n_outputs: int,
    metadata: dict[str, str],
) -> int:
    """Export, check and stamp one ONNX file; returns the opset it really has.

    Several inputs (a tuple `example`) are named input_0, input_1...; all share the batch axis.
    """
    import onnx
    import torch

    if exporter not in EXPORTERS:
        raise ValueError(f"unknown ONNX exporter '{exporter}' ({' or '.join(EXPORTERS)})")
    outputs = output_names(n_outputs)
    args = example if isinstance(example, tuple) else (example,)
    inputs = input_names(len(args))

    def write(tmp: Path) -> None:
        with captured_output():
            if exporter == "dynamo":
                batch = torch.export.Dim("batch")
                dynamic = tuple({0: batch} for _ in args) if dynamic_batch else None
                torch.onnx.export(
                    model,
                    args,
                    str(tmp),
                    dynamo=True,
                    external_data=False,
                    dynamic_shapes=dynamic,
                    input_names=inputs,
                    output_names=outputs,
                    opset_version=opset,
                )
            else:
                axes = {name: {0: "batch"} for name in [*inputs, *outputs]} if dynamic_batch else None
                torch.onnx.export(
                    model,
                    args,
                    str(tmp),
                    dynamo=False,
                    dynamic_axes=axes,
                    input_names=inputs,
                    output_names=outputs,
                    opset_version=opset,
                )
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto, full_check=True)
        opset_used = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        for key, value in {**metadata, "poolkit.opset": str(opset_used)}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))

    write_atomic(path, write)
    return onnx_opset(path)


def onnx_opset(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
