"""Helpers the tests share (fixtures stay in conftest.py): run artifacts, index a manifest, fake measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poolkit.bench.measurement import Measurement
from poolkit.exporter.manifest import ExportRecord, load_manifest
from poolkit.runtimes.base import run_batch
from poolkit.runtimes.registry import open_runtime
from poolkit.services.artifacts import open_artifacts


def run_artifact(models_dir: Path, record: ExportRecord, x: np.ndarray, runtime: str | None = None) -> list[np.ndarray]:
    """Run one artifact on the CPU through the runtime that reads its format (or `runtime`: eager rebuilds)."""
    name = runtime or ("torchscript" if record.format == "torchscript" else "onnxruntime")
    source = (
        open_artifacts(models_dir, [record.name])[0].eager_module()
        if name == "eager"
        else models_dir / str(record.path)
    )
    with open_runtime(name, source, "cpu") as rt:
        return run_batch(rt, x)


def records_by_key(models_dir: Path) -> dict[tuple[str, str], ExportRecord]:
    return {r.key: r for r in load_manifest(models_dir)}


def measurement(samples_ms: list[float], model: str = "relu", runtime: str = "onnxruntime", **fields) -> Measurement:
    """A Measurement with scripted samples: statistics, flags and comparisons are then exact."""
    return Measurement(model, runtime, "cpu", 64, samples_ms=tuple(samples_ms), **fields)


def copy_model(zoo_dir: Path, dest: Path, model: str) -> list[ExportRecord]:
    """Copy one model's artifacts and weights into `dest`; returns its records (to tamper with, then save)."""
    import shutil

    dest.mkdir(exist_ok=True)
    records = [r for r in load_manifest(zoo_dir) if r.name == model]
    for r in records:
        shutil.copy(zoo_dir / str(r.path), dest / str(r.path))
        shutil.copy(zoo_dir / str(r.weights), dest / str(r.weights))
    return records
