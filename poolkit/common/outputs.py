"""What a model may hand back for poolkit to compare, show or time: numeric arrays, nothing else.

A crafted or unusual artifact can return a string tensor, a sequence or a map (ONNX), a dict, a
list or a plain number (TorchScript, a user's module). Comparing or drawing those fails deep inside
numpy or matplotlib, or (ONNX Runtime binding a string output to a device) crashes the process.
Every runtime's outputs pass through `check_outputs`: an unusable one is an `UnusableOutput`, which
each command turns into a failed row or a one-line error naming the output and what it is.
"""

from __future__ import annotations

import re
from typing import Any

NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float (complex is not a model output poolkit can judge)
_ONNX_NUMERIC = re.compile(r"tensor\((float|float16|bfloat16|double|u?int(8|16|32|64)|bool)\)")


class UnusableOutput(ValueError):
    """An output poolkit cannot compare: a string, a sequence, a map, a dict, an object."""


def describe(value: Any) -> str:
    kind = type(value).__name__
    dtype = getattr(value, "dtype", None)
    return f"a {kind} of {dtype}" if dtype is not None else f"a {kind}"


def check_outputs(outputs: Any) -> list[Any]:
    """`outputs` as a list of numeric numpy arrays (a 0-d array is kept: shape checks say more)."""
    import numpy as np

    if not isinstance(outputs, list | tuple):
        outputs = [outputs]
    checked = []
    for i, out in enumerate(outputs):
        if not isinstance(out, np.ndarray) or out.dtype.kind not in NUMERIC_KINDS:
            raise UnusableOutput(f"output {i} is {describe(out)}: poolkit compares numeric tensors only")
        checked.append(out)
    return checked


def check_onnx_output_types(outputs: list[tuple[str, str]]) -> None:
    """(name, ONNX type) of every graph output; refused before a session runs: ONNX Runtime crashes
    binding a string or sequence output to a device buffer."""
    for name, kind in outputs:
        if not _ONNX_NUMERIC.fullmatch(kind):
            raise UnusableOutput(f"output '{name}' is {kind}: poolkit compares numeric tensors only")
