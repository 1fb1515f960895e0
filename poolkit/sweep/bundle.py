"""Failure bundles: what a failing sweep cell leaves behind for an upstream bug report.

A bundle is a folder in the ONNX backend-test layout that `onnx_test_runner` and Polygraphy
(`--load-inputs`) read: `model.onnx`, `test_data_set_0/input_0.pb` and `output_N.pb` holding
PyTorch's expected outputs (TensorProto). Next to them, `repro.py`: a short standalone script that
imports only torch, onnx and onnxruntime, rebuilds the layer (seed 0, as poolkit does), prints the
versions and the mismatch, and exits 1 when the failure reproduces.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from poolkit.common.files import to_plain
from poolkit.exporter.formats.registry import sweep_path
from poolkit.exporter.spec import parse_spec
from poolkit.sweep.result import SWEEP_BATCH, CellResult

if TYPE_CHECKING:
    import numpy as np

_HEAD = '''"""poolkit sweep cell {id}: {call} on input {shape}, {path}.

poolkit recorded: {outcome} (blame: {blame}): {reason}
Standalone: only torch, onnx and onnxruntime. Exit status 1 when the failure reproduces."""
import pathlib
import sys

import onnx
import onnxruntime
import torch
from onnx import numpy_helper

here = pathlib.Path(__file__).resolve().parent
print(f"torch {{torch.__version__}}, onnx {{onnx.__version__}}, onnxruntime {{onnxruntime.__version__}}")
x = numpy_helper.to_array(onnx.load_tensor(str(here / "test_data_set_0" / "input_0.pb"))).copy()
torch.manual_seed(0)  # poolkit builds the layer right after seeding 0: same weights
model = torch.nn.Sequential({layers}).eval()
with torch.no_grad():
    out = model(torch.from_numpy(x))
expected = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
'''

_COMPARE = """if len(actual) != len(expected):
    sys.exit(f"REPRODUCED: {len(actual)} outputs, torch gives {len(expected)}")
for i, (e, a) in enumerate(zip(expected, actual)):
    if e.shape != a.shape:
        sys.exit(f"REPRODUCED: output {i}: shape {a.shape}, torch gives {e.shape}")
    diff = abs(a.astype("float64") - e)
    if (diff > 1e-5 + 1e-5 * abs(e)).any() or a.dtype != e.dtype:
        sys.exit(f"REPRODUCED: output {i}: max abs difference {diff.max():.3g}, dtype {a.dtype} (torch {e.dtype})")
    if any(isinstance(d, int) and d and d != s for d, s in zip(declared[i], a.shape)):
        sys.exit(f"REPRODUCED: output {i}: the file declares shape {declared[i]}, the runtime gives {list(a.shape)}")
print("not reproduced: the artifact matches torch")
"""


def repro_script(result: CellResult) -> str:
    """The standalone repro for one failing cell: the layer rebuilt, then the format's own snippet."""
    cell = result.cell
    spec = parse_spec(cell.spec)
    layers = ", ".join(f"torch.nn.{layer.torch_call()}" for layer in spec.layers)
    fmt, how = sweep_path(cell.export)
    path = f"{cell.export}" + (f" opset {cell.opset}, onnxruntime {cell.device}" if fmt.uses_opset else "")
    head = _HEAD.format(
        id=cell.id,
        call=spec.torch_calls(),
        shape="x".join(map(str, (SWEEP_BATCH, *cell.sample_shape))),
        path=path,
        outcome=result.outcome,
        blame=result.blame or "-",
        reason=(result.reason or "").replace('"""', "'''").replace("\\", "/")[:400],
        layers=layers,
    )
    n_out = 2 if any(k == "return_indices" and v for layer in spec.layers for k, v in layer.args) else 1
    provider = "CUDAExecutionProvider" if cell.device == "cuda" else "CPUExecutionProvider"
    run = fmt.repro(
        how.method,
        provider=provider,
        export_failed=result.outcome == "export-failed",
        n_outputs=n_out,
        opset=cell.opset,
    )
    return head + run + _COMPARE


def write_bundle(
    root: Path, result: CellResult, artifact: Path | None, x: np.ndarray, expected: list[np.ndarray]
) -> Path:
    """Write (or overwrite) the bundle of one failing cell; returns its folder."""
    from onnx import numpy_helper  # lazily: onnx costs a second to import, and only failing cells need it

    cell = result.cell
    folder = Path(root) / f"{cell.group}-{cell.id}"
    if folder.exists():
        shutil.rmtree(folder)
    data = folder / "test_data_set_0"
    data.mkdir(parents=True)
    (data / "input_0.pb").write_bytes(numpy_helper.from_array(x, "input").SerializeToString())
    for i, out in enumerate(expected):
        (data / f"output_{i}.pb").write_bytes(numpy_helper.from_array(out, f"output_{i}").SerializeToString())
    if artifact is not None and sweep_path(cell.export)[0].onnx_graph:
        shutil.copyfile(artifact, folder / "model.onnx")
    (folder / "repro.py").write_text(repro_script(result), encoding="utf-8")
    info = {k: v for k, v in result.to_json().items() if k not in ("bundle", "seconds", "versions")}
    (folder / "cell.json").write_text(json.dumps(to_plain(info), indent=2) + "\n", encoding="utf-8")
    return folder
