"""What an int8 QDQ file should give, from its own scales: the questions verify asks of a quantized artifact.

- `simulated_qdq`: the file run with every graph optimization off, so ONNX Runtime executes each
  QuantizeLinear / DequantizeLinear as written and everything else in float: the quantisation error
  its scales imply, without the int8 kernels (which the normal, optimized session uses).
- `weight_steps`: every quantized weight and bias dequantized against the fp32 file's own: round to
  nearest puts each within half a step (its scale) of the float value; more means a wrong scale.
- `layer_sqnr`: per layer, the signal-to-quantization-noise ratio of the int8 model's activations
  against the fp32 model's (ONNX Runtime's own `qdq_loss_debug`), so a report can name the layer that
  loses most.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.runtimes.onnxruntime import _node_layer
from poolkit.runtimes.ort_session import PROVIDERS, session_options

if TYPE_CHECKING:
    import numpy as np


@dataclass
class WeightSteps:
    """One quantized initializer: its worst distance to the float value, in half-steps (1.0: exact rounding)."""

    name: str
    worst_half_steps: float

    @property
    def ok(self) -> bool:
        return self.worst_half_steps <= 1.0 + 1e-3


@dataclass
class LayerSQNR:
    tensor: str
    layer: str | None  # the torch module the tensor comes from (conv1, linear1, ...), when the file says
    sqnr_db: float  # int8 model's activation against the fp32 model's, over the batches given


def simulated_qdq(path: Path, batch: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = session_options(None)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=[PROVIDERS["cpu"]])
    return list(session.run(None, {session.get_inputs()[0].name: batch}))


def weight_steps(float_path: Path, qdq_path: Path) -> list[WeightSteps]:
    """Every DequantizeLinear of an initializer, checked against the float file's initializer it replaced."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    floats = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(float_path)).graph.initializer}
    qdq = onnx.load(str(qdq_path))
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    out = []
    for node in qdq.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        name = node.input[0].removesuffix("_quantized")
        if name not in floats:
            continue
        q = inits[node.input[0]].astype(np.float64)
        scale = inits[node.input[1]].astype(np.float64)
        zero = inits[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] in inits else 0.0
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if np.ndim(scale) == 1 and q.ndim > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
            zero = np.reshape(zero, shape) if np.ndim(zero) == 1 else zero
        dequantized = (q - zero) * scale
        half = np.maximum(np.abs(scale) / 2, np.finfo(np.float32).tiny)
        worst = float(np.max(np.abs(dequantized - floats[name].astype(np.float64)) / half)) if q.size else 0.0
        out.append(WeightSteps(name, worst))
    return out


def layer_sqnr(float_path: Path, qdq_path: Path, batches: list[np.ndarray]) -> list[LayerSQNR]:
    """Per activation tensor the two files share: SQNR of the int8 run against the fp32 run."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    float_model = onnx.load(str(float_path))
    name = float_model.graph.input[0].name
    layer_of = {out: _node_layer(n) for n in float_model.graph.node for out in n.output}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self._it, None)
            return None if batch is None else {name: batch}

    with tempfile.TemporaryDirectory(prefix="poolkit-sqnr-") as tmp:
        float_aug, qdq_aug = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        modify_model_output_intermediate_tensors(str(float_path), str(float_aug))
        modify_model_output_intermediate_tensors(str(qdq_path), str(qdq_aug))
        matching = create_activation_matching(collect_activations(str(qdq_aug), Reader()),
                                              collect_activations(str(float_aug), Reader()))  # fmt: skip
    errors = compute_activation_error(matching)
    rows = [
        LayerSQNR(tensor, layer_of.get(tensor), float(err["xmodel_err"]))
        for tensor, err in errors.items()
        if tensor != name and "xmodel_err" in err and math.isfinite(float(err["xmodel_err"]))
    ]
    return sorted(rows, key=lambda r: r.sqnr_db)
