"""Would this data have caught a wrong artifact? Plausible wrong variants of the eager module.

For each model verify builds a few modules an exporter or a careless edit could plausibly have
produced instead of the real one: each activation replaced by the identity, each pooling's
ceil_mode flipped, one weight of each parametric layer changed by a small relative amount. Each
variant runs on the same batches as the reference, and is "detected" by an input set when some
output element differs from the real module's by more than the tolerance verify uses. A variant
no input set detects is a warning: a pass then proves nothing about that kind of mistake.

A variant stops running on a set as soon as the set detects it, so the cost is about one batch
per detected variant; only the undetected ones run on, up to the first 256 images of each set.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

WEIGHT_CHANGE = 1e-3  # relative: far below what a reader of the numbers would notice
# Variants run on at most this many images of each set: a variant a set detects is usually caught
# in its first batch; one that is not caught by 256 images is reported missed (the safe side).
SENSITIVITY_IMAGES = 256


@dataclass
class Variant:
    """One wrong module and what it got wrong."""

    label: str  # e.g. "relu1→identity"
    kind: str  # activation | ceil_mode | weight
    module: Any = field(repr=False)


@dataclass
class SensitivityResult:
    """Which input sets told one wrong variant apart from the real module, at verify's tolerance."""

    model: str
    variant: str
    kind: str
    detected_by: list[str] = field(default_factory=list)
    missed_by: list[str] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)  # per set, the images it ran on before caught (max 256)

    @property
    def detected(self) -> bool:
        return bool(self.detected_by)

    @property
    def warning(self) -> str | None:
        if not self.missed_by:
            return None
        sets = ", ".join(self.missed_by)
        if not self.detected_by:
            return f"undetectable: {self.variant} on every input set ({sets}): a pass says nothing about it"
        return f"undetectable: {self.variant} on {sets} (caught by {', '.join(self.detected_by)})"


ACTIVATION_TYPES = ("ReLU", "LeakyReLU", "PReLU", "ELU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax")
WEIGHTED_TYPES = ("Conv1d", "Conv2d", "Conv3d", "Linear")


def wrong_variants(module: nn.Module) -> list[Variant]:
    """The plausible wrong versions of a module (see the module docstring).

    Layers are found by their torch type anywhere in the module tree, so a user's own module gets
    the same variants as a Tudui spec (an activation called as a function in `forward` has none).
    """
    variants = []
    for name, layer in module.named_modules():
        if not name:
            continue
        kind = type(layer).__name__
        if kind in ACTIVATION_TYPES:
            wrong = copy.deepcopy(module)
            _replace(wrong, name, nn.Identity())
            variants.append(Variant(f"{name}→identity", "activation", wrong))
        elif kind.startswith(("MaxPool", "AvgPool")) and hasattr(layer, "ceil_mode"):
            wrong = copy.deepcopy(module)
            pool: Any = wrong.get_submodule(name)
            pool.ceil_mode = not layer.ceil_mode
            variants.append(Variant(f"{name} ceil_mode {layer.ceil_mode}→{not layer.ceil_mode}", "ceil_mode", wrong))
        elif kind in WEIGHTED_TYPES:
            wrong = copy.deepcopy(module)
            weighted: Any = wrong.get_submodule(name)
            weight = weighted.weight.data
            flat = int(weight.abs().argmax())
            weight.view(-1)[flat] *= 1 + WEIGHT_CHANGE
            where = tuple(int(i) for i in _unravel(flat, tuple(weight.shape)))
            variants.append(Variant(f"{name}.weight{list(where)} ×(1{WEIGHT_CHANGE:+g})", "weight", wrong))
    return variants


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, child, new)


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    idx = []
    for dim in reversed(shape):
        idx.append(flat % dim)
        flat //= dim
    return list(reversed(idx))


class SensitivityCheck:
    """Runs every variant beside the reference, batch by batch, and records which sets detect it."""

    def __init__(
        self,
        model: str,
        module: nn.Module,
        atol: float,
        rtol: float,
        device: str = "cpu",
        max_images: int = SENSITIVITY_IMAGES,
    ) -> None:
        self.model, self.atol, self.rtol, self.device = model, atol, rtol, device
        self.variants = [v for v in wrong_variants(module)]
        for v in self.variants:
            v.module = v.module.to(device).eval()
        self.results = [SensitivityResult(model, v.label, v.kind) for v in self.variants]
        self._seen: dict[str, set[int]] = {}  # set name -> variants detected on it
        self._images: dict[str, int] = {}  # set name -> images the check ran on
        self._ran: dict[tuple[int, str], int] = {}  # (variant, set name) -> images that variant ran on
        self.max_images = max_images

    def add(self, set_name: str, x: np.ndarray, expected: list[np.ndarray]) -> None:
        """Run the variants the set has not detected yet on one batch."""
        detected = self._seen.setdefault(set_name, set())
        pending = [i for i in range(len(self.variants)) if i not in detected]
        if not pending or self._images.get(set_name, 0) >= self.max_images:
            return
        xt = torch.from_numpy(x).to(self.device)
        refs = expected
        with torch.inference_mode():
            for i in pending:
                try:
                    out = self.variants[i].module(xt)
                except (RuntimeError, ValueError, IndexError):
                    detected.add(i)  # the wrong module refuses this size: any artifact of it would too
                    continue
                outs = out if isinstance(out, tuple | list) else (out,)
                if len(outs) != len(refs) or any(self._differs(o, r) for o, r in zip(outs, refs, strict=False)):
                    detected.add(i)
        self._images[set_name] = self._images.get(set_name, 0) + len(x)
        for i in pending:
            self._ran[i, set_name] = self._ran.get((i, set_name), 0) + len(x)

    def _differs(self, out: Any, ref: np.ndarray) -> bool:
        """Out of tolerance anywhere, by verify's own rule (NaN never within), in numpy: one thread
        and a few passes, where torch's parallel elementwise ops stall on a busy CPU."""
        got = out.detach().cpu().numpy()
        if got.shape != ref.shape:
            return True
        if not np.issubdtype(ref.dtype, np.floating):
            return not np.array_equal(got, ref)
        with np.errstate(invalid="ignore"):
            within = np.abs(got - ref) <= self.atol + self.rtol * np.abs(ref)
        if within.all():
            return False
        return not np.allclose(got, ref, rtol=self.rtol, atol=self.atol, equal_nan=True)

    def finish(self) -> list[SensitivityResult]:
        for i, result in enumerate(self.results):
            result.detected_by = [s for s, found in self._seen.items() if i in found]
            result.missed_by = [s for s, found in self._seen.items() if i not in found]
            result.images = {name: self._ran.get((i, name), 0) for name in self._seen}
        return self.results
