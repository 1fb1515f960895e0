"""Export zoo models or specs to TorchScript and/or ONNX, one record per artifact.

Specs are parsed and built before anything is written, so a bad `--model` fails fast (exit 2).
An artifact that fails to export becomes a failed record with the exporter's reason; the others
still export, and the manifest keeps whatever was there for other models.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from poolkit.exporter.build import DEFAULT_SEED, build_model, output_shapes
from poolkit.exporter.manifest import ExportRecord, update_manifest
from poolkit.exporter.onnx_export import dynamic_axes, export_onnx
from poolkit.exporter.spec import ModelSpec, default_input_shape
from poolkit.exporter.torchscript_export import export_torchscript
from poolkit.exporter.zoo import ModelRef

from poolkit.common.errors import SpecError, one_line
from poolkit.common.files import sha256_file, write_atomic

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMATS = ("torchscript", "onnx")


@dataclass
class ExportOptions:
    formats: tuple[str, ...] = FORMATS
    opset: int | None = None  # None: the exporter's default, recorded as it really is
    exporter: str = "dynamo"
    method: str = "script"
    dynamic_batch: bool = True
    # Height and width open in the artifact: None = wherever the model's layers take any size.
    dynamic_shape: bool | None = None
    static_batch_size: int = 64  # the batch a static-batch artifact is fixed to (CIFAR10 batches of 64)
    input_shape: tuple[int, ...] | None = None  # per sample; None: inferred from the spec
    seed: int = DEFAULT_SEED


@dataclass
class ExportRun:
    records: list[ExportRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[ExportRecord]:
        return [r for r in self.records if not r.ok]

    @property
    def jit_deprecated(self) -> bool:
        """torch said torch.jit is deprecated: the CLI says so once, not once per model."""
        return any("torch.jit" in w and "deprecated" in w for w in self.warnings)


@dataclass
class BuiltModel:
    ref: ModelRef
    module: nn.Module
    input_shape: tuple[int, ...]
    n_outputs: int
    dynamic_spatial: bool = False


def shape_agnostic(spec: ModelSpec, input_shape: tuple[int, ...]) -> bool:
    """Whether every layer takes any image size: 4-d images, and no Linear unless an adaptive pool
    before it fixes the size it sees (convs, pools and activations work on any height and width)."""
    if len(input_shape) != 3:
        return False
    sized = False
    for layer in spec.layers:
        if layer.kind.startswith("adaptive"):
            sized = True
        if layer.kind == "linear" and not sized:
            return False
    return True


def versions() -> dict[str, str]:
    import onnx
    import torch

    import poolkit

    return {"poolkit": poolkit.__version__, "torch": torch.__version__, "onnx": onnx.__version__}


def build_all(refs: list[ModelRef], options: ExportOptions) -> list[BuiltModel]:
    """Build every model first: a spec whose layers do not chain stops the run before any file."""
    built = []
    for ref in refs:
        shape = options.input_shape or default_input_shape(ref.spec)
        module = build_model(ref.spec, shape, seed=options.seed)
        agnostic = shape_agnostic(ref.spec, shape)
        if options.dynamic_shape and not agnostic:
            what = "its input is not an image" if len(shape) != 3 else "a Linear layer fixes its input size"
            raise SpecError(
                f"--dynamic-shape: '{ref.name}' cannot take any image size ({what}); "
                "export it with --static-shape, or leave the option out"
            )
        dynamic = agnostic if options.dynamic_shape is None else options.dynamic_shape
        built.append(BuiltModel(ref, module, shape, len(output_shapes(module, shape, batch=1)), dynamic))
    return built


def _save_weights(module: nn.Module, path: Path) -> None:
    import torch

    torch.save(module.state_dict(), path)


def example_input(shape: tuple[int, ...], batch: int, seed: int) -> torch.Tensor:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *shape), generator=gen)


def export_models(
    refs: list[ModelRef],
    out_dir: Path,
    options: ExportOptions | None = None,
    on_record: Callable[[ExportRecord], None] | None = None,
) -> ExportRun:
    """Export every model in every requested format into `out_dir`, updating its manifest."""

    options = options or ExportOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = ExportRun()
    stamp = versions()
    for item in build_all(refs, options):
        name = item.ref.name
        weights = out_dir / f"{name}.weights.pt"
        write_atomic(weights, partial(_save_weights, item.module))
        # Batch 2, not 1, for dynamic export: torch.export specialises a dimension of size 1.
        batch = 2 if options.dynamic_batch else options.static_batch_size
        example = example_input(item.input_shape, batch, options.seed)
        new = []
        for fmt in options.formats:
            record = _export_one(item, fmt, out_dir, example, options, stamp, run.warnings)
            record.weights, record.weights_sha256 = weights.name, sha256_file(weights)
            new.append(record)
            run.records.append(record)
            if on_record:
                on_record(record)
        update_manifest(out_dir, new)
    return run


def artifact_filename(name: str, fmt: str) -> str:
    return f"{name}.torchscript.pt" if fmt == "torchscript" else f"{name}.onnx"


@dataclass
class ArtifactWritten:
    """What `export_artifact` wrote: the opset really in an ONNX file, and what the exporter said."""

    opset: int | None = None
    warnings: list[str] = field(default_factory=list)


def export_artifact(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    fmt: str,
    *,
    method: str = "script",
    exporter: str = "dynamo",
    opset: int | None = None,
    dynamic_batch: bool = True,
    n_outputs: int = 1,
    metadata: dict[str, str] | None = None,
    dynamic_spatial: bool = False,
) -> ArtifactWritten:
    """Write one artifact of `module` in `fmt` (torchscript or onnx) to `path`, atomically.

    The one place that dispatches on the format: `poolkit export` and `poolkit sweep` both call it.
    Raises whatever the exporter raises; callers turn that into a failed row or cell.
    """
    if fmt == "torchscript":
        return ArtifactWritten(warnings=export_torchscript(module, example, path, method))
    if fmt == "onnx":
        used = export_onnx(
            module,
            example,
            path,
            opset=opset,
            exporter=exporter,
            dynamic_batch=dynamic_batch,
            n_outputs=n_outputs,
            metadata=metadata or {},
            dynamic_spatial=dynamic_spatial,
        )
        return ArtifactWritten(opset=used)
    raise ValueError(f"unknown format '{fmt}' ({' or '.join(FORMATS)})")


def _export_one(
    item: BuiltModel,
    fmt: str,
    out_dir: Path,
    example: torch.Tensor,
    options: ExportOptions,
    stamp: dict[str, str],
    warnings_seen: list[str],
) -> ExportRecord:
    name, spec_text = item.ref.name, item.ref.spec_text
    # A scripted or traced module takes any batch; only ONNX fixes it when asked to.
    dynamic = options.dynamic_batch or fmt == "torchscript"
    batch_axis: list = ["batch"] if dynamic else [options.static_batch_size]
    record = ExportRecord(
        name=name,
        spec=spec_text,
        format=fmt,
        method=options.method if fmt == "torchscript" else options.exporter,
        status="ok",
        input_shape=batch_axis + list(item.input_shape),
        seed=options.seed,
        outputs=item.n_outputs,
        versions=dict(stamp),
        exported_at=datetime.now(UTC).isoformat(timespec="seconds"),
        # TorchScript runs the module's own code: it takes whatever sizes the module takes.
        dynamic_axes=list(dynamic_axes(dynamic, item.dynamic_spatial).values()),
    )
    path = out_dir / artifact_filename(name, fmt)
    metadata = {
        "poolkit.name": name,
        "poolkit.spec": spec_text,
        "poolkit.version": stamp["poolkit"],
        "poolkit.seed": str(options.seed),
        "poolkit.exporter": options.exporter,
        "poolkit.input_shape": "x".join(str(d) for d in record.input_shape),
        "poolkit.dynamic_axes": ",".join(record.dynamic_axes),
        "torch.version": stamp["torch"],
    }
    start = time.perf_counter()
    try:
        written = export_artifact(
            item.module,
            example,
            path,
            fmt,
            method=options.method,
            exporter=options.exporter,
            opset=options.opset,
            dynamic_batch=options.dynamic_batch,
            n_outputs=item.n_outputs,
            metadata=metadata,
            dynamic_spatial=item.dynamic_spatial,
        )
    except Exception as exc:  # any exporter failure becomes a failed row, never a crash
        record.status, record.error = "failed", one_line(exc)
        path.unlink(missing_ok=True)
    else:
        warnings_seen.extend(written.warnings)
        record.opset = written.opset
        record.path = path.name
        record.sha256 = sha256_file(path)
        record.size_bytes = path.stat().st_size
    record.export_seconds = round(time.perf_counter() - start, 4)
    return record


def ensure_exported(refs: list[ModelRef], out_dir: Path) -> list[str]:
    """Export (both formats) the models the manifest in `out_dir` lacks; returns their names."""
    from poolkit.exporter.manifest import load_manifest

    have = {(r.name, r.format) for r in load_manifest(out_dir) if r.ok}
    missing = [r for r in refs if not {(r.name, "onnx"), (r.name, "torchscript")} <= have]
    if missing:
        export_models(missing, out_dir, ExportOptions())
    return [r.name for r in missing]
