"""`poolkit zoo` and `poolkit export`: what the models are, and their artifacts on disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poolkit.cli.app import app, handles_errors
from poolkit.cli.options import (
    DtypeOpt,
    JitMethod,
    JsonOpt,
    ModelOpt,
    OnnxExporter,
    given_values,
    parse_dtype,
    parse_formats,
    parse_shapes,
    writable_folder,
)
from poolkit.cli.run_scope import open_run
from poolkit.common.errors import EXIT_FAILED, EXIT_OK
from poolkit.common.files import write_json_atomic
from poolkit.common.limits import MAX_BATCH
from poolkit.exporter.formats.registry import FORMATS
from poolkit.exporter.options import MAX_SEED

if TYPE_CHECKING:
    from poolkit.exporter.precision import Calibration

InputShapeOpt = Annotated[
    str | None,
    typer.Option(
        help="Per-sample input shape like 1x5x5; default from the spec (3x32x32). Your own model: required"
        " unless it has an example_input(); several inputs joined by '+', like 3x32x32+10."
    ),
]


@app.command()
@handles_errors
def zoo(
    model: ModelOpt = None,
    batch_size: Annotated[int, typer.Option(help="Batch size for the output-shape column.", min=1, max=MAX_BATCH)] = 64,
    input_shape: InputShapeOpt = None,
    dtype: DtypeOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """List the named models: spec, torch layers, parameter count and output shape."""
    from poolkit.cli.output import print_zoo
    from poolkit.exporter.zoo import resolve_models
    from poolkit.zoo.info import describe

    rows = describe(resolve_models(model), batch_size, parse_shapes(input_shape), parse_dtype(dtype))
    print_zoo(rows, batch_size, json_out)
    return EXIT_OK


@app.command()
@handles_errors
def export(
    format: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help=f"Which artifacts to write: {', '.join(FORMATS)} or all (the default). Repeat or separate with commas.",
        ),
    ] = None,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for the artifacts and manifest.json.")] = Path("models"),
    opset: Annotated[int | None, typer.Option(help="ONNX opset; default: the exporter's own.", min=7)] = None,
    exporter: Annotated[OnnxExporter, typer.Option(help="ONNX exporter.")] = OnnxExporter.dynamo,  # type: ignore[attr-defined]
    dynamic_batch: Annotated[
        bool, typer.Option("--dynamic-batch/--static-batch", help="ONNX batch axis dynamic, or fixed.")
    ] = True,
    batch_size: Annotated[
        int, typer.Option(help="Batch a --static-batch ONNX file is fixed to.", min=1, max=MAX_BATCH)
    ] = 64,
    dynamic_shape: Annotated[
        bool | None,
        typer.Option(
            "--dynamic-shape/--static-shape",
            help="ONNX height and width dynamic (default for models whose layers take any size), or fixed.",
        ),
    ] = None,
    method: Annotated[JitMethod, typer.Option(help="TorchScript: torch.jit.script or trace.")] = JitMethod.script,  # type: ignore[attr-defined]
    input_shape: InputShapeOpt = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the weights of specs (your own model keeps its own).", min=0, max=MAX_SEED)
    ] = 0,
    weights: Annotated[
        Path | None, typer.Option(help="A state dict for your own model (read with torch.load weights_only=True).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Export again even artifacts that are current.")] = False,
    dtype: DtypeOpt = None,
    precision: Annotated[
        list[str] | None,
        typer.Option(
            help="Precision variants written beside each fp32 artifact: fp32, fp16, bf16, int8, bf16-autocast,"
            " fp16-autocast (comma-separated). -autocast: the fp32 model under torch.autocast (torchscript, pt2, aoti)."
            " fp16 ONNX: onnxconverter-common, float32 I/O kept; bf16 and TorchScript: torch converts the"
            " module; int8 ONNX: ONNX Runtime quantize_static (QDQ, per-channel) calibrated on CIFAR10."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> int:
    """Export models to TorchScript and/or ONNX, with a manifest; exit 1 if any export failed.

    Your own model (--model PATH.py:NAME) is exported in eval mode with its own weights, saved beside
    the artifacts; the manifest records its file's sha256, and verify refuses if the file changes.
    An artifact whose spec, seed, options and tool versions are unchanged and whose file still
    matches its hash is not exported again (shown as cached; --force exports it anyway). A TorchScript
    file is code: poolkit later loads it only when its sha256 matches this manifest.
    """
    from poolkit.cli.output import print_export, print_export_progress
    from poolkit.exporter.export import export_models
    from poolkit.exporter.options import ExportOptions
    from poolkit.exporter.precision import parse_precisions
    from poolkit.exporter.zoo import resolve_models

    precisions = parse_precisions(given_values(precision, "--precision"))
    shapes = parse_shapes(input_shape)
    options = ExportOptions(
        formats=parse_formats(format),
        opset=opset,
        exporter=exporter.value,
        method=method.value,
        dynamic_batch=dynamic_batch,
        dynamic_shape=dynamic_shape,
        static_batch_size=batch_size,
        input_shape=shapes[0] if shapes else None,
        input_shapes=shapes,
        seed=seed,
        weights=weights,
        force=force,
        dtype=parse_dtype(dtype),
        precisions=precisions,
        calibration=calibration_images() if "int8" in precisions else None,
    )
    writable_folder(out, "--out")
    refs = resolve_models(model)
    record = open_run("export")  # what this export did (exported, cached, failed), beside the models' manifest
    run = export_models(refs, out, options, on_record=None if json_out else print_export_progress)
    write_json_atomic(
        record.folder / "export.json", {"models_dir": str(out), "records": run.records, "notes": run.notes}
    )
    print_export(run, out, json_out)
    return EXIT_FAILED if run.failed else EXIT_OK


def calibration_images() -> Calibration:
    """int8's calibration set: the first CIFAR10 test images poolkit has ($POOLKIT_DATA, else the shipped ones)."""
    from poolkit.exporter.precision import CALIBRATION_IMAGES, Calibration
    from poolkit.services.cifar10 import load_images

    images = load_images("cifar10")
    count = min(CALIBRATION_IMAGES, len(images.images))
    where = images.source.path or images.source.origin
    return Calibration(images.images[:count], f"CIFAR10 test images 0-{count - 1} ({images.source.origin}: {where})")
