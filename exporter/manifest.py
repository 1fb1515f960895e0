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
    # Axes the artifact leaves open, by name: "batch", "height", "width". Older manifests lack it:
    # their batch axis is read from input_shape, and their images are fixed in size.
    dynamic_axes: list[str] = field(default_factory=list)

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
    def dynamic_spatial(self) -> bool:
        """Height and width are open: the artifact takes any image size (channels kept)."""
        return {"height", "width"} <= set(self.dynamic_axes)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input_shape[1:])


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
