"""`models/manifest.json`: one record per artifact (model name x format), updated atomically.

Every change is a read-modify-write under a file lock (`filelock`), so two `poolkit export` runs
into one folder both land; readers need no lock, since the file is replaced by an atomic rename.
Entries are checked when read: a malformed one is a one-line DataError naming it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from poolkit.common.errors import DataError
from poolkit.common.files import inside, read_regular_text, write_json_atomic
from poolkit.common.names import is_safe_name
from poolkit.exporter import transaction
from poolkit.exporter.entries import PRECISIONS, check_entry, check_types
from poolkit.exporter.transaction import JOURNAL_NAME

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
LOCK_NAME = ".manifest.lock"
LOCK_TIMEOUT_S = 600.0  # another export holds the lock only while it renames files and rewrites the manifest
NOT_STORED = {"cached", "raw"}


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
    # A malformed entry read from the file, kept as it was (written back unchanged): never stored itself.
    raw: Any = field(default=None, compare=False, repr=False)
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
    # ONNX external data: location (relative to the folder) -> sha256 of every file the artifact
    # loads besides itself; checked before loading (`external_data.py`). Empty when it has none.
    external_data: dict[str, str] = field(default_factory=dict)

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


class _Held(threading.local):
    """Folders whose lock this thread holds (a nested update in the same thread must not wait on itself)."""

    def __init__(self) -> None:
        self.folders: set[str] = set()


_HELD = _Held()


def manifest_path(models_dir: Path) -> Path:
    return Path(models_dir) / MANIFEST_NAME


def load_manifest(models_dir: Path, *, required: bool = False) -> list[ExportRecord]:
    """Read the manifest; a missing file is empty unless `required`, a broken one is a DataError."""
    path = manifest_path(models_dir)
    if (Path(models_dir) / JOURNAL_NAME).exists() and str(Path(models_dir).resolve()) not in _HELD.folders:
        with manifest_lock(models_dir):  # an export was killed mid-commit: finish it before reading
            pass
    if not path.exists():
        if required:
            raise DataError(f"no manifest at {path}: run 'poolkit export --format all --out {models_dir}' first")
        return []
    try:
        data = json.loads(read_regular_text(path, "manifest"))
        rows = data["artifacts"]
        if not isinstance(rows, list):
            raise TypeError("'artifacts' is not a list")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        raise DataError(f"manifest {path} is not a poolkit manifest ({reason}); re-run 'poolkit export'") from None
    records: list[ExportRecord] = []
    for i, row in enumerate(rows):
        try:
            records.append(_record(row, i, path))
        except DataError as exc:  # one bad entry never locks out the rest of the folder
            records.append(_broken(row, i, str(exc), {r.key for r in records}))
    return records


def _broken(row: Any, index: int, reason: str, taken: set[tuple[str, ...]]) -> ExportRecord:
    """A failed record standing in for a malformed entry: every command reports it as that model's
    failure (with the reason), the others work, and the entry is written back as it was until an
    export of the same model replaces it."""
    given = row.get("name") if isinstance(row, dict) else None
    fmt = row.get("format") if isinstance(row, dict) else None
    name = given if isinstance(given, str) and is_safe_name(given) else f"entry_{index}"
    fmt = fmt if isinstance(fmt, str) and is_safe_name(fmt) and (name, fmt) not in taken else f"entry_{index}"
    return ExportRecord(name, "", fmt, "", "failed", [], error=reason, raw=row)


def _record(row: Any, index: int, path: Path) -> ExportRecord:
    """One manifest entry, checked field by field: a hand-edited or crafted entry is a DataError, not a crash."""

    def bad(why: str) -> DataError:
        return DataError(f"manifest {path}: entry {index} {why}; re-run 'poolkit export'")

    if not isinstance(row, dict):
        raise bad("is not an object")
    known = {f.name for f in fields(ExportRecord)} - NOT_STORED
    values = {k: v for k, v in row.items() if k in known}
    check_types(values, bad)
    try:
        record = ExportRecord(**values)
    except TypeError:
        missing = sorted(f.name for f in fields(ExportRecord)[:6] if f.name not in values)
        raise bad(f"lacks {', '.join(missing) or 'required fields'}") from None
    check_entry(record, path.parent, bad)
    return record


def manifest_data(records: list[ExportRecord]) -> dict[str, Any]:
    """The manifest file's JSON for `records` (a malformed entry as it was read)."""
    rows = sorted(records, key=lambda r: (r.name, r.format, PRECISIONS.index(r.precision)))
    artifacts = [
        r.raw if r.raw is not None else {k: v for k, v in asdict(r).items() if k not in NOT_STORED} for r in rows
    ]
    return {"poolkit_manifest": MANIFEST_VERSION, "artifacts": artifacts}


def save_manifest(models_dir: Path, records: list[ExportRecord]) -> Path:
    return write_json_atomic(manifest_path(models_dir), manifest_data(records))


@contextmanager
def manifest_lock(models_dir: Path) -> Iterator[None]:
    """Hold the models folder's lock: one writer at a time renames artifacts and rewrites the manifest."""
    from filelock import FileLock, Timeout

    lock_path = Path(models_dir) / LOCK_NAME
    key = str(Path(models_dir).resolve())
    if key in _HELD.folders:  # this process holds it already (an update inside an export's commit)
        yield
        return
    try:
        with FileLock(str(lock_path), timeout=LOCK_TIMEOUT_S):
            _HELD.folders.add(key)
            try:
                transaction.recover(Path(models_dir))  # a commit a killed poolkit left half done is finished first
                yield
            finally:
                _HELD.folders.discard(key)
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
    return save_manifest(models_dir, merged_records(models_dir, new))


def merged_records(
    models_dir: Path, new: list[ExportRecord], replacing: dict[str, str] | None = None
) -> list[ExportRecord]:
    """The manifest with `new` merged in: same (name, format) replaced, every other entry kept.

    A failed record never replaces a good one whose files still match their hashes (`replacing`:
    file name -> sha256 of what is about to be renamed over it), so a failed re-export leaves the
    previous artifact usable (the run itself still reports the failure).
    """
    merged = {r.key: r for r in load_manifest(models_dir)}
    for record in new:
        old = merged.get(record.key)
        if record.ok or old is None or not still_valid(models_dir, old, replacing):
            merged[record.key] = record
    return list(merged.values())


def still_valid(models_dir: Path, record: ExportRecord, replacing: dict[str, str] | None = None) -> bool:
    """A good record whose artifact and weights files are there, inside the folder, with the hashes
    recorded (and would still be once the files in `replacing` are put in place)."""
    from poolkit.common.files import sha256_file

    if not record.ok:
        return False
    for name, digest in ((record.path, record.sha256), (record.weights, record.weights_sha256)):
        if not name or not digest:
            return False
        if replacing and name in replacing:
            if replacing[name] != digest:
                return False
            continue
        try:
            file = inside(models_dir, name)
        except DataError:
            return False
        if not file.is_file() or sha256_file(file) != digest:
            return False
    return True
