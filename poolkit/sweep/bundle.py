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
from poolkit.sweep.result import SWEEP_BATCH

if TYPE_CHECKING:
    import numpy as np

    from poolkit.sweep.result import CellResult

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

_EXPORT = {
    "dynamo": """try:
    torch.onnx.export(model, (torch.from_numpy(x[:2]),), str(here / "model.onnx"), dynamo=True, external_data=False,
                      dynamic_shapes=({{0: torch.export.Dim("batch")}},), input_names=["input"],
                      output_names={outputs}, opset_version={opset})
    onnx.checker.check_model(onnx.load(str(here / "model.onnx")), full_check=True)
except Exception as exc:
    sys.exit(f"REPRODUCED: export fails: {{type(exc).__name__}}: {{str(exc).strip().splitlines()[0][:300]}}")
""",
    "legacy": """try:
    torch.onnx.export(model, (torch.from_numpy(x[:2]),), str(here / "model.onnx"), dynamo=False,
                      dynamic_axes={{n: {{0: "batch"}} for n in ["input", *{outputs}]}}, input_names=["input"],
                      output_names={outputs}, opset_version={opset})
    onnx.checker.check_model(onnx.load(str(here / "model.onnx")), full_check=True)
except Exception as exc:
    sys.exit(f"REPRODUCED: export fails: {{type(exc).__name__}}: {{str(exc).strip().splitlines()[0][:300]}}")
""",
}

_RUN_ONNX = """options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
try:
    session = onnxruntime.InferenceSession(str(here / "model.onnx"), options, providers=["{provider}"])
    actual = session.run(None, {{session.get_inputs()[0].name: x}})
except Exception as exc:
    sys.exit(f"REPRODUCED: onnxruntime fails: {{str(exc).strip().splitlines()[0][:300]}}")
graph = onnx.load(str(here / "model.onnx")).graph
declared = [[d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in graph.output]
"""

_RUN_TS = """example = torch.from_numpy(x[:2])
compiled = torch.jit.script(model) if "{how}" == "script" else torch.jit.trace(model, example, check_trace=False)
try:
    out = torch.jit.freeze(compiled.eval())(torch.from_numpy(x))
except Exception as exc:
    sys.exit(f"REPRODUCED: TorchScript fails: {{str(exc).strip().splitlines()[0][:300]}}")
actual = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
declared = [[] for _ in actual]
"""

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
    """The standalone repro for one failing cell."""
    from poolkit.exporter.onnx_export import output_names
    from poolkit.exporter.spec import parse_spec

    cell = result.cell
    spec = parse_spec(cell.spec)
    layers = ", ".join(f"torch.nn.{layer.torch_call()}" for layer in spec.layers)
    fmt, how = cell.export.split("-", 1)
    path = f"{cell.export}" + (f" opset {cell.opset}, onnxruntime {cell.device}" if fmt == "onnx" else "")
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
    if fmt == "torchscript":
        return head + _RUN_TS.format(how=how) + _COMPARE
    n_out = 2 if any(k == "return_indices" and v for layer in spec.layers for k, v in layer.args) else 1
    export = (
        _EXPORT[how].format(outputs=output_names(n_out), opset=cell.opset) if result.outcome == "export-failed" else ""
    )
    provider = "CUDAExecutionProvider" if cell.device == "cuda" else "CPUExecutionProvider"
    return head + export + _RUN_ONNX.format(provider=provider) + _COMPARE


def write_bundle(
    root: Path, result: CellResult, artifact: Path | None, x: np.ndarray, expected: list[np.ndarray]
) -> Path:
    """Write (or overwrite) the bundle of one failing cell; returns its folder."""
    from onnx import numpy_helper

    cell = result.cell
    folder = Path(root) / f"{cell.group}-{cell.id}"
    if folder.exists():
        shutil.rmtree(folder)
    data = folder / "test_data_set_0"
    data.mkdir(parents=True)
    (data / "input_0.pb").write_bytes(numpy_helper.from_array(x, "input").SerializeToString())
    for i, out in enumerate(expected):
        (data / f"output_{i}.pb").write_bytes(numpy_helper.from_array(out, f"output_{i}").SerializeToString())
    if artifact is not None and artifact.suffix == ".onnx":
        shutil.copyfile(artifact, folder / "model.onnx")
    (folder / "repro.py").write_text(repro_script(result), encoding="utf-8")
    info = {k: v for k, v in result.to_json().items() if k not in ("bundle", "seconds", "versions")}
    (folder / "cell.json").write_text(json.dumps(to_plain(info), indent=2) + "\n", encoding="utf-8")
    return folder
