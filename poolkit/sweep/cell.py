"""One cell of `poolkit sweep`: build, export, run, compare with eager, and judge what went wrong.

Outcomes: ok, invalid (PyTorch rejects the layer), export-failed, runtime-failed, shape-mismatch,
value-mismatch, declared-shape-mismatch (the numbers match but the ONNX file declares an output
shape the runtime does not produce), and, from the pool, timeout and crashed. Every failure of an
ONNX file is also given a blame (see `sweep_blame`), and, when asked, a bundle upstream can run.
Nothing here knows which cells fail: every verdict comes from running them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from poolkit.common.errors import one_line
from poolkit.exporter.build import build_model
from poolkit.exporter.export import export_artifact
from poolkit.exporter.formats.base import ExportRequest
from poolkit.exporter.formats.registry import sweep_path
from poolkit.exporter.models import example_input
from poolkit.exporter.spec import parse_spec
from poolkit.runtimes.base import run_batch
from poolkit.runtimes.registry import open_runtime
from poolkit.services.comparator import Accumulator, fold_batch, mismatch_reason
from poolkit.sweep.blame import blame_cell, declared_mismatch, exact_integer_problems, ort_shape_warnings
from poolkit.sweep.bundle import write_bundle
from poolkit.sweep.grid import Cell
from poolkit.sweep.result import SWEEP_ATOL, SWEEP_BATCH, SWEEP_RTOL, CellResult


def run_cell(cell: Cell, bundles: str | None = None) -> CellResult:
    """Run one cell in this process. Never raises: every problem is an outcome with its reason.

    With `bundles` (a folder), a failing cell writes its bundle under it.
    """
    start = time.perf_counter()
    result = _run_cell(cell, Path(bundles) if bundles else None)
    result.seconds = round(time.perf_counter() - start, 3)
    return result


def _run_cell(cell: Cell, bundles: Path | None) -> CellResult:
    shape = cell.sample_shape
    try:
        model = build_model(parse_spec(cell.spec), shape)
    except Exception as exc:  # noqa: BLE001 - PyTorch refusing the combination is data, not a crash
        return CellResult(cell, "invalid", one_line(exc).split(": ", 1)[-1])
    x = np.random.default_rng(0).random((SWEEP_BATCH, *shape), dtype=np.float32)
    with open_runtime("eager", model, "cpu") as eager:
        expected = run_batch(eager, x)

    with tempfile.TemporaryDirectory(prefix="poolkit-sweep-") as tmp:
        fmt, how = sweep_path(cell.export)
        path = Path(tmp) / f"model{fmt.suffix}"
        actual: list[np.ndarray] | None = None
        spatial = fmt.sweep_dynamic_shapes and cell.dims == 2
        metadata = {"poolkit.spec": cell.spec}
        request = ExportRequest(
            how.method, cell.opset, dynamic_spatial=spatial, n_outputs=len(expected), metadata=metadata
        )
        try:
            written = export_artifact(model, example_input(shape, 2, 0), path, fmt.name, request)
        except Exception as exc:  # noqa: BLE001
            result = CellResult(cell, "export-failed", one_line(exc), blame="exporter")
        else:
            try:
                with open_runtime(cell.runtime, path, cell.device, threads=1) as runtime:
                    actual = run_batch(runtime, x)
            except Exception as exc:  # noqa: BLE001
                result = CellResult(cell, "runtime-failed", one_line(exc))
            else:
                result = judge(cell, x, expected, actual, path if fmt.onnx_graph else None)
            result.opset_used = written.opset
            result.export_dims = written.dims or None
        if result.failed and result.blame is None:
            if fmt.onnx_graph:
                result.blame, result.votes = blame_cell(path, cell.device, x, expected, actual, result.outcome)
            else:
                result.blame = "unclear"  # no ONNX file: no second opinion to ask
                result.votes = {"note": f"{fmt.name} cells have no reference to vote"}
        if result.failed and bundles is not None:
            folder = write_bundle(bundles, result, path if path.exists() else None, x, expected)
            result.bundle = str(folder)
    return result


def judge(
    cell: Cell, x: np.ndarray, expected: list[np.ndarray], actual: list[np.ndarray], onnx_path: Path | None
) -> CellResult:
    """Compare the artifact's outputs with eager: shapes, values (integer outputs bit-exact), then
    the shapes the ONNX file declares."""
    accumulators = [Accumulator(SWEEP_ATOL, SWEEP_RTOL)]
    structure = fold_batch(expected, actual, accumulators)
    if structure:
        return CellResult(cell, "shape-mismatch", structure)
    results = [acc.result for acc in accumulators]
    worst = max(c.max_abs for c in results)
    if any(c.shape_mismatch for c in results):
        return CellResult(cell, "shape-mismatch", mismatch_reason(results)[1])
    integer = exact_integer_problems(expected, actual)
    if not all(results) or integer:
        reason = mismatch_reason(results)[1] if not all(results) else (integer or "")
        if integer and not all(results) and integer not in reason:
            reason = f"{reason}; {integer}"
        return CellResult(cell, "value-mismatch", reason, worst)
    declared = declared_mismatch(onnx_path, actual) if onnx_path is not None else None
    if declared and onnx_path is not None:
        warnings = ort_shape_warnings(onnx_path, cell.device, x)
        reason = declared + (f"; onnxruntime says: {warnings}" if warnings else "")
        return CellResult(cell, "declared-shape-mismatch", reason, worst)
    return CellResult(cell, "ok", None, worst)
