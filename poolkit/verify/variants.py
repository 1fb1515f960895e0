"""Verify per precision: each fp16 / bf16 / int8 artifact judged against its own rounding, not fp32's tolerance.

fp32's atol would fail every float16 file, and a looser one would pass a broken file; so each variant
gets the reference its precision implies, and both are measured against an fp64 copy of eager:
- **fp16 / bf16**: the same model run in that precision in eager (float32 in and out, as the file):
  the artifact may round at most ROUNDING_FACTOR times worse than torch does in that precision.
- **int8**: the file run with ONNX Runtime's optimizations off (QuantizeLinear / DequantizeLinear
  as written, the rest in float): the error its scales imply. The optimized run (int8 kernels) may
  be at most ROUNDING_FACTOR times worse. Before numbers, the scales: every quantized weight must
  dequantize to within half a step of the fp32 file's weight, and every scale must be the one
  calibration recorded at export (a scale changed after export fails, even re-hashed).
Classifiers (outputs N x classes) also get top-1 agreement with fp32 eager; int8 gets the SQNR of
each layer against the fp32 file, naming the layer that loses most. A variant can ship when it
passes and agrees with fp32 on at least SHIP_TOP1 of the images.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from poolkit.common.errors import PoolkitError, one_line
from poolkit.exporter.dtypes import UNIT_ROUNDOFF
from poolkit.exporter.manifest import ExportRecord
from poolkit.runtimes.base import run_batch
from poolkit.runtimes.registry import cuda_problem, open_runtime, reader_of
from poolkit.services.artifacts import ModelArtifacts
from poolkit.services.cifar10 import IMAGE_SHAPE, ImageSet, synthetic_images

if TYPE_CHECKING:
    import numpy as np

ROUNDING_FACTOR = 4.0  # how much worse than its precision's own reference an artifact may round
SHIP_TOP1 = 0.99  # top-1 agreement with fp32 a classifier needs before a precision is worth shipping
PRECISION_IMAGES = 512  # images each variant runs on (the first of the set verify uses)
TORCH_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "bf16-autocast": "bfloat16", "fp16-autocast": "float16"}
AS_FP32 = 8.0  # a variant whose own reference rounds this many times more than fp32 ...
FP32_LIKE = 2.0  # ... while the file rounds no more than this times fp32: it ran in float32


@dataclass
class ErrorStats:
    """Differences against fp64 eager, folded over batches."""

    max_abs: float = 0.0
    sum_sq: float = 0.0
    signal_sq: float = 0.0
    count: int = 0

    def add(self, got: np.ndarray, ref: np.ndarray) -> None:
        import numpy as np

        diff = got.astype(np.float64) - ref
        self.max_abs = max(self.max_abs, float(np.max(np.abs(diff)))) if diff.size else self.max_abs
        self.sum_sq += float(np.sum(diff * diff))
        self.signal_sq += float(np.sum(ref * ref))
        self.count += int(diff.size)

    @property
    def rms(self) -> float:
        return math.sqrt(self.sum_sq / self.count) if self.count else 0.0

    @property
    def sqnr_db(self) -> float | None:
        if not self.count or not self.signal_sq:
            return None
        return math.inf if not self.sum_sq else 10 * math.log10(self.signal_sq / self.sum_sq)


@dataclass
class PrecisionRow:
    """One precision variant on one runtime and device."""

    model: str
    format: str
    precision: str
    runtime: str
    device: str
    status: str = "failed"  # passed | failed | unavailable
    reason: str | None = None
    images: int = 0
    reference: str = ""  # what its own rounding was measured with
    max_abs: float | None = None  # artifact vs fp64 eager
    rms: float | None = None
    budget_max: float | None = None  # its reference vs fp64 eager
    budget_rms: float | None = None
    fp32_rms: float | None = None  # fp32 eager vs fp64: what fp32 itself costs
    sqnr_db: float | None = None  # artifact's output vs fp64, in dB
    top1: float | None = None  # agreement with fp32 eager's argmax (classifiers)
    layers: list[Any] = field(default_factory=list)  # int8: LayerSQNR per layer, worst first
    weights: list[Any] = field(default_factory=list)  # int8: WeightSteps per quantized initializer
    quantization: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def worst_layer(self) -> str | None:
        if not self.layers:
            return None
        worst = self.layers[0]
        return f"{worst.layer or worst.tensor} ({worst.sqnr_db:.1f} dB)"

    @property
    def can_ship(self) -> bool:
        return self.passed and (self.top1 is None or self.top1 >= SHIP_TOP1)

    @property
    def cost(self) -> str:
        """What this precision costs in accuracy, in words a user can weigh."""
        if self.rms is None:
            return "—"
        parts = []
        if self.top1 is not None:
            parts.append(f"top-1 agrees with fp32 on {self.top1:.1%}")
        if self.sqnr_db is not None:
            parts.append(f"SQNR {self.sqnr_db:.1f} dB" if math.isfinite(self.sqnr_db) else "exact")
        if self.max_abs is not None:
            parts.append(f"max error {self.max_abs:.2g}")
        return ", ".join(parts)


def verify_precisions(
    model: ModelArtifacts, images: ImageSet, devices: tuple[str, ...] = ("cpu",), batch_size: int = 64
) -> list[PrecisionRow]:
    """Every precision variant of `model` on every device asked for."""
    if not model.variants:
        return []
    import numpy as np
    import torch

    reference = model.reference
    if reference is None:
        return [_row(model, r, d, reason="no fp32 artifact to compare with") for r in model.variants for d in devices]
    shape = reference.sample_shape
    data = images.images if shape == IMAGE_SHAPE else synthetic_images(PRECISION_IMAGES, shape).images
    x_all = np.ascontiguousarray(data[:PRECISION_IMAGES], dtype=np.float32)
    batches = [x_all[i : i + batch_size] for i in range(0, len(x_all), batch_size)]
    module = model.eager_module()
    fp64 = copy.deepcopy(module).double().eval()
    with torch.inference_mode():
        exact = [_first(fp64(torch.from_numpy(b).double())) for b in batches]
        fp32 = [_first(module(torch.from_numpy(b))) for b in batches]
    baseline = ErrorStats()
    for got, ref in zip(fp32, exact, strict=True):
        baseline.add(got, ref)
    context = _Context(model, batches, exact, fp32, baseline.rms)
    return [_verify_variant(context, record, device) for record in model.variants for device in devices]


@dataclass
class _Context:
    model: ModelArtifacts
    batches: list[np.ndarray]
    exact: list[np.ndarray]  # fp64 eager, first output
    fp32: list[np.ndarray]  # fp32 eager, first output
    fp32_rms: float


def _first(out: Any) -> np.ndarray:
    """The first output as float64 numpy (a pool's indices, the second, have no rounding to judge)."""
    import numpy as np

    first = out[0] if isinstance(out, tuple | list) else out
    return np.asarray(first.detach().cpu().numpy(), dtype=np.float64)


def _row(model: ModelArtifacts, record: ExportRecord, device: str, reason: str | None = None) -> PrecisionRow:
    runtime = reader_of(record.format)
    return PrecisionRow(model.name, record.format, record.precision, runtime, device, reason=reason,
                        quantization=record.quantization)  # fmt: skip


def _verify_variant(ctx: _Context, record: ExportRecord, device: str) -> PrecisionRow:
    row = _row(ctx.model, record, device)
    row.fp32_rms = ctx.fp32_rms
    if device == "cuda":
        problem = cuda_problem([row.runtime])
        if problem:
            row.status, row.reason = "unavailable", problem
            return row
    row.reason = ctx.model.variant_problem(record)
    if row.reason:
        return row
    path = ctx.model.variant_path(record)
    try:
        with open_runtime(row.runtime, path, device) as rt:
            actual = [_as_array(run_batch(rt, b)[0]) for b in ctx.batches]
    except PoolkitError as exc:
        row.reason = str(exc)
        return row
    except Exception as exc:  # noqa: BLE001 - a runtime without kernels for this precision fails in many ways
        row.reason = f"{row.runtime} cannot run the {record.precision} file: {one_line(exc)}"
        return row
    budget_outputs, row.reference = _own_rounding(ctx, record, path)
    got, budget = ErrorStats(), ErrorStats()
    for out, own, ref in zip(actual, budget_outputs, ctx.exact, strict=True):
        got.add(out, ref)
        budget.add(own, ref)
    row.images = sum(len(b) for b in ctx.batches)
    row.max_abs, row.rms, row.sqnr_db = got.max_abs, got.rms, got.sqnr_db
    row.budget_max, row.budget_rms = budget.max_abs, budget.rms
    row.top1 = _top1(actual, ctx.fp32)
    problems = _int8_checks(ctx, record, path, row) if record.precision == "int8" else []
    floor = _floor(record, ctx.exact)
    if record.precision != "int8" and budget.rms > AS_FP32 * ctx.fp32_rms and got.rms <= FP32_LIKE * ctx.fp32_rms:
        problems.append(
            f"rms error {got.rms:.3g} is fp32's ({ctx.fp32_rms:.3g}), where {row.reference} gives {budget.rms:.3g}:"
            f" the file ran in float32, not {record.precision}"
        )
    if got.rms > ROUNDING_FACTOR * max(budget.rms, floor):
        problems.append(
            f"rms error {got.rms:.3g} against fp64 is {got.rms / max(budget.rms, floor):.1f}x what {row.reference}"
            f" gives ({budget.rms:.3g}); allowed {ROUNDING_FACTOR:g}x"
        )
    elif got.max_abs > ROUNDING_FACTOR * max(budget.max_abs, floor):
        problems.append(
            f"max error {got.max_abs:.3g} against fp64 is {got.max_abs / max(budget.max_abs, floor):.1f}x what"
            f" {row.reference} gives ({budget.max_abs:.3g}); allowed {ROUNDING_FACTOR:g}x"
        )
    row.status, row.reason = ("failed", "; ".join(problems)) if problems else ("passed", None)
    return row


def _as_array(out: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.asarray(out, dtype=np.float64)


def _own_rounding(ctx: _Context, record: ExportRecord, path: Any) -> tuple[list[np.ndarray], str]:
    """The outputs this precision is expected to give, and what they come from."""
    if record.precision == "int8":
        from poolkit.runtimes.quantized import simulated_qdq

        return [_as_array(simulated_qdq(path, b)[0]) for b in ctx.batches], "its QDQ scales (simulated in float)"
    import torch

    from poolkit.exporter.layers import autocast_variant, precision_variant

    dtype = TORCH_DTYPE[record.precision]
    if record.precision.endswith("-autocast"):
        twin, what = autocast_variant(ctx.model.eager_module(), dtype), f"eager under {dtype} autocast"
    else:
        twin, what = precision_variant(ctx.model.eager_module(), dtype, record.outputs), f"eager in {dtype}"
    with torch.inference_mode():
        return [_first(twin(torch.from_numpy(b))) for b in ctx.batches], what


def _floor(record: ExportRecord, exact: list[np.ndarray]) -> float:
    """One rounding of the output's largest value in the variant's precision: below it, nothing to judge."""
    import numpy as np

    biggest = max((float(np.max(np.abs(e))) for e in exact if e.size), default=0.0)
    unit = UNIT_ROUNDOFF.get(TORCH_DTYPE.get(record.precision, ""), 2.0**-8)  # int8: 8 bits
    return unit * biggest


def _top1(actual: list[np.ndarray], fp32: list[np.ndarray]) -> float | None:
    """Share of images whose argmax class matches fp32 eager's (outputs N x classes only)."""
    import numpy as np

    if not actual or actual[0].ndim != 2 or actual[0].shape[1] < 2:
        return None
    same = sum(int(np.sum(np.argmax(a, 1) == np.argmax(f, 1))) for a, f in zip(actual, fp32, strict=True))
    return same / sum(len(a) for a in actual)


def _int8_checks(ctx: _Context, record: ExportRecord, path: Any, row: PrecisionRow) -> list[str]:
    """Scales as calibrated, weights within half a step, and each layer's SQNR (for the report)."""
    from poolkit.exporter.precision import changed_scales, read_scales
    from poolkit.runtimes.quantized import layer_sqnr, weight_steps

    problems = []
    recorded = (record.quantization or {}).get("scales")
    if not recorded:
        problems.append("the manifest records no calibration scales for this int8 file: it cannot be checked")
    else:
        changed = changed_scales(recorded, read_scales(path))
        if changed:
            problems.append("scales changed since calibration: " + "; ".join(changed[:3]))
    fp32_record = ctx.model.records.get("onnx")
    if fp32_record is None or ctx.model.problem("onnxruntime"):
        return [*problems, "no checked fp32 ONNX file to compare the int8 weights and layers with"]
    fp32_path = ctx.model.source("onnxruntime")
    row.weights = weight_steps(fp32_path, path)
    off = [w for w in row.weights if not w.ok]
    if off:
        problems.append(
            "quantized weights off their scale: "
            + "; ".join(f"{w.name} {w.worst_half_steps:.3g} half-steps from the fp32 weight" for w in off[:3])
        )
    row.layers = layer_sqnr(fp32_path, path, ctx.batches[:2])
    return problems
