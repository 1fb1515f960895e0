"""Would this data have caught a wrong artifact? Plausible wrong variants of the eager module.

For each model verify builds modules an exporter or a careless edit could plausibly have produced
instead of the real one: an activation replaced by the identity, a pooling's ceil_mode flipped,
one weight of a parametric layer changed. Each runs on the same batches as the reference and is
"detected" by an input set when some output differs by more than verify's tolerance. A variant no
set detects is a warning: a pass then proves nothing about that kind of mistake. Two kinds are
not weaknesses and are said so: a ceil_mode flip that changes nothing at the sizes the model takes
(its windows fit: `equivalent`), and for weights the measured detection threshold, the smallest
relative change of that weight the data catches (outputs move linearly with one small weight change,
so one probe at 0.1 % measures it).

`--sensitivity quick` (the default) samples at most 3 variants of each kind, spread over the network
(every kind present is tried), on the first 8 images of each set, and more only within a quarter of
verify's own work on the model (counted in images through the module: a variant costs what eager
does); `full` runs every variant on up to 256 images of each set; `off` none.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

WEIGHT_CHANGE = 1e-3  # the probe: relative change of the weight's largest element
WEIGHT_WARN = 1e-2  # a threshold above 1 % of one weight is worth a warning
SENSITIVITY_IMAGES = 256  # full: images of each set a variant runs on before it is called missed
QUICK_PER_KIND = 3
QUICK_IMAGES = 8
BUDGET_SHARE = 0.25
MODES = ("off", "quick", "full")


@dataclass
class Variant:
    """One wrong module and what it got wrong."""

    label: str  # e.g. "relu1→identity"
    kind: str  # activation | ceil_mode | weight
    module: Any = field(repr=False)
    layer: str = ""


@dataclass
class SensitivityResult:
    """Which input sets told one wrong variant apart from the real module, at verify's tolerance."""

    model: str
    variant: str
    kind: str
    detected_by: list[str] = field(default_factory=list)
    missed_by: list[str] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)  # per set, the images it ran on before caught
    equivalent: bool = False  # bit-equal to the model on every batch it ran (a ceil_mode flip whose windows fit)
    threshold: float | None = None  # weights: the smallest relative change of the weight the data detects
    layer: str = ""

    @property
    def detected(self) -> bool:
        return bool(self.detected_by)

    @property
    def detail(self) -> str:
        """What the check found, in words (the JSON and the sensitivity table)."""
        if self.equivalent:
            return f"equivalent: {self.variant} changes nothing at the sizes this model takes"
        if self.threshold is not None:
            return f"detects a relative change of {100 * self.threshold:.2g} % or more of one weight of {self.layer}"
        return "caught by " + ", ".join(self.detected_by) if self.detected_by else "caught by nothing"

    @property
    def warning(self) -> str | None:
        if self.equivalent or not self.images:
            return None
        if self.kind == "weight":
            if self.threshold is not None and self.threshold <= WEIGHT_WARN:
                return None
            return f"weak: {self.detail}" if self.threshold is not None else f"undetectable: {self.variant}"
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
            variants.append(Variant(f"{name}→identity", "activation", wrong, name))
        elif kind.startswith(("MaxPool", "AvgPool")) and hasattr(layer, "ceil_mode"):
            wrong = copy.deepcopy(module)
            pool: Any = wrong.get_submodule(name)
            pool.ceil_mode = not layer.ceil_mode
            label = f"{name} ceil_mode {layer.ceil_mode}→{not layer.ceil_mode}"
            variants.append(Variant(label, "ceil_mode", wrong, name))
        elif kind in WEIGHTED_TYPES:
            wrong = copy.deepcopy(module)
            weighted: Any = wrong.get_submodule(name)
            weight = weighted.weight.data
            flat = int(weight.abs().argmax())
            weight.view(-1)[flat] *= 1 + WEIGHT_CHANGE
            where = tuple(int(i) for i in _unravel(flat, tuple(weight.shape)))
            variants.append(Variant(f"{name}.weight{list(where)} ×(1{WEIGHT_CHANGE:+g})", "weight", wrong, name))
    return variants


def sample(variants: list[Variant], per_kind: int = QUICK_PER_KIND) -> list[Variant]:
    """At most `per_kind` of each kind, spread evenly from the first layer to the last (the first
    and the last always), in the module's order."""
    keep: set[int] = set()
    for kind in dict.fromkeys(v.kind for v in variants):
        idx = [i for i, v in enumerate(variants) if v.kind == kind]
        n = min(per_kind, len(idx))
        keep.update(idx[round(k * (len(idx) - 1) / max(n - 1, 1))] for k in range(n))
    return [v for i, v in enumerate(variants) if i in keep]


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
    """Runs the variants beside the reference, batch by batch, and records which sets detect them."""

    def __init__(
        self,
        model: str,
        module: nn.Module,
        atol: float,
        rtol: float,
        device: str = "cpu",
        mode: str = "quick",
        rows: int = 1,
    ) -> None:
        self.model, self.atol, self.rtol, self.device, self.mode = model, atol, rtol, device, mode
        found = wrong_variants(module)
        self.variants = sample(found) if mode == "quick" else found
        self.sampled_out = len(found) - len(self.variants)
        for v in self.variants:
            v.module = v.module.to(device).eval()
        self.results = [SensitivityResult(model, v.label, v.kind, layer=v.layer) for v in self.variants]
        self._seen: dict[str, set[int]] = {}  # set name -> variants detected on it
        self._ran: dict[tuple[int, str], int] = {}  # (variant, set name) -> images that variant ran on
        self._differs_ever = [False] * len(self.variants)  # any output not bit-equal to the model's
        self._ratio = [0.0] * len(self.variants)  # weights: the largest |change| / tolerance seen
        self.max_images = QUICK_IMAGES if mode == "quick" else SENSITIVITY_IMAGES
        self.reference_images = 0  # what the budget is a share of: images through eager and each row
        self.rows = rows
        self.variant_images = 0

    def add(self, set_name: str, x: np.ndarray, expected: list[np.ndarray]) -> None:
        """Run the variants the set has not detected yet on one batch (within the mode's limits)."""
        self.reference_images += len(x) * (1 + self.rows)
        detected = self._seen.setdefault(set_name, set())
        pending = [i for i in range(len(self.variants)) if i not in detected]
        take = len(x)
        first_images = all(self._ran.get((i, set_name), 0) == 0 for i in pending)
        if self.mode == "quick":
            take = min(take, QUICK_IMAGES)
            over = self.variant_images + take * len(pending) > BUDGET_SHARE * self.reference_images
            if not first_images and over:
                return  # past the first images of a set, a variant runs only within the budget
        pending = [
            i for i in pending if self._ran.get((i, set_name), 0) < (self.max_images if self.mode == "full" else 10**9)
        ]
        if not pending:
            return
        xt = torch.from_numpy(x[:take]).to(self.device)
        refs = [r[:take] for r in expected]
        with torch.inference_mode():
            for i in pending:
                try:
                    out = self.variants[i].module(xt)
                except (RuntimeError, ValueError, IndexError):
                    detected.add(i)  # the wrong module refuses this size: any artifact of it would too
                    self._differs_ever[i] = True
                    continue
                outs = out if isinstance(out, tuple | list) else (out,)
                if len(outs) != len(refs) or any(self._differs(i, o, r) for o, r in zip(outs, refs, strict=False)):
                    detected.add(i)
        self.variant_images += take * len(pending)
        for i in pending:
            self._ran[i, set_name] = self._ran.get((i, set_name), 0) + take

    def _differs(self, i: int, out: Any, ref: np.ndarray) -> bool:
        """Out of tolerance anywhere, by verify's own rule (NaN never within), in numpy: one thread
        and a few passes, where torch's parallel elementwise ops stall on a busy CPU. Notes whether
        the variant is bit-equal, and for a weight how far it moved against the tolerance."""
        got = out.detach().cpu().numpy()
        if got.shape != ref.shape:
            self._differs_ever[i] = True
            return True
        if not np.issubdtype(ref.dtype, np.floating):
            same = np.array_equal(got, ref)
            self._differs_ever[i] |= not same
            return not same
        if not np.array_equal(got, ref):
            self._differs_ever[i] = True
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.abs(got.astype(np.float64) - ref) / (self.atol + self.rtol * np.abs(ref))
        finite = ratio[np.isfinite(ratio)]
        if finite.size:
            self._ratio[i] = max(self._ratio[i], float(finite.max()))
        if finite.size == ratio.size and (not finite.size or finite.max() <= 1.0):
            return False
        return not np.allclose(got, ref, rtol=self.rtol, atol=self.atol, equal_nan=True)

    def finish(self) -> list[SensitivityResult]:
        for i, result in enumerate(self.results):
            ran = {name for (v, name) in self._ran if v == i}
            result.detected_by = [s for s, found in self._seen.items() if i in found]
            result.missed_by = [s for s in self._seen if s in ran and i not in self._seen[s]]
            result.images = {name: self._ran.get((i, name), 0) for name in self._seen if name in ran}
            result.equivalent = result.kind == "ceil_mode" and bool(ran) and not self._differs_ever[i]
            if result.kind == "weight" and result.images:
                result.threshold = WEIGHT_CHANGE / self._ratio[i] if self._ratio[i] > 0 else None
        return self.results
