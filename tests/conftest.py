"""Shared fixtures: the zoo exported once per session; CUDA-marked tests skip with the reason."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolkit.exporter.export import ExportOptions, export_models
from poolkit.exporter.zoo import resolve_models

CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def checkout_results_untouched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The committed results/ as they were before the session, put back after it: a CLI test that
    leaves `--results`/`--out` at their defaults writes there, and those files were committed by
    mistake more than once."""
    results = CHECKOUT / "results"
    if not results.is_dir():
        yield
        return
    saved = tmp_path_factory.mktemp("results_before") / "results"
    shutil.copytree(results, saved, symlinks=True)
    yield
    shutil.rmtree(results, ignore_errors=True)
    shutil.copytree(saved, results, symlinks=True)


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every zoo model exported to TorchScript, ONNX (dynamo) and .pt2, as `poolkit export --format all` does."""
    out = tmp_path_factory.mktemp("zoo_models")
    run = export_models(resolve_models(None), out, ExportOptions())
    assert not run.failed, [r.error for r in run.failed]
    return out


@pytest.fixture(scope="module")
def relu_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """relu exported as `poolkit export` does by default (one folder per test module)."""
    out = tmp_path_factory.mktemp("relu_models")
    assert not export_models(resolve_models(["relu"]), out, ExportOptions()).failed
    return out


@pytest.fixture
def models(relu_models: Path, tmp_path: Path) -> Path:
    """A private copy of the relu folder, to tamper with."""
    folder = tmp_path / "models"
    shutil.copytree(relu_models, folder)
    return folder


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` need torch CUDA and ONNX Runtime's CUDA provider; skip with the reason otherwise."""
    cuda_items = [item for item in items if "cuda" in item.keywords]
    if not cuda_items:
        return
    from poolkit.runtimes.registry import cuda_problem

    problem = cuda_problem(["eager", "onnxruntime"])
    if problem:
        for item in cuda_items:
            item.add_marker(pytest.mark.skip(reason=f"no working CUDA here: {problem[:160]}"))
