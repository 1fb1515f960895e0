"""Export zoo models, specs or a user's own modules in every requested format, one record per artifact.

An artifact that fails to export becomes a failed record with the exporter's reason; the others
still export, and the manifest keeps whatever was there for other models (and a good record of
the same artifact, whose file is left in place). Files are staged and renamed into place under the
manifest lock only when a model is done; current artifacts are `cached`, not exported again.
Which formats exist, and how each writes its file, is the format registry's (`formats/`).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.common.errors import one_line
from poolkit.common.files import sha256_file
from poolkit.exporter import transaction
from poolkit.exporter.clashes import refuse_clashes
from poolkit.exporter.formats.base import ArtifactWritten, ExportRequest
from poolkit.exporter.formats.registry import artifact_filename, format_named
from poolkit.exporter.manifest import (
    ExportRecord,
    load_manifest,
    manifest_data,
    manifest_lock,
    manifest_path,
    merged_records,
)
from poolkit.exporter.models import BuiltModel, build_all, example_batch
from poolkit.exporter.options import ExportOptions, check_options
from poolkit.exporter.precision import skipped_combinations, variant_problem
from poolkit.exporter.records import artifact_metadata, cached_record, new_record, versions
from poolkit.exporter.transaction import staged_name
from poolkit.exporter.variants import export_variant
from poolkit.exporter.weights import stage_weights, weights_filename
from poolkit.exporter.zoo import ModelRef

if TYPE_CHECKING:
    import torch
    from torch import nn

DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}  # the folder cannot take the file


@dataclass
class ExportRun:
    records: list[ExportRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the run did not write, and why (said once)

    @property
    def failed(self) -> list[ExportRecord]:
        return [r for r in self.records if not r.ok]

    @property
    def cached(self) -> list[ExportRecord]:
        return [r for r in self.records if r.cached]

    @property
    def jit_deprecated(self) -> bool:
        """torch said torch.jit is deprecated: the CLI says so once, not once per model."""
        return any("torch.jit" in w and "deprecated" in w for w in self.warnings)


def export_models(
    refs: list[ModelRef],
    out_dir: Path,
    options: ExportOptions | None = None,
    on_record: Callable[[ExportRecord], None] | None = None,
) -> ExportRun:
    """Export every model in every requested format into `out_dir`, updating its manifest.

    Each artifact is written to a staging file first and renamed into place, with the weights and
    the manifest entry, under the folder's lock only once its model is done: an interrupt or a failed
    re-export leaves the previous good files and records as they were. An artifact whose spec, seed,
    options and tool versions are unchanged and whose files still match their hashes is `cached`,
    not exported again, unless `options.force`.
    """
    options = options or ExportOptions()
    check_options(options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = ExportRun()
    run.notes.extend(skipped_combinations(options.formats, options.precisions))
    stamp = versions()
    refuse_clashes(refs, load_manifest(out_dir), out_dir)  # before any user code runs or file is written
    for item in build_all(refs, options):
        staged: dict[str, Path] = {}
        try:
            new = []
            old = {r.key: r for r in load_manifest(out_dir) if r.name == item.ref.name}
            current = {r.format: r for r in old.values() if r.precision == "fp32"}
            for fmt in options.formats:
                record = cached_record(current.get(fmt), item, fmt, options, stamp, out_dir)
                if record is None:
                    record, staged_file = _export_one(item, fmt, out_dir, options, stamp, run.warnings)
                    if staged_file is not None:
                        staged[str(record.key)] = staged_file
                new.append(record)
                # Precision variants are made from this fp32 artifact (staged, or the cached file).
                base = staged.get(str(record.key)) or (out_dir / record.path if record.ok and record.path else None)
                for precision in (p for p in options.precisions if p != "fp32" and not variant_problem(fmt, p)):
                    variant, staged_file = export_variant(item, record, base, precision, old, out_dir, options)
                    if staged_file is not None:
                        staged[str(variant.key)] = staged_file
                    new.append(variant)
            _commit(item, out_dir, new, staged)
        finally:
            for leftover in staged.values():
                leftover.unlink(missing_ok=True)
        for record in new:
            run.records.append(record)
            if on_record:
                on_record(record)
    return run


def export_artifact(
    module: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    path: Path,
    fmt: str,
    request: ExportRequest,
) -> ArtifactWritten:
    """Write one artifact of `module` in format `fmt` to `path`, atomically: `poolkit export` and
    `poolkit sweep` both call it. `example` is one tensor, or a tuple for a model with several inputs
    (batch axis first). Raises whatever the exporter raises; callers turn that into a failed row or cell.
    """
    return format_named(fmt).export(module, example, path, request)


def _export_one(
    item: BuiltModel,
    fmt: str,
    out_dir: Path,
    options: ExportOptions,
    stamp: dict[str, str],
    warnings_seen: list[str],
) -> tuple[ExportRecord, Path | None]:
    """Export one artifact to a staging file next to its final name; (record, staged file or None)."""
    form = format_named(fmt)
    record = new_record(item, fmt, options, stamp)
    final = out_dir / artifact_filename(item.ref.name, fmt)
    staged = staged_name(final)
    request = ExportRequest(
        method=record.method,
        opset=options.opset,
        dynamic_batch=options.dynamic_batch,
        dynamic_spatial=item.dynamic_spatial,
        dynamic_channels=item.dynamic_channels and form.open_channels,
        n_outputs=item.n_outputs,
        metadata=artifact_metadata(item, record, options),
    )
    # Batch 2, not 1, for dynamic export: torch.export specialises a dimension of size 1.
    example = example_batch(item, 2 if options.dynamic_batch else options.static_batch_size, options.seed)
    start = time.perf_counter()
    try:
        written = _export_or_static(item, example, staged, fmt, request, record, warnings_seen)
        if options.opset is not None and written.opset is not None and written.opset != options.opset:
            raise ValueError(
                f"--opset {options.opset} asked for, but the {options.exporter} exporter wrote opset {written.opset}"
            )
    except OSError as exc:
        staged.unlink(missing_ok=True)
        if exc.errno in DISK_ERRORS:  # the folder, not the exporter: one line naming the path, exit 2
            raise OSError(exc.errno, exc.strerror, str(final)) from None
        record.status, record.error = "failed", one_line(exc)
        record.export_seconds = round(time.perf_counter() - start, 4)
        return record, None
    except Exception as exc:  # any exporter failure becomes a failed row, never a crash
        record.status = "failed"
        record.error = one_line(exc) + form.failure_hint(record.method, item.ref.user is not None)
        staged.unlink(missing_ok=True)
        record.export_seconds = round(time.perf_counter() - start, 4)
        return record, None
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    warnings_seen.extend(written.warnings)
    record.opset = written.opset
    record.dynamic_dims, record.compile_seconds = written.dims, written.compile_seconds
    record.path = final.name
    record.sha256 = sha256_file(staged)
    record.external_data = form.external_hashes(staged)  # every byte the artifact loads is hashed
    record.size_bytes = staged.stat().st_size
    record.export_seconds = round(time.perf_counter() - start, 4)
    return record, staged


STATIC_FALLBACK = "static height and width"


def _export_or_static(
    item: BuiltModel,
    example: Any,
    staged: Path,
    fmt: str,
    request: ExportRequest,
    record: ExportRecord,
    warnings_seen: list[str],
) -> ArtifactWritten:
    """Export; a user's module whose height/width were opened because eager ran at another size falls
    back to its static size when the exporter refuses them, and says why in one line."""
    try:
        return export_artifact(item.exported, example, staged, fmt, request)
    except Exception as exc:  # noqa: BLE001 - re-raised below unless the static export works
        if not (item.probed and request.dynamic_spatial):
            raise
        reason = one_line(exc)[:160]
    written = export_artifact(item.exported, example, staged, fmt, replace(request, dynamic_spatial=False))
    record.dynamic_axes = [a for a in record.dynamic_axes if a not in ("height", "width")]
    warnings_seen.append(f"{item.ref.name} {fmt}: {STATIC_FALLBACK} (the exporter refused them open: {reason})")
    return written


def _commit(item: BuiltModel, out_dir: Path, records: list[ExportRecord], staged: dict[str, Path]) -> None:
    """Under the lock: stage the weights (only when they changed), then rename every staged file into
    place and write the manifest as one journaled step (`transaction.py`): the folder holds the old
    export or the new one, whole, whatever stops poolkit."""
    fresh = [r for r in records if not r.cached]
    if not fresh:
        return
    with manifest_lock(out_dir):
        weights = out_dir / weights_filename(item.ref.name)
        weights_digest = None
        if any(r.ok for r in fresh):
            weights_digest, staged_weights = stage_weights(item.module, weights)
            if staged_weights is not None:
                staged["weights"] = staged_weights
        renames = [(staged[str(r.key)], out_dir / str(r.path)) for r in fresh if str(r.key) in staged]
        replacing = {str(r.path): str(r.sha256) for r in fresh if str(r.key) in staged}
        if "weights" in staged:
            renames.append((staged["weights"], weights))
            replacing[weights.name] = str(weights_digest)
        for record in fresh:
            if record.ok:
                record.weights, record.weights_sha256 = weights.name, weights_digest
        new = fresh + _stale_others(out_dir, item, fresh, weights_digest)
        merged = merged_records(out_dir, new, replacing)
        staged.clear()  # the commit owns the staged files now (it removes them only if it never started)
        transaction.commit(out_dir, renames, manifest_path(out_dir), manifest_data(merged))


def _stale_others(out_dir: Path, item: BuiltModel, fresh: list[ExportRecord], digest: str | None) -> list[ExportRecord]:
    """The model's other formats, when this export replaced the weights they were built with.

    Their artifacts hold the old weights: they are marked failed with the reason (never left to pass
    or to fail later as a mysterious hash mismatch). Equal weights are not rewritten, so a
    re-export with the same seed keeps them valid.
    """
    if digest is None:
        return []
    formats = {r.format for r in fresh}
    keys = {r.key for r in fresh}
    stale = []
    for old in load_manifest(out_dir):
        if old.name == item.ref.name and old.key not in keys and old.ok and old.weights_sha256 != digest:
            stale.append(
                replace(
                    old,
                    status="failed",
                    error=f"stale: a later export of {', '.join(sorted(formats))} replaced the weights this "
                    f"{old.format} file was built with; export it again (--format all)",
                )
            )
    return stale
