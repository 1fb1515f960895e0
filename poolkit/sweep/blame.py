"""Second opinions on a failing ONNX cell, and the checks only an ONNX file allows.

Blame asks two more engines to run the same file on the same input:
`onnx.reference.ReferenceEvaluator` (pure Python from the ONNX spec, independent of ONNX Runtime)
and ONNX Runtime with every graph optimisation off (`ORT_DISABLE_ALL`). The label follows from who
agrees with whom:

- optimiser: unoptimised ONNX Runtime agrees with PyTorch, the optimised one does not;
- runtime: the reference agrees with PyTorch, ONNX Runtime does not;
- exporter: the reference agrees with ONNX Runtime, and both differ from PyTorch (the file says
  something else than the module did);
- unclear: anything else (the reference failed too, or three different answers).

The reference has bugs of its own in pooling (onnx/onnx#4849, #6650): it is one vote, not ground
truth, and the report says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poolkit.common.capture import captured_output
from poolkit.common.errors import one_line
from poolkit.runtimes.ort_session import create_session, session_options
from poolkit.services.comparator import DEFAULT_ATOL, DEFAULT_RTOL, compare

BLAMES = ("exporter", "runtime", "optimiser", "unclear")
# onnx and onnxruntime are imported inside the functions that use them, on purpose: `cell.py` imports
# this module, and every sweep worker process imports the sweep package on start (4 s more here).


def agree(
    a: list[np.ndarray] | None, b: list[np.ndarray] | None, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL
) -> bool:
    """Same number of outputs, same shapes, values within the sweep's tolerance by the comparator's rule
    (`a` the reference; NaN never agrees), integers (MaxPool indices) exactly."""
    if a is None or b is None or len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            return False
        if x.dtype.kind in "iub" or y.dtype.kind in "iub":
            if not np.array_equal(x, y):
                return False
        elif x.size and not compare(x, y, atol, rtol):
            return False
    return True


def run_reference(path: Path, x: np.ndarray) -> list[np.ndarray]:
    # onnx and onnxruntime are imported inside the functions that use them: a sweep worker imports
    # this module on start, and most cells never need a second opinion.
    import onnx
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(str(path))
    evaluator = ReferenceEvaluator(model)
    name = model.graph.input[0].name
    outputs: list[np.ndarray] = list(evaluator.run(None, {name: x}))  # type: ignore[arg-type]
    return outputs


def ort_session(path: Path, device: str, optimise: bool, log_level: int = 3) -> Any:
    """A one-thread session through `create_session`, the door every ONNX Runtime session uses: a
    CUDA vote that would quietly run on the CPU provider is refused (a DeviceError), never counted."""
    import onnxruntime as ort

    options = session_options(1)
    options.log_severity_level = log_level
    if not optimise:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return create_session(str(path), device, 1, options=options)


def run_ort(path: Path, device: str, x: np.ndarray, optimise: bool) -> list[np.ndarray]:
    session = ort_session(path, device, optimise)
    return list(session.run(None, {session.get_inputs()[0].name: x}))


def _vote(fn: Any, *args: Any) -> tuple[list[np.ndarray] | None, str | None]:
    try:
        with captured_output():
            return fn(*args), None
    except Exception as exc:  # noqa: BLE001 - a second opinion that fails is a vote too
        return None, one_line(exc)[:200]


def _say(outputs: list[np.ndarray] | None, error: str | None, expected: list[np.ndarray], actual: Any) -> str:
    if outputs is None:
        return f"failed: {error}"
    if agree(expected, outputs):
        return "agrees with PyTorch"
    if actual is not None and agree(actual, outputs):
        return "agrees with onnxruntime, not PyTorch"
    return "differs from both" if actual is not None else "differs from PyTorch"


def blame_cell(
    path: Path, device: str, x: np.ndarray, expected: list[np.ndarray], actual: list[np.ndarray] | None, outcome: str
) -> tuple[str, dict[str, str]]:
    """(label, votes) for a failing ONNX cell; `actual` is None when ONNX Runtime could not run it."""
    if not path.exists():
        return "unclear", {"note": "no ONNX file was written"}
    ref, ref_error = _vote(run_reference, path, x)
    plain, plain_error = _vote(run_ort, path, device, x, False)
    votes = {
        "reference": _say(ref, ref_error, expected, actual),
        "onnxruntime-unoptimised": _say(plain, plain_error, expected, actual),
    }
    if outcome == "declared-shape-mismatch":
        # The numbers agree; the file's declaration is the exporter's (or ONNX shape inference's).
        same = ref is not None and [tuple(r.shape) for r in ref] == [tuple(e.shape) for e in expected]
        votes["reference"] = "produces PyTorch's shapes, not the declared ones" if same else votes["reference"]
        return ("exporter" if same else "unclear"), votes
    if agree(expected, plain) and not agree(expected, actual):
        return "optimiser", votes
    if agree(expected, ref):
        return "runtime", votes
    if actual is not None and agree(actual, ref):
        return "exporter", votes
    return "unclear", votes


# ---------------------------------------------------------------- checks of one ONNX file


def declared_shapes(path: Path) -> list[list[int | str | None] | None]:
    """Each graph output's declared shape: ints, symbolic names, None for an unknown dimension;
    None for an output that declares no shape at all."""
    import onnx

    shapes: list[list[int | str | None] | None] = []
    for out in onnx.load(str(path), load_external_data=False).graph.output:
        tensor = out.type.tensor_type
        if not tensor.HasField("shape"):
            shapes.append(None)
            continue
        dims: list[int | str | None] = []
        for d in tensor.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
        shapes.append(dims)
    return shapes


def declared_mismatch(path: Path, actual: list[np.ndarray]) -> str | None:
    """Why the outputs the runtime produced differ from what the file declares, or None."""
    problems = []
    for i, (dims, out) in enumerate(zip(declared_shapes(path), actual, strict=False)):
        if dims is None:
            continue
        got = list(out.shape)
        if len(dims) != len(got) or any(isinstance(d, int) and d != g for d, g in zip(dims, got, strict=False)):
            shown = ",".join("?" if d is None else str(d) for d in dims)
            problems.append(f"output {i}: file declares ({shown}), runtime gives ({','.join(map(str, got))})")
    return "; ".join(problems) or None


def ort_shape_warnings(path: Path, device: str, x: np.ndarray) -> str:
    """ONNX Runtime's own words (VerifyOutputSizes) about declared vs actual shapes, from its log."""
    try:
        with captured_output() as log:
            session = ort_session(path, device, True, log_level=2)
            session.run(None, {session.get_inputs()[0].name: x})
    except Exception:  # noqa: BLE001 - the cell already ran; this only collects the words
        return ""
    lines = [ln.strip() for ln in log.text.splitlines() if "VerifyOutputSizes" in ln or "Expected shape" in ln]
    return " | ".join(ln[ln.find("Expected") :] if "Expected" in ln else ln for ln in dict.fromkeys(lines))[:600]


def exact_integer_problems(expected: list[np.ndarray], actual: list[np.ndarray]) -> str | None:
    """Integer outputs (MaxPool indices) bit-exact, plus the MaxUnpool round trip they exist for:
    scattering PyTorch's values to the artifact's indices must rebuild PyTorch's unpooled tensor."""
    problems = []
    values = expected[0] if expected else None
    for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
        if e.dtype.kind not in "iu":
            continue
        if a.dtype != e.dtype:
            problems.append(f"output {i}: dtype {a.dtype}, PyTorch gives {e.dtype}")
            continue
        if e.shape != a.shape or np.array_equal(e, a):
            continue
        n = int((e != a).sum())
        text = f"output {i} (indices): {n:,} of {e.size:,} differ (compared bit-exactly)"
        if values is not None and values.shape == e.shape:
            trip = unpool_difference(values, e, a)
            text += f"; MaxUnpool round trip: {trip}"
        problems.append(text)
    return "; ".join(problems) or None


def unpool_difference(values: np.ndarray, expected_idx: np.ndarray, actual_idx: np.ndarray) -> str:
    """MaxUnpool with each set of indices (flat per channel plane, as PyTorch and ONNX define them)."""
    size = int(max(expected_idx.max(initial=0), actual_idx.max(initial=0))) + 1
    if actual_idx.min(initial=0) < 0:
        return "the artifact's indices are negative"

    def unpool(idx: np.ndarray) -> np.ndarray:
        out = np.zeros((*values.shape[:2], size), dtype=values.dtype)
        flat = idx.reshape(*idx.shape[:2], -1)
        np.put_along_axis(out, flat, values.reshape(*values.shape[:2], -1), axis=2)
        return out

    differ = int((unpool(expected_idx) != unpool(actual_idx)).sum())
    return f"{differ:,} unpooled elements differ" if differ else "same tensor (ties chose other positions)"
