"""Where the strict check fails: fp32 rounding, or a wrong artifact? Decided against fp64 eager.

A strict mismatch (|artifact - eager| > atol + rtol * |eager|) compares two fp32 computations, and
either may be the one that rounds. So for the images that hold strict mismatches, and only those
(passing batches cost nothing), an fp64 copy of the eager module computes the exact answer, and
each mismatched element is judged against it:

- E = the largest |fp32 eager - fp64 eager| over every element of that output on those images:
  how far fp32 eager itself is from the exact answer there;
- the element is within fp32 rounding when |artifact - fp64 eager| <= max(atol + rtol * |fp64|,
  ROUNDING_MARGIN * E): within the strict tolerance of the exact answer, or no further from it
  than twice fp32 eager's own worst error on the same images.

A row computed in bf16 or fp16 (OpenVINO's default precision on a bf16 CPU) is judged the same way
against its own precision: E is then measured with eager run under autocast in that precision
(`Fp64Reference(module, "bf16")`), and the strict tolerance is that precision's (4 units of its
rounding), so a bf16 file is never held to fp32's error, nor let off with an arbitrary one.

Why twice: the artifact is another fp32 computation of the same function (other kernels, another
summation order, fused layers), so its worst error may be as large as eager's; 2 leaves room for
its worst element and eager's not coinciding, and nothing more. A real defect is orders beyond
(a 1 % change of one ResNet-18 convolution weight: see README). Integer outputs (pooling indices),
NaN and infinities are never rounding. The first element beyond stops the examination: the row fails.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from poolkit.common.errors import one_line
from poolkit.exporter.layers import autocast_variant
from poolkit.exporter.precision import DTYPE_OF

ROUNDING_MARGIN = 2.0


@dataclass
class RoundingDecision:
    """One row's fp64 decision, over every batch whose strict check failed."""

    margin: float = ROUNDING_MARGIN
    images: int = 0  # images re-run through fp64 eager
    elements: int = 0  # strict mismatches examined
    beyond: int = 0  # of those, beyond fp32 rounding
    artifact_error: float = 0.0  # the largest |artifact - fp64 eager| over the examined elements
    eager_error: float = 0.0  # E: the largest |fp32 eager - fp64 eager| on the same images
    unavailable: str | None = None  # why no fp64 reference could be computed
    reference: str = "fp32"  # the precision of the eager run E was measured with (the row's own)

    @property
    def within(self) -> bool:
        return self.unavailable is None and self.elements > 0 and self.beyond == 0

    @property
    def stopped(self) -> bool:
        return self.beyond > 0 or self.unavailable is not None

    @property
    def eager_label(self) -> str:
        return "fp32 eager" if self.reference == "fp32" else f"eager under {self.reference} autocast"

    @property
    def summary(self) -> str:
        """The figures in one line, for the table and the reason of a failing row."""
        if self.unavailable:
            return f"fp64 reference unavailable: {self.unavailable}"
        ratio = f" ({self.artifact_error / self.eager_error:.2g}x)" if self.eager_error and self.artifact_error else ""
        return (
            f"against fp64 eager the artifact is off by up to {self.artifact_error:.2g}{ratio}, {self.eager_label} by up to "
            f"{self.eager_error:.2g} on the same {self.images:,} image{'s' * (self.images != 1)}; "
            f"allowed {self.margin:g}x that ({self.margin * self.eager_error:.2g})"
            + (f"; {self.beyond:,} of {self.elements:,} mismatched elements beyond" if self.beyond else "")
        )


class Fp64Reference:
    """An fp64 copy of eager, made on first use, with the outputs it computed kept per image."""

    def __init__(self, module: nn.Module, precision: str = "fp64") -> None:
        self._source = module
        self.precision = precision  # fp64: the exact answer; bf16 / fp16: eager under autocast (a row's own)
        self._module: Any = None
        self._cache: dict[tuple[str, int], list[np.ndarray]] = {}  # (set, image in set) -> outputs
        self.failed: str | None = None

    def outputs(self, set_name: str, first: int, x: np.ndarray, images: list[int]) -> list[np.ndarray] | None:
        """fp64 eager's outputs for `x[images]` (image indices within the batch), one array per output."""
        todo = [i for i in images if (set_name, first + i) not in self._cache]
        if todo and self.failed is None:
            try:
                if self._module is None:
                    self._module = _twin(self._source, self.precision)
                batch = torch.from_numpy(x[todo])
                with torch.inference_mode():
                    out = self._module(batch.double() if self.precision == "fp64" else batch)
                outs = out if isinstance(out, tuple | list) else (out,)
                arrays = [o.detach().cpu().numpy() for o in outs]
            except Exception as exc:  # noqa: BLE001 - a module that cannot run in fp64 leaves the strict verdict
                self.failed = one_line(exc)[:160]
            else:
                for k, i in enumerate(todo):
                    self._cache[set_name, first + i] = [a[k] for a in arrays]
        if self.failed is not None:
            return None
        per_image = [self._cache[set_name, first + i] for i in images]
        return [np.stack([p[o] for p in per_image]) for o in range(len(per_image[0]))]


def _twin(module: nn.Module, precision: str) -> nn.Module:
    if precision == "fp64":
        return copy.deepcopy(module).double().eval()
    return autocast_variant(module, DTYPE_OF[precision])


def strict_mismatch(expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """The comparator's rule, elementwise: True where an element is out of tolerance (NaN included)."""
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    with np.errstate(invalid="ignore"):
        within = np.abs(a - e) <= atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
    same_inf = np.isinf(e) & (e == a)
    return ~(within | same_inf)


def judge_batch(
    decision: RoundingDecision,
    reference: Fp64Reference,
    set_name: str,
    first: int,
    x: np.ndarray,
    expected: list[np.ndarray],
    actual: list[np.ndarray],
    atol: float,
    rtol: float,
    own: Fp64Reference | None = None,
) -> None:
    """Fold one failing batch into the row's decision (see the module docstring); `own`: eager in the
    row's reduced precision, whose error against fp64 is then E (None: fp32 eager's, `expected`)."""
    if decision.stopped:
        return
    masks = [strict_mismatch(e, a, atol, rtol) for e, a in zip(expected, actual, strict=True)]
    images = sorted({int(i) for m in masks for i in np.flatnonzero(m.reshape(len(m), -1).any(axis=1))})
    if not images:
        return
    exact = reference.outputs(set_name, first, x, images)
    twin = own.outputs(set_name, first, x, images) if own is not None else None
    if exact is None or (own is not None and twin is None):
        decision.unavailable = reference.failed or (own.failed if own is not None else None)
        return
    decision.images += len(images)
    if own is not None:
        decision.reference = own.precision
    eager = twin if twin is not None else [e[images] for e in expected]
    for out_e, out_a, mask, r, out_own in zip(expected, actual, masks, exact, eager, strict=True):
        m = mask[images]
        decision.elements += int(m.sum())
        if not np.issubdtype(out_e.dtype, np.floating):  # indices: a different one is never rounding
            decision.beyond += int(m.sum())
            continue
        e, a = out_own.astype(np.float64), out_a[images].astype(np.float64)
        with np.errstate(invalid="ignore"):
            gap = np.abs(e - r)
            err = np.abs(a - r)
        eager_error = float(gap[np.isfinite(gap)].max(initial=0.0))
        decision.eager_error = max(decision.eager_error, eager_error)
        allowed = np.maximum(atol + rtol * np.abs(r), decision.margin * eager_error)
        ok = np.isfinite(err) & (err <= allowed)
        decision.beyond += int((m & ~ok).sum())
        examined = err[m]
        worst = float(examined.max()) if examined.size and np.isfinite(examined).all() else float("inf")
        decision.artifact_error = max(decision.artifact_error, worst if examined.size else 0.0)
