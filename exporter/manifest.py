"""`models/manifest.json`: one record per artifact (model name x format), updated atomically.

Every change is a read-modify-write under a file lock (`filelock`), so two `poolkit export` runs
into one folder both land; readers need no lock, since the file is replaced by an atomic rename.
Entries are checked when read: a malformed one is a one-line DataError naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from poolkit.common.errors import DataError
from poolkit.common.files import inside, write_json_atomic
from poolkit.exporter.dtypes import DTYPES

PRECISIONS = ("fp32", "fp16", "bf16", "int8")  # exporter.precision's list; here so the manifest needs no onnx

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
LOCK_NAME = ".manifest.lock"
LOCK_TIMEOUT_S = 600.0  # another export holds the lock only while it renames files and rewrites the manifest
STATUSES = ("ok", "failed")


@dataclass
class ExportRecord:
    """What one export produced (or why it failed); the manifest is a list of these."""

    name: str
    spec: str
    format: str  # a name in exporter/formats/registry.py: torchscript | onnx | pt2 | aoti
    method: str  # script | trace | dynamo | legacy | export | aoti
    status: str  # ok | failed
    input_shape: list[Any]  # with the batch axis first: "batch" when dynamic
    path: str | None = None  # relative to the manifest's folder
    opset: int | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    export_seconds: float = 0.0
    weights: str | None = None
    weights_sha256: str | None = None
    seed: int = 0
    outputs: int = 1
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    exported_at: str = ""
    # A user's own model (`--model PATH.py:NAME`): where its code is, the sha256 of that file at
    # export, and the class or function; eager is rebuilt from these plus `weights`.
    import_path: str | None = None  # absolute path of the .py file, or a dotted module name
    object_name: str | None = None
    source_sha256: str | None = None
    input_shapes: list[list[Any]] | None = None  # every input, batch axis first, when there are several
    opset_requested: int | None = None  # what --opset asked for (None: the exporter's default)
    cached: bool = field(default=False, compare=False)  # this run found it current; never stored
    # Axes the artifact leaves open, by name: "batch", "channels" (torch.export formats), "height", "width". Older manifests lack it:
    # their batch axis is read from input_shape, and their images are fixed in size.
    dynamic_axes: list[str] = field(default_factory=list)
    # torch.export formats: how each open axis was declared and the range torch.export derived
    # ("height": "Dim.AUTO [2, inf]" where an explicit Dim was refused).
    dynamic_dims: dict[str, str] = field(default_factory=dict)
    compile_seconds: float | None = None  # AOTInductor: the compile, part of export_seconds
    dtype: str = "float32"  # what the model's parameters hold (spec dtype= or --dtype); its input stays float32
    # A precision variant of the format (export --precision): fp32 is the artifact itself; fp16, bf16
    # and int8 files sit beside it, made from the same weights. int8: how it was quantized.
    precision: str = "fp32"
    quantization: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> tuple[str, str] | tuple[str, str, str]:
        """One record per model, format and precision (an fp32 record keeps its old two-part key)."""
        return (self.name, self.format) if self.precision == "fp32" else (self.name, self.format, self.precision)

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.input_shape) and self.input_shape[0] == "batch"

    @property
    def dynamic_spatial(self) -> bool:
        """Height and width are open: the artifact takes any image size (channels kept)."""
        return {"height", "width"} <= set(self.dynamic_axes)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The first (usually only) input's shape, without the batch axis."""
        return tuple(int(d) for d in self.input_shape[1:])

    @property
    def sample_shapes(self) -> list[tuple[int, ...]]:
        """Every input's shape, without the batch axis."""
        if not self.input_shapes:
            return [self.sample_shape]
        return [tuple(int(d) for d in shape[1:]) for shape in self.input_shapes]

    @property
    def is_user_model(self) -> bool:
        return bool(self.import_path)


def manifest_path(models_dir: Path) -> Path:
    return Path(models_dir) / MANIFEST_NAME


def load_manifest(models_dir: Path, *, required: bool = False) -> list[ExportRecord]:
    """Read the manifest; a missing file is empty unless `required`, a broken one is a DataError."""
    path = manifest_path(models_dir)
    if not path.exists():
        if required:
            raise DataError(f"no manifest at {path}: run 'poolkit export --format all --out {models_dir}' first")
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["artifacts"]
        if not isinstance(rows, list):
            raise TypeError("'artifacts' is not a list")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        raise DataError(f"manifest {path} is not a poolkit manifest ({reason}); re-run 'poolkit export'") from None
    return [_record(row, i, path) for i, row in enumerate(rows)]


_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "spec": (str,),
    "format": (str,),
    "method": (str,),
    "status": (str,),
    "input_shape": (list,),
    "path": (str, type(None)),
    "opset": (int, type(None)),
    "sha256": (str, type(None)),
    "size_bytes": (int, type(None)),
    "export_seconds": (int, float),
    "weights": (str, type(None)),
    "weights_sha256": (str, type(None)),
    "seed": (int,),
    "outputs": (int,),
    "versions": (dict,),
    "error": (str, type(None)),
    "exported_at": (str,),
    "opset_requested": (int, type(None)),
    "import_path": (str, type(None)),
    "object_name": (str, type(None)),
    "source_sha256": (str, type(None)),
    "input_shapes": (list, type(None)),
    "dynamic_axes": (list,),
    "dynamic_dims": (dict,),
    "compile_seconds": (int, float, type(None)),
    "dtype": (str,),
    "precision": (str,),
    "quantization": (dict, type(None)),
}
DYNAMIC_AXES = ("batch", "channels", "height", "width")


def _record(row: Any, index: int, path: Path) -> ExportRecord:
    """One manifest entry, checked field by field: a hand-edited or crafted entry is a DataError, not a crash."""

    def bad(why: str) -> DataError:
        return DataError(f"manifest {path}: entry {index} {why}; re-run 'poolkit export'")

    if not isinstance(row, dict):
        raise bad("is not an object")
    known = {f.name for f in fields(ExportRecord)} - {"cached"}
    values = {k: v for k, v in row.items() if k in known}
    for key, types in _TYPES.items():
        if key in values and (not isinstance(values[key], types) or isinstance(values[key], bool)):
            raise bad(f"has a bad '{key}' ({type(values[key]).__name__})")
    try:
        record = ExportRecord(**values)
    except TypeError:
        missing = sorted(f.name for f in fields(ExportRecord)[:6] if f.name not in values)
        raise bad(f"lacks {', '.join(missing) or 'required fields'}") from None
    for key in ("name", "spec", "format", "method", "path", "weights", "sha256", "weights_sha256", "import_path",
                "object_name", "source_sha256"):  # fmt: skip
        value = getattr(record, key)
        if isinstance(value, str) and not value.isprintable():
            raise bad(f"has control characters in '{key}'")  # they would reach the terminal raw
    if record.error is not None and not record.error.isprintable():
        record.error = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in record.error)
    if record.status not in STATUSES:
        raise bad(f"has status '{record.status}' (ok or failed)")
    for shape in [record.input_shape, *(record.input_shapes or [])]:
        if not isinstance(shape, list) or not shape or not _dims_ok(shape[1:]) or not _batch_ok(shape[0]):
            raise bad(f"has a bad input shape {shape!r}")
    if record.precision not in PRECISIONS:
        raise bad(f"has precision {record.precision!r} (one of {', '.join(PRECISIONS)})")
    if record.dtype not in DTYPES:
        raise bad(f"has dtype {record.dtype!r} (one of {', '.join(DTYPES)})")
    if not all(isinstance(a, str) and a in DYNAMIC_AXES for a in record.dynamic_axes):
        raise bad(f"has bad dynamic_axes {record.dynamic_axes!r} (of {', '.join(DYNAMIC_AXES)})")
    if not all(k in DYNAMIC_AXES and isinstance(v, str) and v.isprintable() for k, v in record.dynamic_dims.items()):
        raise bad("has bad dynamic_dims (axis name -> text)")
    return record


def _dims_ok(dims: list[Any]) -> bool:
    return all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)


def _batch_ok(axis: Any) -> bool:
    return axis == "batch" or _dims_ok([axis])


def save_manifest(models_dir: Path, records: list[ExportRecord]) -> Path:
    rows = sorted(records, key=lambda r: (r.name, r.format, PRECISIONS.index(r.precision)))
    artifacts = [{k: v for k, v in asdict(r).items() if k != "cached"} for r in rows]
    data = {"poolkit_manifest": MANIFEST_VERSION, "artifacts": artifacts}
    return write_json_atomic(manifest_path(models_dir), data)


@contextmanager
def manifest_lock(models_dir: Path) -> Iterator[None]:
    """Hold the models folder's lock: one writer at a time renames artifacts and rewrites the manifest."""
    from filelock import FileLock, Timeout

    lock_path = Path(models_dir) / LOCK_NAME
    try:
        with FileLock(str(lock_path), timeout=LOCK_TIMEOUT_S):
            yield
    except Timeout:
        raise DataError(
            f"another poolkit has held {lock_path} for {LOCK_TIMEOUT_S:.0f} s; if none is running, delete the file"
        ) from None


def update_manifest(models_dir: Path, new: list[ExportRecord], *, locked: bool = False) -> Path:
    """Replace the entries for the same (name, format), keep every other one (under the lock).

    A failed record never replaces a good one whose file still matches its hash: a failed
    re-export leaves the previous artifact usable (the run itself still reports the failure).
    """
    if not locked:
        with manifest_lock(models_dir):
            return update_manifest(models_dir, new, locked=True)
    merged = {r.key: r for r in load_manifest(models_dir)}
    for record in new:
        old = merged.get(record.key)
        if record.ok or old is None or not still_valid(models_dir, old):
            merged[record.key] = record
    return save_manifest(models_dir, list(merged.values()))


def still_valid(models_dir: Path, record: ExportRecord) -> bool:
    """A good record whose artifact and weights files are there, inside the folder, with the hashes recorded."""
    from poolkit.common.files import sha256_file

    if not record.ok:
        return False
    for name, digest in ((record.path, record.sha256), (record.weights, record.weights_sha256)):
        if not name or not digest:
            return False
        try:
            file = inside(models_dir, name)
        except DataError:
            return False
        if not file.is_file() or sha256_file(file) != digest:
            return False
    return True
