"""Tolerance guidance: how tight a tolerance each row could take, and the reference's own noise.

The smallest passing atol (at the chosen rtol) and rtol (at the chosen atol) come from each row's
`Comparison`s. The noise floor is fp32 eager against an fp64 copy of the same module on the same
batches: below it, a difference may be fp32 rounding of the reference itself, not the artifact.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from poolkit.services.comparator import Comparison

LOOSE_FACTOR = 1000.0  # a tolerance this many times what the row needs is "far looser"
FP32_RESOLUTION = 1e-8  # needs below this are rounding of values near 1: not a scale to judge a tolerance by


@dataclass
class Guidance:
    """Per row: what would have passed, against what was asked, and the fp64 noise floor."""

    atol: float
    rtol: float
    min_atol: float  # smallest atol that passes at `rtol`
    min_rtol: float  # smallest rtol that passes at `atol`
    noise_floor: float | None  # max |fp32 eager - fp64 eager| on the first 16 images of each set; None: not measured
    noise_min_atol: float | None = None  # the atol fp32 eager itself needs against fp64, at `rtol`
    warnings: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.min_atol <= 0 and self.min_rtol <= 0


def guidance(comparisons: list[Comparison], atol: float, rtol: float, noise: NoiseFloor | None) -> Guidance:
    """Fold a row's comparisons into its guidance, with warnings when the tolerance is far from fitting."""
    min_atol = max((c.min_atol for c in comparisons), default=0.0)
    min_rtol = max((c.min_rtol for c in comparisons), default=0.0)
    g = Guidance(atol, rtol, max(min_atol, 0.0), max(min_rtol, 0.0), None)
    if noise is not None and noise.batches:
        g.noise_floor, g.noise_min_atol = noise.max_abs, max(noise.min_atol, 0.0)
    noise_atol = g.noise_min_atol or 0.0
    if noise_atol > atol:
        g.warnings.append(
            f"atol {atol:g} is tighter than the noise floor: fp32 eager differs from fp64 eager by up to "
            f"{noise_atol:.2g} at rtol {rtol:g}, so a failure this small may be rounding, not the artifact"
        )
    needed = max(g.min_atol, noise_atol)
    if math.isfinite(needed) and atol > LOOSE_FACTOR * max(needed, FP32_RESOLUTION):
        what = (
            f"{atol / needed:,.0f}x looser than this row needs ({needed:.2g})"
            if needed
            else "loose: this row is bit-exact"
        )
        g.warnings.append(f"atol {atol:g} is {what}; a wrong artifact could hide in the gap")
    return g


class NoiseFloor:
    """fp32 eager against an fp64 copy of the module, batch by batch (float outputs only)."""

    def __init__(self, module: nn.Module, rtol: float, device: str = "cpu") -> None:
        self.module64: Any = copy.deepcopy(module).double().to(device).eval()
        self.rtol, self.device = rtol, device
        self.max_abs = 0.0
        self.min_atol = 0.0
        self.batches = 0

    def add(self, x: np.ndarray, expected: list[np.ndarray]) -> None:
        with torch.inference_mode():
            out = self.module64(torch.from_numpy(x).to(self.device, torch.float64))
        outs = out if isinstance(out, tuple | list) else (out,)
        for o, e in zip(outs, expected, strict=False):
            if not np.issubdtype(e.dtype, np.floating):
                continue  # pooling indices are integers: no rounding to measure
            ref = o.cpu().numpy()
            with np.errstate(invalid="ignore"):
                diff = np.abs(e.astype(np.float64) - ref)
            finite = np.isfinite(diff)
            if finite.any():
                d = diff[finite]
                self.max_abs = max(self.max_abs, float(d.max()))
                self.min_atol = max(self.min_atol, float((d - self.rtol * np.abs(ref[finite])).max()))
        self.batches += 1
