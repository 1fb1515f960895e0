"""`models/manifest.json`: one record per artifact (model name x format), updated atomically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from poolkit.common.errors import DataError
from poolkit.common.files import write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class ExportRecord:
    """What one export produced (or why it failed); the manifest is a list of these."""

    name: str
    spec: str
    format: str  # torchscript | onnx
    method: str  # script | trace | dynamo | legacy
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

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.format)

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.input_shape) and self.input_shape[0] == "batch"

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
        known = {f.name for f in fields(ExportRecord)}
        return [ExportRecord(**{k: v for k, v in row.items() if k in known}) for row in data["artifacts"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"manifest {path} is not a poolkit manifest ({exc}); re-run 'poolkit export'") from None


def save_manifest(models_dir: Path, records: list[ExportRecord]) -> Path:
    rows = sorted(records, key=lambda r: (r.name, r.format))
    data = {"poolkit_manifest": MANIFEST_VERSION, "artifacts": [asdict(r) for r in rows]}
    return write_json_atomic(manifest_path(models_dir), data)


def update_manifest(models_dir: Path, new: list[ExportRecord]) -> Path:
    """Replace the entries for the same (name, format), keep every other one."""
    merged = {r.key: r for r in load_manifest(models_dir)}
    merged.update({r.key: r for r in new})
    return save_manifest(models_dir, list(merged.values()))
