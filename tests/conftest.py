"""Shared fixtures: the zoo exported once per session, and helpers to run artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exporter.export import ExportOptions, export_models
from exporter.manifest import ExportRecord, load_manifest
from exporter.zoo import resolve_models
from runtimes.base import Artifact, open_runtime, run_batch


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every zoo model exported to TorchScript and ONNX (dynamo), as `poolkit export --format all` does."""
    out = tmp_path_factory.mktemp("zoo_models")
    run = export_models(resolve_models(None), out, ExportOptions())
    assert not run.failed, [r.error for r in run.failed]
    return out


def run_artifact(models_dir: Path, record: ExportRecord, x: np.ndarray, runtime: str | None = None) -> list[np.ndarray]:
    """Run one artifact on the CPU through the runtime that reads its format."""
    name = runtime or ("torchscript" if record.format == "torchscript" else "onnxruntime")
    rt = open_runtime(name, Artifact(record, models_dir), "cpu")
    try:
        return run_batch(rt, x)
    finally:
        rt.close()


def records_by_key(models_dir: Path) -> dict[tuple[str, str], ExportRecord]:
    return {r.key: r for r in load_manifest(models_dir)}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` need torch CUDA and ONNX Runtime's CUDA provider; skip with the reason otherwise."""
    cuda_items = [item for item in items if "cuda" in item.keywords]
    if not cuda_items:
        return
    from runtimes.base import cuda_problem

    problem = cuda_problem(["eager", "onnxruntime"])
    if problem:
        for item in cuda_items:
            item.add_marker(pytest.mark.skip(reason=f"no working CUDA here: {problem[:160]}"))
