"""Shared fixtures: the zoo exported once per session; CUDA-marked tests skip with the reason.

Isolation: the suite's runs go to a temporary results root ($POOLKIT_RESULTS, set before any test)
and it works in a temporary folder (relative defaults like `--models models` land there); a test
that still writes into the checkout's own results/, models/ or logs/ fails, naming what it wrote.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolkit.common.runs import RESULTS_ENV
from poolkit.exporter.export import ExportOptions, export_models
from poolkit.exporter.zoo import resolve_models

CHECKOUT = Path(__file__).resolve().parent.parent
GUARDED = ("results", "models", "logs")  # the checkout's folders the commands write by default


@pytest.fixture(scope="session", autouse=True)
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every run a test makes goes to a temporary results root, never the checkout's results/; and
    the suite works in a temporary folder, so an option left at its default (`--models models`,
    `--logdir logs`) names a folder there, never the checkout's."""
    root = tmp_path_factory.mktemp("results_root")
    work = tmp_path_factory.mktemp("cwd")
    saved, cwd = {k: os.environ.get(k) for k in (RESULTS_ENV, "PYTHONPATH")}, os.getcwd()
    os.environ[RESULTS_ENV] = str(root)
    # worker processes (python -m ...) import `tests.*` helpers: from the checkout, not the working folder
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(CHECKOUT), saved["PYTHONPATH"]) if p)
    os.chdir(work)
    yield root
    os.chdir(cwd)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def snapshot(folders: tuple[str, ...] = GUARDED, base: Path = CHECKOUT) -> dict[str, tuple[int, int]]:
    """Every file under the checkout's guarded folders: its size and modification time."""
    found = {}
    for name in folders:
        for dirpath, _, files in os.walk(base / name):
            for f in files:
                path = Path(dirpath) / f
                try:
                    st = path.lstat()
                except OSError:
                    continue
                found[str(path.relative_to(base))] = (st.st_size, st.st_mtime_ns)
    return found


@pytest.fixture(autouse=True)
def checkout_untouched(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that wrote into the checkout's results/, models/ or logs/ (files added, changed or removed)."""
    before = snapshot()
    yield
    after = snapshot()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        pytest.fail(f"{request.node.nodeid} wrote into the checkout: {shown} (use tmp_path)", pytrace=False)


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
