"""One precision variant of an exported artifact: staged beside it, recorded as its own manifest entry.

The fp32 record is the variant's template (same spec, seed, shapes, weights); what differs is the
precision, the file, the converter's version and, for int8, how it was quantized. A variant is
cached like any artifact: when its fp32 file was, its own file still matches its hash, and it
was made by the same converter with the same calibration.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from poolkit.common.errors import one_line
from poolkit.common.files import sha256_file
from poolkit.exporter.autocast import check_captured
from poolkit.exporter.formats.base import ExportRequest
from poolkit.exporter.formats.registry import format_named
from poolkit.exporter.manifest import ExportRecord, still_valid
from poolkit.exporter.models import BuiltModel, example_batch
from poolkit.exporter.options import ExportOptions
from poolkit.exporter.precision import (
    AUTOCAST,
    BF16_OPSET,
    DTYPE_OF,
    calibration_for,
    same_settings,
    variant_filename,
    variant_versions,
    write_variant,
)


def export_variant(
    item: BuiltModel,
    base: ExportRecord,
    base_file: Path | None,
    precision: str,
    old: dict[Any, ExportRecord],
    out_dir: Path,
    options: ExportOptions,
) -> tuple[ExportRecord, Path | None]:
    """One precision variant of `base` (staged next to its final name), or a failed record saying why."""
    record = replace(base, precision=precision, path=None, sha256=None, size_bytes=None, error=None,
                     quantization=None, cached=False, export_seconds=0.0, compile_seconds=None,
                     versions={**base.versions, **variant_versions(precision)})  # fmt: skip
    calibration = calibration_for(options.calibration, item.input_shape)
    previous = old.get(record.key)
    if (
        base.cached
        and not options.force
        and previous is not None
        and previous.versions == record.versions
        and same_settings(previous.quantization, calibration)
        and still_valid(out_dir, previous)
    ):
        return replace(previous, cached=True, export_seconds=0.0), None
    if not base.ok or base_file is None:
        record.status, record.error = "failed", f"the fp32 {base.format} export it is made from failed"
        return record, None
    final = out_dir / variant_filename(item.ref.name, base.format, precision)
    staged = final.with_name(f".{final.name}.{os.getpid()}.staged")

    def export_torch(precision: str, target: Path) -> None:
        """The torch-side variant: the module in that precision (converted, or under autocast), float32 at
        its edges, written by the format itself; an autocast file must be seen computing under autocast."""
        from poolkit.exporter.layers import autocast_variant, precision_variant  # imports torch, as exporting does

        dtype, form, opset = DTYPE_OF[precision], format_named(base.format), options.opset
        if form.uses_opset and dtype == "bfloat16":
            opset = max(base.opset or options.opset or 0, BF16_OPSET)  # ONNX types Conv in bfloat16 from 22
        record.opset = opset if form.uses_opset else None
        # torch.jit.script compiles an autocast context but runs no CPU casts (exporter/autocast.py): traced.
        record.method = "trace" if precision in AUTOCAST and base.format == "torchscript" else base.method
        request = ExportRequest(method=record.method, opset=opset, dynamic_batch=options.dynamic_batch,
                                dynamic_spatial=item.dynamic_spatial, n_outputs=item.n_outputs)  # fmt: skip
        autocast = precision in AUTOCAST
        module = (
            autocast_variant(item.exported, dtype)
            if autocast
            else precision_variant(item.exported, dtype, item.n_outputs)
        )
        example = example_batch(item, 2 if options.dynamic_batch else options.static_batch_size, options.seed)
        written = form.export(module, example, target, request)
        record.compile_seconds = written.compile_seconds  # AOTInductor: this file's own compile, not fp32's
        record.dynamic_dims = written.dims or record.dynamic_dims
        if autocast:
            check_captured(base.format, target, module, example, precision)

    start = time.perf_counter()
    try:
        quantization = write_variant(base_file, staged, base.format, precision, export_torch, calibration)
    except Exception as exc:  # any converter failure becomes a failed row, never a crash
        staged.unlink(missing_ok=True)
        record.status, record.error = "failed", one_line(exc)
        return record, None
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    record.quantization = asdict(quantization) if quantization is not None else None
    record.path, record.sha256, record.size_bytes = final.name, sha256_file(staged), staged.stat().st_size
    record.export_seconds = round(time.perf_counter() - start, 4)
    return record, staged
