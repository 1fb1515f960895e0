"""`poolkit bench --precision`: each precision variant timed beside its fp32 artifact, on the same runtime.

For every model, format and device: the fp32 artifact and each variant of it (`export --precision`)
are opened on the runtime that reads the format and timed in interleaved rounds (fp32, fp16, int8,
fp32, ...), so a shared machine's load falls on all of them alike. A variant's speed-up is fp32's
median over its own, on the same runtime and device: never against another runtime. Beside speed,
its accuracy cost on the same batch: the relative rms error of its output against fp32 eager (and
top-1 disagreement for classifiers), which the trade-off plot puts against the speed-up. A variant
the runtime cannot run is a row with the reason, never timed as something else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.bench.loop import timed_loop
from poolkit.bench.stats import Stats, summarize
from poolkit.common.errors import PoolkitError, one_line
from poolkit.exporter.manifest import ExportRecord
from poolkit.exporter.precision import AUTOCAST
from poolkit.runtimes.base import Runtime, run_batch
from poolkit.runtimes.registry import cuda_problem, open_runtime, reader_of
from poolkit.services.artifacts import ModelArtifacts, open_artifacts
from poolkit.services.cifar10 import IMAGE_SHAPE, load_images, synthetic_images

if TYPE_CHECKING:
    import numpy as np


@dataclass
class PrecisionTiming:
    model: str
    format: str
    precision: str
    runtime: str
    device: str
    batch: int
    status: str = "ok"  # ok | failed | unavailable
    reason: str | None = None
    samples_ms: list[float] = field(default_factory=list)
    rel_rms: float | None = None  # rms(variant - fp32 eager) / rms(fp32 eager)
    top1_loss: float | None = None  # share of images whose class differs from fp32 eager's
    speedup: float | None = None  # fp32's median / this one's, same runtime and device

    @property
    def stats(self) -> Stats | None:
        return summarize(self.samples_ms) if self.samples_ms else None

    @property
    def median_ms(self) -> float | None:
        s = self.stats
        return s.p50 if s else None

    def __json__(self) -> dict[str, Any]:
        s = self.stats
        plain = {k: v for k, v in self.__dict__.items() if k != "samples_ms"}
        return {**plain, "median_ms": s.p50 if s else None, "ci95_ms": [s.ci95_low, s.ci95_high] if s else None,
                "cv": s.cv if s else None, "samples": len(self.samples_ms)}  # fmt: skip


@dataclass
class PrecisionBench:
    rows: list[PrecisionTiming]
    threads: int | None
    rounds: int
    iters: int
    environment: dict[str, Any] = field(default_factory=dict)


def bench_precisions(
    models_dir: Path,
    names: list[str] | None,
    devices: tuple[str, ...] = ("cpu",),
    batch_size: int = 64,
    iters: int = 30,
    rounds: int = 5,
    warmup: int = 5,
    threads: int | None = None,
) -> PrecisionBench:
    """Every model with variants: fp32 and each variant per format and device, interleaved rounds."""
    models = [m for m in open_artifacts(Path(models_dir), names) if m.variants]
    if not models:
        raise PoolkitError(
            f"no model in {models_dir} has precision variants: run 'poolkit export --precision fp16,int8'"
        )
    images = load_images("cifar10")
    rows: list[PrecisionTiming] = []
    for model in models:
        groups: dict[str, list[tuple[str, ExportRecord | None]]] = {}
        for fmt in dict.fromkeys(v.format for v in model.variants):
            base = model.records.get(fmt)
            records = [r for r in (base, *[v for v in model.variants if v.format == fmt]) if r is not None]
            groups[fmt] = [(r.precision, r) for r in records]
        autocast = sorted({v.precision for v in model.variants if v.precision in AUTOCAST})
        if autocast:  # the eager path: the module itself under autocast, against itself in fp32
            groups["eager"] = [("fp32", None), *((p, None) for p in autocast)]
        for fmt, entries in groups.items():
            for device in devices:
                rows.extend(
                    _bench_group(model, fmt, entries, device, images, batch_size, iters, rounds, warmup, threads)
                )
    return PrecisionBench(rows, threads, rounds, iters)


def _batch(model: ModelArtifacts, images: Any, batch_size: int) -> np.ndarray:
    import numpy as np

    shape = model.reference.sample_shape if model.reference else IMAGE_SHAPE
    data = images.images if shape == IMAGE_SHAPE else synthetic_images(batch_size, shape).images
    return np.ascontiguousarray(data[:batch_size], dtype=np.float32)


def _bench_group(
    model: ModelArtifacts,
    fmt: str,
    entries: list[tuple[str, ExportRecord | None]],
    device: str,
    images: Any,
    batch_size: int,
    iters: int,
    rounds: int,
    warmup: int,
    threads: int | None,
) -> list[PrecisionTiming]:
    """fp32 and its variants of one format on one device, opened together and timed in turn."""
    import contextlib

    x = _batch(model, images, batch_size)
    reference = _as64(run_batch(model.open("eager", "cpu"), x)[0])
    rows, opened = [], []
    with contextlib.ExitStack() as stack:
        for precision, record in entries:
            runtime = reader_of(fmt) if record is not None else "eager"
            row = PrecisionTiming(model.name, fmt, precision, runtime, device, len(x))
            rows.append(row)
            rt = _open(model, record, runtime, device, threads, row, stack)
            if rt is None:
                continue
            try:
                out = _as64(run_batch(rt, x)[0])
                for _ in range(warmup):
                    run_batch(rt, x)
            except Exception as exc:  # noqa: BLE001 - a runtime without kernels for this precision
                row.status, row.reason = "failed", f"{runtime} cannot run it: {one_line(exc)}"
                continue
            row.rel_rms, row.top1_loss = _accuracy(out, reference)
            opened.append((row, rt))
        for _ in range(rounds):  # interleaved: the machine's load falls on every precision alike
            for row, rt in opened:
                row.samples_ms += _time_round(rt, x, max(1, iters // rounds))
    fp32 = next((r for r in rows if r.precision == "fp32" and r.median_ms), None)
    for row in rows:
        if fp32 is not None and row.median_ms:
            row.speedup = fp32.median_ms / row.median_ms if fp32.median_ms else None
    return rows


def _time_round(rt: Runtime, x: np.ndarray, n: int) -> list[float]:
    """One round of `n` calls on a prepared batch, in milliseconds (the loop bench itself uses)."""
    prepared = rt.prepare(x)
    return [s * 1e3 for s in timed_loop(lambda i: rt.infer(prepared), n).host_s]


def _open(
    model: ModelArtifacts, record: ExportRecord | None, runtime: str, device: str, threads: int | None,
    row: PrecisionTiming, stack: Any,
) -> Runtime | None:  # fmt: skip
    """The runtime on the record's file; no record: eager on the module, under autocast for those rows."""
    if device == "cuda":
        problem = cuda_problem([runtime])
        if problem:
            row.status, row.reason = "unavailable", problem
            return None
    try:
        if record is None:
            from poolkit.exporter.layers import autocast_variant  # imports torch: only when eager rows run

            module = model.eager_module()
            source: Any = autocast_variant(module, AUTOCAST[row.precision]) if row.precision in AUTOCAST else module
        else:
            source = model.variant_path(record) if record.precision != "fp32" else model.source(runtime)
        return stack.enter_context(open_runtime(runtime, source, device, threads))
    except PoolkitError as exc:
        row.status, row.reason = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001
        row.status, row.reason = "failed", f"{runtime} cannot load it: {one_line(exc)}"
    return None


def _as64(out: Any) -> np.ndarray:
    import numpy as np

    return np.asarray(out, dtype=np.float64)


def _accuracy(out: np.ndarray, ref: np.ndarray) -> tuple[float, float | None]:
    import numpy as np

    signal = float(np.sqrt(np.mean(ref * ref))) or 1.0
    rel = float(np.sqrt(np.mean((out - ref) ** 2))) / signal
    top1 = float(np.mean(np.argmax(out, 1) != np.argmax(ref, 1))) if ref.ndim == 2 and ref.shape[1] > 1 else None
    return rel, top1


def write_tradeoff_plot(bench: PrecisionBench, path: Path, machine: str) -> Path | None:
    """Accuracy loss against speed-up, one point per model, runtime and precision (fp32 at (1, 0))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from poolkit.common.files import write_atomic

    points = [r for r in bench.rows if r.speedup is not None and r.rel_rms is not None and r.precision != "fp32"]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in points:
        loss, speedup = max(r.rel_rms or 0.0, 1e-9), r.speedup or 1.0
        ax.scatter(speedup, loss, s=40)
        ax.annotate(f"{r.model} {r.precision} {r.runtime}-{r.device}", (r.speedup or 0, loss), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")  # fmt: skip
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"speed-up vs fp32 on the same runtime (median, batch {points[0].batch})")
    ax.set_ylabel("accuracy loss: rms(variant - fp32) / rms(fp32)")
    ax.set_title(f"precision trade-off — {machine}", fontsize=9)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path


def speedup_text(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def run_precision_bench(
    models_dir: Path, names: list[str] | None, devices: tuple[str, ...], batch_size: int, iters: int,
    threads: int | None, out: Path,
) -> tuple[PrecisionBench, dict[str, Path]]:  # fmt: skip
    """What `poolkit bench --precision` does: time, then write bench_precision.json and the trade-off plot."""
    from poolkit.common.files import write_json_atomic
    from poolkit.common.machine import usable_cores
    from poolkit.services.environment import cpu_model, environment

    bench = bench_precisions(models_dir, names, devices, batch_size, iters, threads=threads or usable_cores())
    bench.environment = environment()
    written = {"json": write_json_atomic(Path(out) / "bench_precision.json", bench)}
    machine = f"{cpu_model()}, {usable_cores()} cores"
    plot = write_tradeoff_plot(bench, Path(out) / "bench_precision.png", machine)
    if plot is not None:
        written["png"] = plot
    return bench, written
