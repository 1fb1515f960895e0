"""sweep --scheduler: a real `dask scheduler` and `dask worker` on 127.0.0.1 give the local pool's matrix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.sweep.grid import Cell, build_grid
from poolkit.sweep.journal import Journal
from poolkit.sweep.run import run_sweep
from tests.sweep_helpers import hang_crash_or_pass

pytest.importorskip("distributed")
runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and one worker (two single-thread processes) on 127.0.0.1, as the README says."""
    folder = tmp_path_factory.mktemp("dask")
    file = folder / "scheduler.json"
    # `python -m dask`, not the `dask` script: the script's shebang may name another environment's
    # Python (a copied virtualenv), whose poolkit is not this one.
    dask = [sys.executable, "-m", "dask"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the workers import tests.sweep_helpers too
    common = {"cwd": ROOT, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [
        subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
            **common,  # type: ignore[call-overload]
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        procs.append(
            subprocess.Popen(
                [*dask, "worker", address, "--nthreads", "1", "--nworkers", "2", "--no-dashboard"],
                **common,  # type: ignore[call-overload]
            )
        )
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_dask_cluster_gives_the_same_matrix_as_the_local_pool(scheduler: str, tmp_path: Path) -> None:
    args = ["sweep", "--layer", "adaptive", "--exporters", "onnx-legacy", "--opsets", "17", "--input-size", "8x8"]
    local = runner.invoke(app, [*args, "--out", str(tmp_path / "local"), "--jobs", "2"])
    assert local.exit_code == 0, local.output
    remote = runner.invoke(app, [*args, "--out", str(tmp_path / "dask"), "--scheduler", scheduler])
    assert remote.exit_code == 0, remote.output

    def matrix(stem: str) -> list[tuple[str, str, str | None, str | None]]:
        data = json.loads((tmp_path / f"{stem}.json").read_text())
        return [(c["id"], c["outcome"], c["reason"], c["blame"]) for c in data["cells"]]

    assert matrix("dask") == matrix("local")
    cells = build_grid(("adaptive",), ("onnx-legacy",), (17,), ((8, 8),))
    assert len(matrix("local")) == len(cells) and {m[1] for m in matrix("local")} == {"ok", "export-failed"}
    data = json.loads((tmp_path / "dask.json").read_text())
    assert data["settings"]["scheduler"] == scheduler
    assert all((tmp_path / c["bundle"] / "repro.py").exists() for c in data["cells"] if c["outcome"] != "ok")
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "dask"), "--scheduler", scheduler])
    assert again.exit_code == 0 and f"resumed: {len(cells)} of {len(cells)} cells" in again.stderr


def test_dask_cells_keep_timeouts_and_crash_isolation(scheduler: str, tmp_path: Path) -> None:
    cells = [
        Cell("activation", s, 8, 8, "torchscript-script", None, "torchscript") for s in ("tanh", "sigmoid", "relu")
    ]
    journal = Journal(tmp_path / "j.jsonl")
    results, _ = run_sweep(cells, journal, 1, 4, cell_fn=hang_crash_or_pass, scheduler=scheduler)
    outcome = {r.cell.spec: (r.outcome, r.reason) for r in results}
    assert outcome == {
        "tanh": ("timeout", "no answer within 4 s"),
        "sigmoid": ("crashed", "worker died (exit code 3)"),
        "relu": ("ok", "ran"),
    }
    assert len(journal.read()) == 3


def test_an_unreachable_scheduler_is_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["sweep", "--layer", "activation", "--exporters", "torchscript-trace", "--out", str(tmp_path / "x")]
        + ["--scheduler", "tcp://127.0.0.1:9"],
    )
    assert result.exit_code == 2 and result.stderr.startswith(
        "error: cannot reach the Dask scheduler at tcp://127.0.0.1:9"
    )
    both = runner.invoke(
        app, ["sweep", "--scheduler", "tcp://127.0.0.1:9", "--jobs", "2", "--out", str(tmp_path / "x")]
    )
    assert both.exit_code == 2 and "--jobs sets local workers; with --scheduler" in both.stderr
