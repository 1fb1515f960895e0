"""Precision variants of an export: fp16, bf16 and int8 artifacts beside the fp32 one.

A precision is a property of an export record (`ExportRecord.precision`), written for a format:
- **fp16 ONNX**: the fp32 file converted by onnxconverter-common (`convert_float_to_float16`), its
  inputs and outputs kept float32 (`keep_io_types`), so every caller still feeds CIFAR10's float32.
- **bf16 ONNX, fp16/bf16 TorchScript**: torch converts the module (`.to(dtype)`) inside a wrapper that
  casts the input in and the outputs back to float32; the format's own exporter writes it.
- **int8 ONNX**: ONNX Runtime's `quantize_static`, QDQ format, per-channel weights, calibrated on
  CIFAR10 images (method and image count recorded); the scales it computed are recorded too, so
  verify can tell a file whose scales were changed after calibration.
- **bf16-autocast / fp16-autocast** (TorchScript, pt2, aoti): the fp32 module run under
  `torch.autocast` (`layers.Autocast`), traced or exported so the file holds autocast's casts; the
  written file is run once on the example and must compute what eager under autocast computes
  (`autocast.check_captured`), else it is a failed record (torch.jit.script keeps no CPU autocast).
A combination poolkit cannot write (int8 TorchScript: torch's own int8 does not script portably)
is a failed record with the reason, never an fp32 file under another name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.common.errors import PoolkitError

if TYPE_CHECKING:
    import numpy as np

from poolkit.exporter.manifest import PRECISIONS

__all__ = ["PRECISIONS"]
AUTOCAST = {"bf16-autocast": "bfloat16", "fp16-autocast": "float16"}  # the fp32 model under torch.autocast
DTYPE_OF = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", **AUTOCAST}  # int8 has no torch dtype
CALIBRATION_METHOD = "minmax"  # ONNX Runtime's CalibrationMethod.MinMax: the scales cover every value seen
CALIBRATION_IMAGES = 256  # CIFAR10 test images the int8 scales are computed on
CALIBRATION_BATCH = 32
BF16_OPSET = 22  # the first opset whose Conv, Gemm and pools accept bfloat16


@dataclass
class Quantization:
    """How an int8 artifact was quantized: what verify checks it against, and what the report shows."""

    method: str
    images: int
    source: str  # where the calibration images came from (CIFAR10 test set, shipped subset, synthetic)
    per_channel: bool = True
    # 7-bit weights: on x86 ONNX Runtime's int8 kernels (u8s8, VPMADDUBSW) saturate with full 8-bit
    # weights; measured on tudui, that run was 6.3x worse than its own scales imply (verify's int8 check).
    reduce_range: bool = True
    format: str = "QDQ"
    activation_type: str = "int8"
    weight_type: str = "int8"
    scales: dict[str, list[float]] = field(default_factory=dict)  # scale initializer -> values, as calibrated


def parse_precisions(values: list[str]) -> tuple[str, ...]:
    """--precision fp32,fp16,...: known names, fp32 spellings folded, order kept, duplicates dropped."""
    aliases = {
        "float32": "fp32",
        "float16": "fp16",
        "half": "fp16",
        "bfloat16": "bf16",
        "qint8": "int8",
        "autocast": "bf16-autocast",
        "autocast-bf16": "bf16-autocast",
        "autocast-fp16": "fp16-autocast",
    }
    out: list[str] = []
    for raw in values:
        name = aliases.get(raw.strip().lower(), raw.strip().lower())
        if name not in PRECISIONS:
            raise PoolkitError(f"--precision {raw!r}: expected {', '.join(PRECISIONS)}")
        if name not in out:
            out.append(name)
    return tuple(out) or ("fp32",)


def variant_problem(fmt: str, precision: str) -> str | None:
    """Why poolkit does not write `precision` for `fmt` (None: it does), from the format's own declaration."""
    from poolkit.exporter.formats.registry import format_named

    if precision in format_named(fmt).precisions:
        return None
    if precision == "int8":
        return (
            f"int8 {fmt}: poolkit quantizes ONNX files only (ONNX Runtime's quantize_static, QDQ); torch's "
            "own int8 modules do not export to this format portably: use --format onnx for int8"
        )
    if precision in AUTOCAST:
        return (
            f"{precision} {fmt}: autocast is torch's own (the fp32 model under torch.autocast), written for the "
            f"torch-side formats only (torchscript, pt2, aoti); for {fmt} use --precision {precision.split('-')[0]}"
        )
    return f"{precision} {fmt}: the {fmt} format writes {', '.join(format_named(fmt).precisions)} only"


def convert_fp16(source: Path, target: Path) -> None:
    """The fp32 ONNX file in float16, inputs and outputs kept float32 (casts at the edges)."""
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


def quantize_int8(
    source: Path, target: Path, images: np.ndarray, input_name: str | None = None, source_label: str = ""
) -> Quantization:
    """Static int8 quantization (QDQ, per-channel weights) calibrated on `images`; returns what it did."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = input_name or onnx.load(str(source), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(images[i : i + CALIBRATION_BATCH] for i in range(0, len(images), CALIBRATION_BATCH))

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self._batches, None)
            return None if batch is None else {name: batch}

    quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    scales = read_scales(target)
    if not scales:  # nothing was quantized: an fp32 file under an int8 name is never written
        target.unlink(missing_ok=True)
        raise PoolkitError(
            "int8: quantize_static found nothing to quantize in this model (no Conv, Gemm, MatMul or other op it"
            " quantizes): the file would be fp32 under an int8 name"
        )
    return Quantization(CALIBRATION_METHOD, int(len(images)), source_label, scales=scales)


def read_scales(path: Path) -> dict[str, list[float]]:
    """Every scale a QuantizeLinear / DequantizeLinear node of the file uses, by initializer name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    used = {n.input[1] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    return {
        init.name: [float(v) for v in numpy_helper.to_array(init).reshape(-1)]
        for init in model.graph.initializer
        if init.name in used
    }


def changed_scales(recorded: dict[str, list[float]], found: dict[str, list[float]], rel: float = 1e-6) -> list[str]:
    """Scales in the file that are not the ones calibration computed (recorded at export)."""
    problems = []
    for name, values in recorded.items():
        now = found.get(name)
        if now is None or len(now) != len(values):
            problems.append(f"{name}: missing from the file")
            continue
        for i, (a, b) in enumerate(zip(values, now, strict=True)):
            if abs(a - b) > rel * max(abs(a), abs(b)):
                where = f"[{i}]" if len(values) > 1 else ""
                problems.append(f"{name}{where} is {b:.3g} in the file, calibration computed {a:.3g} ({b / a:.3g}x)")
                break
    return problems


def variant_filename(name: str, fmt: str, precision: str) -> str:
    """tudui.int8.onnx, tudui.fp16.torchscript.pt: the format's own suffix, the precision before it."""
    from poolkit.exporter.formats.registry import format_named

    return f"{name}.{precision}{format_named(fmt).suffix}"


@dataclass
class Calibration:
    """The images int8 scales are computed on, and where they came from (recorded with the file)."""

    images: np.ndarray
    source: str


def variant_versions(precision: str) -> dict[str, str]:
    """The converter's version, recorded with the variant (a new one re-converts instead of reusing the file)."""
    from importlib.metadata import version

    if precision == "int8":
        return {"onnxruntime": version("onnxruntime-gpu") if _has("onnxruntime-gpu") else version("onnxruntime")}
    if precision == "fp16":
        return {"onnxconverter-common": version("onnxconverter-common")}
    return {}


def _has(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


def same_settings(recorded: dict[str, Any] | None, calibration: Calibration | None) -> bool:
    """Whether an int8 file was quantized as this run would (method, range, images); other precisions: yes."""
    if recorded is None:
        return True  # fp16 / bf16: nothing calibrated
    want = Quantization(CALIBRATION_METHOD, len(calibration.images) if calibration else 0,
                        calibration.source if calibration else "")  # fmt: skip
    keys = ("method", "images", "source", "per_channel", "reduce_range", "format", "activation_type", "weight_type")
    return all(recorded.get(k) == getattr(want, k) for k in keys)


def calibration_for(calibration: Calibration | None, sample_shape: tuple[int, ...]) -> Calibration | None:
    """CIFAR10 images for a model that takes them; seeded uniform noise of its shape for any other."""
    import numpy as np

    if calibration is None or tuple(calibration.images.shape[1:]) == tuple(sample_shape):
        return calibration
    rng = np.random.default_rng(0)
    noise = rng.random((CALIBRATION_IMAGES, *sample_shape), dtype=np.float32)
    return Calibration(noise, f"synthetic: {CALIBRATION_IMAGES} seeded uniform [0,1) samples (input is not 3x32x32)")


def skipped_combinations(formats: tuple[str, ...], precisions: tuple[str, ...]) -> list[str]:
    """Variants of a `--format all` run that poolkit does not write, each said once (never written as fp32)."""
    return [variant_problem(f, p) or "" for f in formats for p in precisions if variant_problem(f, p)]


def write_variant(
    base: Path,
    target: Path,
    fmt: str,
    precision: str,
    export_torch: Any,
    calibration: Calibration | None = None,
) -> Quantization | None:
    """Write one precision variant of the fp32 artifact `base` (already written) to `target`.

    `export_torch(precision, path)` exports the torch module in that precision in `fmt` with the run's
    options: the torch-side variants (bf16 ONNX, fp16/bf16 TorchScript and pt2, autocast) go through it. Raises what the
    converter raises (the caller makes it a failed record); returns the int8 quantization info.
    """
    problem = variant_problem(fmt, precision)
    if problem:
        raise PoolkitError(problem)
    if precision == "int8":
        if calibration is None:
            raise PoolkitError("int8 needs calibration images")
        return quantize_int8(base, target, calibration.images, source_label=calibration.source)
    if precision == "fp16" and fmt == "onnx":
        convert_fp16(base, target)
        return None
    export_torch(precision, target)
    return None
