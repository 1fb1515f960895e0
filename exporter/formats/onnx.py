"""ONNX through `torch.onnx.export` (dynamo by default, the legacy TorchScript one on request).

Every file is checked with `onnx.checker.check_model(full_check=True)` and carries in its metadata
what it was built from, so an artifact found on disk explains itself. `check_opset` is the one
opset range check (`poolkit export --opset` and `poolkit sweep --opsets`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from poolkit.common.capture import captured_output
from poolkit.common.errors import PoolkitError
from poolkit.common.files import write_atomic
from poolkit.exporter.external_data import external_hashes, external_problem
from poolkit.exporter.formats.base import ArtifactFormat, ArtifactWritten, ExportRequest, SweepPath, dynamic_axes

if TYPE_CHECKING:
    import torch
    from torch import nn

EXPORTERS = ("dynamo", "legacy")
MIN_OPSET = 7


def check_opset(opsets: int | tuple[int, ...], option: str = "--opset") -> None:
    """Refuse an opset the installed onnx cannot write: a typo is a usage error, not a column of failures."""
    import onnx  # lazily, like torch: `poolkit --help` imports the format registry

    newest = onnx.defs.onnx_opset_version()
    bad = [o for o in ((opsets,) if isinstance(opsets, int) else opsets) if not MIN_OPSET <= o <= newest]
    if bad:
        raise PoolkitError(f"{option} {bad[0]}: onnx {onnx.__version__} writes opsets {MIN_OPSET} to {newest}")


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
    dynamic_channels: bool = False,
) -> int:
    """Export, check and stamp one ONNX file; returns the opset it really has.

    Several inputs (a tuple `example`) are named input_0, input_1...; all share the batch axis.
    `dynamic_spatial` makes height and width (axes 2 and 3 of the first input) dynamic as well,
    channels kept: a pooling or activation model then takes any image size, as its torch module does.
    """
    import onnx  # lazily (as every torch/onnx import here): `poolkit --help` imports the registry
    import torch

    if exporter not in EXPORTERS:
        raise ValueError(f"unknown ONNX exporter '{exporter}' ({' or '.join(EXPORTERS)})")
    outputs = output_names(n_outputs)
    args = example if isinstance(example, tuple) else (example,)
    inputs = input_names(len(args))
    first_axes = dynamic_axes(dynamic_batch, dynamic_spatial, dynamic_channels)
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


def onnx_opset(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


_EXPORT_REPRO = {
    "dynamo": """try:
    torch.onnx.export(model, (torch.from_numpy(x[:2]),), str(here / "model.onnx"), dynamo=True, external_data=False,
                      dynamic_shapes=({{0: torch.export.Dim("batch")}},), input_names=["input"],
                      output_names={outputs}, opset_version={opset})
    onnx.checker.check_model(onnx.load(str(here / "model.onnx")), full_check=True)
except Exception as exc:
    sys.exit(f"REPRODUCED: export fails: {{type(exc).__name__}}: {{str(exc).strip().splitlines()[0][:300]}}")
""",
    "legacy": """try:
    torch.onnx.export(model, (torch.from_numpy(x[:2]),), str(here / "model.onnx"), dynamo=False,
                      dynamic_axes={{n: {{0: "batch"}} for n in ["input", *{outputs}]}}, input_names=["input"],
                      output_names={outputs}, opset_version={opset})
    onnx.checker.check_model(onnx.load(str(here / "model.onnx")), full_check=True)
except Exception as exc:
    sys.exit(f"REPRODUCED: export fails: {{type(exc).__name__}}: {{str(exc).strip().splitlines()[0][:300]}}")
""",
}

_RUN_REPRO = """options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
try:
    session = onnxruntime.InferenceSession(str(here / "model.onnx"), options, providers=["{provider}"])
    actual = session.run(None, {{session.get_inputs()[0].name: x}})
except Exception as exc:
    sys.exit(f"REPRODUCED: onnxruntime fails: {{str(exc).strip().splitlines()[0][:300]}}")
graph = onnx.load(str(here / "model.onnx")).graph
declared = [[d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in graph.output]
"""


class OnnxFormat(ArtifactFormat):
    name = "onnx"
    suffix = ".onnx"
    open_channels = True  # pools and activations: the tutorials' 1-channel tensors run through the file
    methods = EXPORTERS
    method_option = "exporter"
    uses_opset = True
    precisions = ("fp32", "fp16", "bf16", "int8")  # int8: ONNX Runtime's quantize_static (QDQ)
    onnx_graph = True
    sweep_paths: ClassVar[tuple[SweepPath, ...]] = tuple(SweepPath(f"onnx-{m}", m, m) for m in EXPORTERS)

    def check(self, opset: int | None) -> None:
        if opset is not None:
            check_opset(opset)

    def export(
        self, module: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path, request: ExportRequest
    ) -> ArtifactWritten:
        used = export_onnx(
            module,
            example,
            path,
            opset=request.opset,
            exporter=request.method,
            dynamic_batch=request.dynamic_batch,
            n_outputs=request.n_outputs,
            metadata=request.metadata,
            dynamic_spatial=request.dynamic_spatial,
            dynamic_channels=request.dynamic_channels,
        )
        return ArtifactWritten(opset=used)

    def external_hashes(self, path: Path) -> dict[str, str]:
        return external_hashes(path)

    def external_problem(self, path: Path, models_dir: Path, recorded: dict[str, str]) -> str | None:
        return external_problem(path, models_dir, recorded)

    def repro(self, method: str, *, provider: str, export_failed: bool, n_outputs: int, opset: int | None) -> str:
        export = _EXPORT_REPRO[method].format(outputs=output_names(n_outputs), opset=opset) if export_failed else ""
        return export + _RUN_REPRO.format(provider=provider)
