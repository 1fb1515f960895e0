"""A model's rows and what they are fed: which (runtime, precision) rows it has, and at one batch size the
rotating batches of real images fitted to its input (or seeded noise), eager's outputs for each, the
cost of one batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poolkit.bench.cost import Cost
from poolkit.bench.measurement import BASELINE_RUNTIME, BenchSettings
from poolkit.bench.outputs import ROTATE
from poolkit.common.errors import PoolkitError
from poolkit.exporter.precision import AUTOCAST
from poolkit.runtimes.base import run_batch
from poolkit.runtimes.registry import open_runtime, runtime_class
from poolkit.services.artifacts import ModelArtifacts
from poolkit.services.image_fit import fit_array


@dataclass
class Group:
    """One model at one batch size: the rotating batches, eager's outputs for them, the cost of one batch."""

    model: ModelArtifacts
    batch_size: int
    batches: list[np.ndarray]
    expected: list[list[np.ndarray]] | None
    cost: Cost


def bench_batches(
    data: np.ndarray, sample_shape: tuple[int, ...], batch_size: int, count: int = ROTATE
) -> list[np.ndarray]:
    """`count` distinct batches of `batch_size` (the rotating inputs): consecutive images, tiled where the
    data set is short, or seeded noise for shapes other than the data's."""
    if tuple(data.shape[1:]) != tuple(sample_shape):
        return [np.random.default_rng(j).random((batch_size, *sample_shape), dtype=np.float32) for j in range(count)]
    step = batch_size if batch_size * count <= len(data) else max(1, len(data) // count)
    reps = -(-(batch_size + step * (count - 1)) // len(data))
    tiled = np.concatenate([data] * reps)
    return [np.ascontiguousarray(tiled[j * step : j * step + batch_size]) for j in range(count)]


def fitted_data(images: np.ndarray, sample_shape: tuple[int, ...], batch_size: int) -> tuple[np.ndarray, list[str]]:
    """The real images fitted to a model's input (resized, grayscale for one channel), as verify and
    show feed them, where the input is an image of 1 or 3 channels, with the steps in words; otherwise
    the images as they are (`bench_batches` then draws seeded noise at the model's shape)."""
    shape = tuple(sample_shape)
    if tuple(images.shape[1:]) == shape or images.ndim != 4:
        return images, []
    if len(shape) != 3 or shape[0] not in (1, 3):
        return images, [f"seeded noise at {'x'.join(map(str, shape))} (not an image of 1 or 3 channels)"]
    return fit_array(images[: batch_size * ROTATE], shape)


def reference_outputs(model: ModelArtifacts, batches: list[np.ndarray], threads: int) -> list[list[np.ndarray]] | None:
    """Eager's outputs on the CPU for every rotating batch: what the outputs produced while timed must match."""
    try:
        with open_runtime(BASELINE_RUNTIME, model.eager_module(), "cpu", threads) as rt:
            return [run_batch(rt, model.feed(b)) for b in batches]
    except Exception:  # noqa: BLE001 - a model eager cannot run fails its eager row; the others go unchecked
        return None


def precisions(model: ModelArtifacts, runtime: str) -> list[str]:
    """fp32, then every variant `runtime` can be opened on (`export --precision`): the variant files of
    the format it reads or, for a runtime of modules, the module under each autocast precision."""
    reads = runtime_class(runtime).reads
    found = [
        v.precision for v in model.variants if (v.precision in AUTOCAST if reads == "module" else v.format == reads)
    ]
    return ["fp32", *dict.fromkeys(found)]


def artifact(model: ModelArtifacts, runtime: str, precision: str) -> str | None:
    """What a row of `runtime` in `precision` times, named: the file in the models folder, or the module."""
    if runtime_class(runtime).reads == "module":
        return "module" if precision == "fp32" else f"module under {precision}"
    record = model.record_for(runtime, precision)
    return record.path if record is not None else None


def rows_of(model: ModelArtifacts, settings: BenchSettings) -> list[tuple[str, str]]:
    """(runtime, precision) of every row of a model: fp32 on each runtime, with `--precision` also each
    variant that runtime reads, right after its fp32 row."""
    return [(r, p) for r in settings.runtimes for p in (precisions(model, r) if settings.precision else ["fp32"])]


def check_variants(models: list[ModelArtifacts], settings: BenchSettings, models_dir: Path) -> None:
    """`--precision` with nothing to add is refused in one line, never a run of fp32 rows only."""
    if not any(m.variants for m in models):
        raise PoolkitError(
            f"--precision: no model in {models_dir} has precision variants: run 'poolkit export --precision fp16,int8'"
        )
    if not any(p != "fp32" for m in models for _, p in rows_of(m, settings)):
        found = sorted({f"{v.format} {v.precision}" for m in models for v in m.variants})
        raise PoolkitError(f"--precision: no --runtime asked reads the variants there ({', '.join(found)})")
