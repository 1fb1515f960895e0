"""The newest opset each ONNX exporter can write and ONNX Runtime can run: measured, not assumed.

`onnx.defs.onnx_opset_version()` is the newest opset the installed onnx knows; an exporter or
ONNX Runtime may stop earlier. Each exporter gets a one-layer probe at each opset from the newest
down: the first opset that exports, is really the opset in the file, and runs on ONNX Runtime's
CPU provider is that exporter's newest column.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from poolkit.common.capture import captured_output
from poolkit.exporter.export import export_artifact
from poolkit.exporter.formats.base import ExportRequest
from poolkit.sweep.blame import ort_session


def probe_opset(exporter: str, opset: int, folder: Path) -> bool:
    """Whether a ReLU exports at `opset` with `exporter`, keeps that opset in the file, and runs."""
    import numpy as np
    import onnxruntime as ort
    import torch

    path = folder / f"probe-{exporter}-{opset}.onnx"
    try:
        with captured_output():
            written = export_artifact(
                torch.nn.Sequential(torch.nn.ReLU()),
                torch.rand(2, 3, 4, 4),
                path,
                "onnx",
                ExportRequest(exporter, opset),
            )
            session = ort_session(path, "cpu", True)
            session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 4, 4), np.float32)})
    except (Exception, ort.capi.onnxruntime_pybind11_state.Fail):  # noqa: BLE001 - refusing is the answer
        return False
    return written.opset == opset


def newest_opsets(exports: tuple[str, ...], above: int) -> dict[str, int]:
    """{"onnx-dynamo": 25, ...}: per ONNX export path, the newest opset that works, if above `above`
    (0 where none does)."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    found: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="poolkit-opset-") as tmp:
        for export in exports:
            exporter = export.removeprefix("onnx-")
            found[export] = next((n for n in range(newest, above, -1) if probe_opset(exporter, n, Path(tmp))), 0)
    return found
