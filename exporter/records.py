"""The manifest record an export writes, and whether the record on disk already is that record.

What a record says (method, input shape, open axes, opset asked for) is decided here from the
options and the format's declarations, so an export and the incremental cache never disagree.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poolkit.common.machine import library_versions
from poolkit.exporter.formats.base import dynamic_axes
from poolkit.exporter.formats.registry import format_named
from poolkit.exporter.manifest import ExportRecord, still_valid
from poolkit.exporter.models import BuiltModel
from poolkit.exporter.options import ExportOptions
from poolkit.exporter.weights import weights_filename, weights_match


def versions() -> dict[str, str]:
    """What the manifest records of the libraries an export came from."""
    found = library_versions()
    return {name: found[name] for name in ("poolkit", "torch", "onnx")}


def expected(item: BuiltModel, fmt: str, options: ExportOptions) -> tuple[str, list[Any]]:
    """The method and input shape (batch axis first) a record of `fmt` gets with these options."""
    form = format_named(fmt)
    dynamic = options.dynamic_batch or form.any_batch
    batch_axis: list[Any] = ["batch"] if dynamic else [options.static_batch_size]
    return form.method_of(options), batch_axis + list(item.input_shape)


def expected_axes(item: BuiltModel, input_shape: list[Any], fmt: str) -> list[str]:
    """The axes a record leaves open. TorchScript runs the module's own code: it takes whatever sizes
    the module takes, so its record says so too. Channels only where the format opens them."""
    channels = item.dynamic_channels and format_named(fmt).open_channels
    return list(dynamic_axes(input_shape[0] == "batch", item.dynamic_spatial, channels).values())


def new_record(item: BuiltModel, fmt: str, options: ExportOptions, stamp: dict[str, str]) -> ExportRecord:
    """The record of an artifact about to be exported (status ok until the exporter says otherwise)."""
    method, input_shape = expected(item, fmt, options)
    record = ExportRecord(
        name=item.ref.name,
        spec=item.ref.spec_text,
        format=fmt,
        method=method,
        status="ok",
        input_shape=input_shape,
        seed=options.seed,
        outputs=item.n_outputs,
        versions=dict(stamp),
        exported_at=datetime.now(UTC).isoformat(timespec="seconds"),
        opset_requested=options.opset if format_named(fmt).uses_opset else None,
        input_shapes=[input_shape[:1] + list(s) for s in item.input_shapes] or None,
        dynamic_axes=expected_axes(item, input_shape, fmt),
    )
    if item.ref.user is not None:
        record.import_path, record.object_name = item.ref.user.import_path, item.ref.user.object_name
        record.source_sha256 = item.source_sha256
    return record


def artifact_metadata(item: BuiltModel, record: ExportRecord, options: ExportOptions) -> dict[str, str]:
    """What a file that can carry metadata (ONNX) says about where it came from."""
    metadata = {
        "poolkit.name": record.name,
        "poolkit.spec": record.spec,
        "poolkit.version": record.versions["poolkit"],
        "poolkit.seed": str(options.seed),
        "poolkit.exporter": options.exporter,
        "poolkit.input_shape": "x".join(str(d) for d in record.input_shape),
        "poolkit.dynamic_axes": ",".join(record.dynamic_axes),
        "torch.version": record.versions["torch"],
    }
    if item.source_sha256:
        metadata["poolkit.source_sha256"] = item.source_sha256
    return metadata


def cached_record(
    old: ExportRecord | None, item: BuiltModel, fmt: str, options: ExportOptions, stamp: dict[str, str], out_dir: Path
) -> ExportRecord | None:
    """The existing record when exporting again would write the same artifact, else None."""
    if old is None or options.force:
        return None
    method, shape = expected(item, fmt, options)
    same = (
        old.spec == item.ref.spec_text
        and old.seed == options.seed
        and old.method == method
        and old.input_shape == shape
        and (old.input_shapes or None) == ([shape[:1] + list(s) for s in item.input_shapes] or None)
        and old.dynamic_axes == expected_axes(item, shape, fmt)
        and old.versions == stamp
        and (not format_named(fmt).uses_opset or old.opset_requested == options.opset)
        and old.weights == weights_filename(item.ref.name)
        and old.source_sha256 == item.source_sha256
        and (item.ref.user is None or weights_match(item.module, out_dir / weights_filename(item.ref.name)))
    )
    if not same or not still_valid(out_dir, old):
        return None
    return replace(old, cached=True, export_seconds=0.0)
