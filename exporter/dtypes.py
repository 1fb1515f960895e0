"""The floating-point dtypes a model can hold, by one canonical name each, and every spelling users write.

`conv(3,6,k=3,dtype=float16)`, `Conv2d(3, 6, 3, dtype=torch.half)` and `--dtype fp16` all mean
float16. Resolving names needs no torch (spec errors and `--help` stay instant); `torch_dtype` turns a
canonical name into the torch object when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "float16", "bfloat16", "float64")
DEFAULT_DTYPE = "float32"

# Every spelling torch, numpy and the usual precision shorthands use, without a `torch.` prefix.
_SPELLINGS = {
    "float32": "float32",
    "float": "float32",
    "fp32": "float32",
    "f32": "float32",
    "float16": "float16",
    "half": "float16",
    "fp16": "float16",
    "f16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float64": "float64",
    "double": "float64",
    "fp64": "float64",
    "f64": "float64",
}
EXPECTED = "float32, float16, bfloat16 or float64 (torch.float16, half, fp16 and torch's other spellings work too)"

# Short names of precisions as reports and file names show them.
SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}


# Unit roundoff of each dtype (half its machine epsilon): the size of one rounding, relative.
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8, "float64": 2.0**-53}


def rounding_tolerance(dtype: str, fp32_atol: float, fp32_rtol: float) -> tuple[float, float]:
    """(atol, rtol) for comparing two runs of one model in `dtype`: fp32's tolerance scaled by how much
    coarser one rounding of `dtype` is (float16 ~8,000x, bfloat16 ~65,000x). Two runtimes in float16
    round at different places (ONNX Runtime's CPU Conv accumulates in float32), so a difference of a
    few float16 ulps is that dtype's own rounding, not a wrong artifact."""
    scale = max(UNIT_ROUNDOFF[dtype] / UNIT_ROUNDOFF["float32"], 1.0)
    return fp32_atol * scale, fp32_rtol * scale


def dtype_name(text: object) -> str:
    """The canonical name of a dtype spelling; ValueError saying what is accepted otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"expected {EXPECTED}")
    key = text.strip().lower().removeprefix("torch.")
    if key not in _SPELLINGS:
        raise ValueError(f"expected {EXPECTED}")
    return _SPELLINGS[key]


def torch_dtype(name: str) -> torch.dtype:
    import torch

    dtype = getattr(torch, dtype_name(name))
    assert isinstance(dtype, torch.dtype)
    return dtype


def name_of(dtype: torch.dtype) -> str:
    """torch.float16 -> 'float16'."""
    return str(dtype).removeprefix("torch.")
