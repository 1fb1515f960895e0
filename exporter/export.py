"""Export zoo models, specs or a user's own modules to TorchScript and/or ONNX, one record per artifact.

Specs are parsed and built (a user's module imported, constructed and run once on its input shape)
before anything is written, so a bad `--model` fails fast (exit 2).
An artifact that fails to export becomes a failed record with the exporter's reason; the others
still export, and the manifest keeps whatever was there for other models (and a good record of
the same artifact, whose file is left in place). Files are staged and renamed into place under the
manifest lock only when a model is done; current artifacts are `cached`, not exported again.
"""

from __future__ import annotations

import errno
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.common.errors import PoolkitError, SpecError, one_line
from poolkit.common.files import sha256_file, write_bytes_atomic
from poolkit.common.limits import check_batch, check_sample
from poolkit.common.machine import library_versions
from poolkit.exporter import transaction
from poolkit.exporter.build import DEFAULT_SEED, build_model, output_shapes
from poolkit.exporter.clashes import refuse_clashes
from poolkit.exporter.external_data import external_hashes
from poolkit.exporter.manifest import (
    ExportRecord,
    load_manifest,
    manifest_data,
    manifest_lock,
    manifest_path,
    merged_records,
    still_valid,
)
from poolkit.exporter.onnx_export import dynamic_axes, export_onnx
from poolkit.exporter.spec import ModelSpec, default_input_shape
from poolkit.exporter.torchscript_export import export_torchscript
from poolkit.exporter.transaction import staged_name
from poolkit.exporter.zoo import ModelRef

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMATS = ("torchscript", "onnx")
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}  # the folder cannot take the file
MIN_OPSET = 7
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed


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
    # A user's model with several inputs: every input's per-sample shape (input_shape is the first).
    input_shapes: tuple[tuple[int, ...], ...] | None = None
    weights: Path | None = None  # a state dict for a user's model (loaded with weights_only=True)
    force: bool = False  # export again even when the artifact on disk is current


@dataclass
class ExportRun:
    records: list[ExportRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

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


@dataclass
class BuiltModel:
    ref: ModelRef
    module: nn.Module
    input_shape: tuple[int, ...]
    n_outputs: int
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)  # several inputs: each one's shape
    source_sha256: str | None = None  # a user's model: its file at the moment it was imported
    dynamic_spatial: bool = False

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return self.input_shapes or [self.input_shape]


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
    """What the manifest records of the libraries an export came from."""
    found = library_versions()
    return {name: found[name] for name in ("poolkit", "torch", "onnx")}


def build_all(refs: list[ModelRef], options: ExportOptions) -> list[BuiltModel]:
    """Build every model first: a spec whose layers do not chain stops the run before any file."""
    users = [r for r in refs if r.user is not None]
    if options.weights is not None and (len(refs) != 1 or not users):
        raise SpecError("--weights loads a state dict into one model of your own: give one --model PATH.py:NAME")
    if options.input_shapes and len(options.input_shapes) > 1 and len(users) != len(refs):
        raise SpecError("several --input-shape inputs (joined by '+') apply to your own models only")
    built = []
    for ref in refs:
        if ref.user is not None:
            built.append(build_user_model(ref, options))
            continue
        assert ref.spec is not None
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
        n_outputs = len(output_shapes(module, shape, batch=1))
        built.append(BuiltModel(ref, module, shape, n_outputs, dynamic_spatial=dynamic))
    return built


def build_user_model(ref: ModelRef, options: ExportOptions) -> BuiltModel:
    """A user's module as it is (eval mode, its own or `--weights` weights), checked on its input shape."""
    from poolkit.exporter.user_model import (
        check_forward,
        construct,
        example_shapes,
        import_user_module,
        load_weights,
        source_sha256,
    )

    user = ref.user
    assert user is not None
    if options.dynamic_shape:
        raise SpecError(
            f"--dynamic-shape: poolkit cannot tell whether '{ref.spec_text}' takes any image size; "
            "your own models export with the sizes of --input-shape"
        )
    digest = source_sha256(user)  # before running it: what was hashed is what was imported
    module = import_user_module(user)
    model = construct(user, module)
    if options.weights is not None:
        load_weights(model, options.weights, user.object_name)
    given = list(options.input_shapes or ()) or ([options.input_shape] if options.input_shape else [])
    shapes = given or example_shapes(user, module)
    if not shapes:
        raise SpecError(
            f"'{ref.spec_text}' needs an input shape: give 'poolkit export' --input-shape (like 3x32x32; several"
            f" inputs: 3x32x32+10), or define example_input() beside {user.object_name}"
        )
    outputs = check_forward(model, shapes, f"{Path(user.import_path).name}:{user.object_name}")
    return BuiltModel(ref, model, shapes[0], len(outputs), shapes if len(shapes) > 1 else [], digest)


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
    stamp = versions()
    refuse_clashes(refs, load_manifest(out_dir), out_dir)  # before any user code runs or file is written
    for item in build_all(refs, options):
        staged: dict[str, Path] = {}
        try:
            new = []
            current = {r.format: r for r in load_manifest(out_dir) if r.name == item.ref.name}
            for fmt in options.formats:
                record = _cached(current.get(fmt), item, fmt, options, stamp, out_dir)
                if record is None:
                    record, staged_file = _export_one(item, fmt, out_dir, options, stamp, run.warnings)
                    if staged_file is not None:
                        staged[fmt] = staged_file
                new.append(record)
            _commit(item, out_dir, new, staged)
        finally:
            for leftover in staged.values():
                leftover.unlink(missing_ok=True)
        for record in new:
            run.records.append(record)
            if on_record:
                on_record(record)
    return run


def check_options(options: ExportOptions) -> None:
    """Refuse what the exporter cannot honour before anything is built or written."""
    if options.opset is not None and "onnx" in options.formats:
        import onnx.defs

        newest = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= options.opset <= newest:
            raise PoolkitError(
                f"--opset {options.opset}: onnx {versions()['onnx']} writes opsets {MIN_OPSET} to {newest}"
            )
    if options.seed < 0 or options.seed > MAX_SEED:
        raise PoolkitError(f"--seed {options.seed}: seeds run from 0 to {MAX_SEED}")
    for sample in options.input_shapes or ([options.input_shape] if options.input_shape is not None else []):
        check_sample(sample)
        if not options.dynamic_batch:
            check_batch(options.static_batch_size, sample)


def _expected(item: BuiltModel, fmt: str, options: ExportOptions) -> tuple[str, list[Any]]:
    """The method and input shape (batch axis first) a record of `fmt` gets with these options."""
    dynamic = options.dynamic_batch or fmt == "torchscript"  # a scripted module takes any batch
    batch_axis: list[Any] = ["batch"] if dynamic else [options.static_batch_size]
    return (options.method if fmt == "torchscript" else options.exporter), batch_axis + list(item.input_shape)


def _expected_axes(item: BuiltModel, input_shape: list[Any]) -> list[str]:
    """The axes a record leaves open. TorchScript runs the module's own code: it takes whatever sizes
    the module takes, so its record says so too."""
    return list(dynamic_axes(input_shape[0] == "batch", item.dynamic_spatial).values())


def _cached(
    old: ExportRecord | None, item: BuiltModel, fmt: str, options: ExportOptions, stamp: dict[str, str], out_dir: Path
) -> ExportRecord | None:
    """The existing record when exporting again would write the same artifact, else None."""
    if old is None or options.force:
        return None
    method, shape = _expected(item, fmt, options)
    same = (
        old.spec == item.ref.spec_text
        and old.seed == options.seed
        and old.method == method
        and old.input_shape == shape
        and (old.input_shapes or None) == ([shape[:1] + list(s) for s in item.input_shapes] or None)
        and old.dynamic_axes == _expected_axes(item, shape)
        and old.versions == stamp
        and (fmt != "onnx" or old.opset_requested == options.opset)
        and old.weights == weights_filename(item.ref.name)
        and old.source_sha256 == item.source_sha256
        and (item.ref.user is None or weights_match(item.module, out_dir / weights_filename(item.ref.name)))
    )
    if not same or not still_valid(out_dir, old):
        return None
    return replace(old, cached=True, export_seconds=0.0)


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
        renames = [(staged[r.format], out_dir / str(r.path)) for r in fresh if r.format in staged]
        replacing = {str(r.path): str(r.sha256) for r in fresh if r.format in staged}
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
    stale = []
    for old in load_manifest(out_dir):
        if old.name == item.ref.name and old.format not in formats and old.ok and old.weights_sha256 != digest:
            stale.append(
                replace(
                    old,
                    status="failed",
                    error=f"stale: a later export of {', '.join(sorted(formats))} replaced the weights this "
                    f"{old.format} file was built with; export it again (--format all)",
                )
            )
    return stale


def weights_filename(name: str) -> str:
    return f"{name}.weights.pt"


def stage_weights(module: nn.Module, path: Path) -> tuple[str, Path | None]:
    """The sha256 the weights at `path` will have, and the staged file holding them (None when
    `path` already holds exactly these tensors).

    torch.save stamps every file with a random serialization id, so rewriting equal weights would
    change the hash that the model's other records keep: equal weights are not rewritten.
    """
    import torch

    if weights_match(module, path):
        return sha256_file(path), None
    buffer = io.BytesIO()  # torch.save into a file aborts the process on a full disk
    torch.save(module.state_dict(), buffer)
    staged = staged_name(path)
    write_bytes_atomic(staged, buffer.getvalue())
    return sha256_file(staged), staged


def weights_match(module: nn.Module, path: Path) -> bool:
    """Whether `path` already holds exactly this module's tensors (a user's weights can change without
    its spec changing, so a cached user model needs this check too)."""
    import torch

    if not path.is_file():
        return False
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable or foreign: not a match
        return False
    state = module.state_dict()
    return (
        isinstance(saved, dict)
        and saved.keys() == state.keys()
        and all(
            isinstance(saved[k], torch.Tensor) and saved[k].dtype == v.dtype and torch.equal(saved[k], v)
            for k, v in state.items()
        )
    )


def artifact_filename(name: str, fmt: str) -> str:
    return f"{name}.torchscript.pt" if fmt == "torchscript" else f"{name}.onnx"


@dataclass
class ArtifactWritten:
    """What `export_artifact` wrote: the opset really in an ONNX file, and what the exporter said."""

    opset: int | None = None
    warnings: list[str] = field(default_factory=list)


def export_artifact(
    module: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
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
    `example` is one tensor, or a tuple of them for a model with several inputs (batch axis first).
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
    options: ExportOptions,
    stamp: dict[str, str],
    warnings_seen: list[str],
) -> tuple[ExportRecord, Path | None]:
    """Export one artifact to a staging file next to its final name; (record, staged file or None)."""
    name, spec_text = item.ref.name, item.ref.spec_text
    method, input_shape = _expected(item, fmt, options)
    record = ExportRecord(
        name=name,
        spec=spec_text,
        format=fmt,
        method=method,
        status="ok",
        input_shape=input_shape,
        seed=options.seed,
        outputs=item.n_outputs,
        versions=dict(stamp),
        exported_at=datetime.now(UTC).isoformat(timespec="seconds"),
        opset_requested=options.opset if fmt == "onnx" else None,
        input_shapes=[input_shape[:1] + list(s) for s in item.input_shapes] or None,
        dynamic_axes=_expected_axes(item, input_shape),
    )
    if item.ref.user is not None:
        record.import_path, record.object_name = item.ref.user.import_path, item.ref.user.object_name
        record.source_sha256 = item.source_sha256
    final = out_dir / artifact_filename(name, fmt)
    staged = staged_name(final)
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
    if item.source_sha256:
        metadata["poolkit.source_sha256"] = item.source_sha256
    # Batch 2, not 1, for dynamic export: torch.export specialises a dimension of size 1.
    batch = 2 if options.dynamic_batch else options.static_batch_size
    example = (
        example_input(item.input_shape, batch, options.seed)
        if len(item.shapes) == 1
        else tuple(example_input(s, batch, options.seed + i) for i, s in enumerate(item.shapes))
    )
    start = time.perf_counter()
    try:
        written = export_artifact(
            item.module,
            example,
            staged,
            fmt,
            method=options.method,
            exporter=options.exporter,
            opset=options.opset,
            dynamic_batch=options.dynamic_batch,
            n_outputs=item.n_outputs,
            metadata=metadata,
            dynamic_spatial=item.dynamic_spatial,
        )
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
        record.status, record.error = "failed", one_line(exc)
        if fmt == "torchscript" and options.method == "script" and item.ref.user is not None:
            record.error += " (torch.jit.script cannot compile this code: try --method trace)"
        staged.unlink(missing_ok=True)
        record.export_seconds = round(time.perf_counter() - start, 4)
        return record, None
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    warnings_seen.extend(written.warnings)
    record.opset = written.opset
    record.path = final.name
    record.sha256 = sha256_file(staged)
    if fmt == "onnx":  # every byte the artifact loads is hashed, its external data too
        record.external_data = external_hashes(staged)
    record.size_bytes = staged.stat().st_size
    record.export_seconds = round(time.perf_counter() - start, 4)
    return record, staged


def ensure_exported(refs: list[ModelRef], out_dir: Path) -> list[str]:
    """Export (both formats) the models the manifest in `out_dir` has no record of; returns their names.

    A model whose export failed has a record saying so: it is not exported again on every run
    (`poolkit export` retries it), and commands report the failure instead.
    """
    from poolkit.exporter.manifest import load_manifest

    # Only models with no record at all: re-exporting a model that has one (with default options)
    # would replace what the user exported (a static batch, their --weights). A missing format is
    # reported by the command that needs it.
    have = {r.name for r in load_manifest(out_dir)}
    missing = [r for r in refs if r.name not in have]
    if missing:
        export_models(missing, out_dir, ExportOptions())
    return [r.name for r in missing]
