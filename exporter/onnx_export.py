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
    dynamic_spatial: bool = False,
) -> int:
    """Export, check and stamp one ONNX file; returns the opset it really has.

    Several inputs (a tuple `example`) are named input_0, input_1...; all share the batch axis.
    `dynamic_spatial` makes height and width (axes 2 and 3 of the first input) dynamic as well,
    channels kept: a pooling or activation model then takes any image size, as its torch module does.
    """
    import onnx
    import torch

    if exporter not in EXPORTERS:
        raise ValueError(f"unknown ONNX exporter '{exporter}' ({' or '.join(EXPORTERS)})")
    outputs = output_names(n_outputs)
    args = example if isinstance(example, tuple) else (example,)
    inputs = input_names(len(args))
    first_axes = dynamic_axes(dynamic_batch, dynamic_spatial)
    axes_per_input = [first_axes] + [dynamic_axes(dynamic_batch, False) for _ in args[1:]]

    def write(tmp: Path) -> None:
        with captured_output():
            if exporter == "dynamo":
                # One Dim object per name, so every input shares the batch; min=1: an image may be as
                # small as the seeds' 2x2 example.
                names = {n for axes in axes_per_input for n in axes.values()}
                dims = {n: torch.export.Dim(n, min=1) if n != "batch" else torch.export.Dim(n) for n in names}
                dynamic = tuple({i: dims[n] for i, n in axes.items()} for axes in axes_per_input) if names else None
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
                # Output sizes follow from the input's (a pool shrinks them): only the batch is named there.
                out_axes = {0: "batch"} if dynamic_batch else {}
                named = dict(zip(inputs, axes_per_input, strict=True))
                axes = {**named, **{n: out_axes for n in outputs}} if first_axes else None
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


def dynamic_axes(batch: bool, spatial: bool) -> dict[int, str]:
    """Input axis -> name of the axes an artifact leaves open (NCHW: 0 batch, 2 height, 3 width)."""
    return {**({0: "batch"} if batch else {}), **({2: "height", 3: "width"} if spatial else {})}


def onnx_opset(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
