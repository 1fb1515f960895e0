"""`poolkit bench`: time eager, TorchScript and ONNX Runtime on the CPU and CUDA, honestly.

Method (see README): the first inference is timed apart, warm-up runs are not counted, then every
iteration is timed on its own (`infer` returns only when the device is done, so CUDA work is
synchronised inside the timed call). Two figures per row: `model` times `infer` on a batch already
on the device (ONNX Runtime through IO binding), `end_to_end` adds the host copies both ways.
Thread counts are set and recorded; the clock is a parameter so tests drive it with known samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.errors import DataError, PoolkitError, one_line
from poolkit.stats import Stats, summarize
from runtimes.base import (
    RUNTIME_FORMATS,
    Artifact,
    Runtime,
    check_runtime_names,
    cuda_problem,
    open_identity,
    open_runtime,
)

if TYPE_CHECKING:
    import numpy as np

    from exporter.manifest import ExportRecord

Clock = Callable[[], float]
BENCH_SCHEMA = 1


@dataclass
class Timing:
    """What the timing loop measured: the first call alone, then every counted iteration."""

    first_s: float
    samples_s: list[float]


@dataclass
class Measurement:
    """One model on one runtime, device and batch size."""

    model: str
    runtime: str
    device: str
    batch_size: int
    status: str = "ok"  # ok | failed | unavailable
    reason: str | None = None
    provider: str | None = None
    threads: int | None = None
    warmup: int = 0
    first_run_ms: float | None = None
    latency_ms: Stats | None = None  # model only: inputs already where the runtime reads them
    end_to_end_ms: Stats | None = None  # with host-to-device and device-to-host copies
    images_per_s: float | None = None
    speedup_vs_eager: float | None = None
    flops: int | None = None
    bytes_moved: int | None = None
    gflops_per_s: float | None = None
    gb_per_s: float | None = None
    overhead_ms: float | None = None  # p50 of an Identity model on the same runtime, device and batch
    warnings: list[str] = field(default_factory=list)  # overhead- or copy-dominated, as trtexec warns
    samples_ms: list[float] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.model, self.runtime, self.device, self.batch_size)


@dataclass
class BenchSettings:
    devices: tuple[str, ...] = ("cpu",)
    runtimes: tuple[str, ...] = ("eager", "torchscript", "onnxruntime")
    batch_sizes: tuple[int, ...] = (64,)
    warmup: int = 10
    iters: int | None = 100
    min_time_s: float | None = None  # when set, run until this much time and at least 10 iterations
    threads: int | None = None  # None: every usable core, set explicitly on every runtime


@dataclass
class BenchReport:
    environment: dict[str, Any]
    settings: BenchSettings
    data: str
    measurements: list[Measurement]
    schema: int = BENCH_SCHEMA
    notes: list[str] = field(default_factory=list)


def time_calls(
    call: Callable[[], Any], warmup: int, iters: int | None, min_time_s: float | None, clock: Clock = time.perf_counter
) -> Timing:
    """Time `call`: once alone (first inference), `warmup` uncounted runs, then each counted run."""
    start = clock()
    call()
    first = clock() - start
    for _ in range(warmup):
        call()
    samples: list[float] = []
    total = 0.0
    while True:
        if iters is not None and min_time_s is None and len(samples) >= iters:
            break
        if min_time_s is not None and total >= min_time_s and len(samples) >= max(10, iters or 0):
            break
        t0 = clock()
        call()
        elapsed = clock() - t0
        samples.append(elapsed)
        total += elapsed
    return Timing(first, samples)


def usable_cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bench_batch(data: np.ndarray, sample_shape: tuple[int, ...], batch_size: int) -> np.ndarray:
    """The first `batch_size` images (tiled when more are asked for), or seeded noise for other shapes."""
    import numpy as np

    if tuple(data.shape[1:]) != tuple(sample_shape):
        return np.random.default_rng(0).random((batch_size, *sample_shape), dtype=np.float32)
    reps = -(-batch_size // len(data))
    return np.ascontiguousarray(np.concatenate([data] * reps)[:batch_size])


def measure(
    runtime: Runtime,
    batch: np.ndarray,
    settings: BenchSettings,
    clock: Clock = time.perf_counter,
) -> tuple[Timing, Timing]:
    """(model-only timing, end-to-end timing) for one runtime on one batch."""
    prepared = runtime.prepare(batch)
    model_only = time_calls(
        lambda: runtime.infer(prepared), settings.warmup, settings.iters, settings.min_time_s, clock
    )
    end_to_end = time_calls(
        lambda: runtime.to_numpy(runtime.infer(runtime.prepare(batch))),
        max(1, settings.warmup // 2),
        settings.iters,
        settings.min_time_s,
        clock,
    )
    return model_only, end_to_end


def fill(m: Measurement, model_only: Timing, end_to_end: Timing, cost: Any) -> None:
    """Statistics and the derived rates, in milliseconds and per second."""
    m.first_run_ms = model_only.first_s * 1e3
    m.samples_ms = [s * 1e3 for s in model_only.samples_s]
    m.latency_ms = summarize(m.samples_ms)
    m.end_to_end_ms = summarize([s * 1e3 for s in end_to_end.samples_s])
    p50_s = m.latency_ms.p50 / 1e3
    if p50_s > 0:
        m.images_per_s = m.batch_size / p50_s
        if cost is not None:
            m.flops, m.bytes_moved = cost.flops, cost.bytes
            m.gflops_per_s = cost.flops / p50_s / 1e9
            m.gb_per_s = cost.bytes / p50_s / 1e9


def add_speedups(measurements: list[Measurement]) -> None:
    eager = {(m.model, m.device, m.batch_size): m for m in measurements if m.runtime == "eager" and m.latency_ms}
    for m in measurements:
        ref = eager.get((m.model, m.device, m.batch_size))
        if ref and m.latency_ms and m.latency_ms.p50 > 0:
            m.speedup_vs_eager = ref.latency_ms.p50 / m.latency_ms.p50


def artifact_for(runtime: str, records: dict[tuple[str, str], ExportRecord], model: str) -> ExportRecord | None:
    """The manifest record a runtime reads (eager rebuilds from the spec + weights of either)."""
    fmt = RUNTIME_FORMATS[runtime]
    if fmt is None:
        return records.get((model, "onnx")) or records.get((model, "torchscript"))
    return records.get((model, fmt))


def run_bench(
    models_dir: Path,
    model_names: list[str],
    settings: BenchSettings,
    images: np.ndarray,
    environment: dict[str, Any] | None = None,
    data_label: str = "",
    on_step: Callable[[str], None] | None = None,
    clock: Clock = time.perf_counter,
) -> BenchReport:
    """Bench every model x runtime x device x batch size; unavailable and failed rows say why."""
    from exporter.build import build_model
    from exporter.manifest import load_manifest
    from exporter.spec import parse_spec
    from poolkit.cost import model_cost

    check_runtime_names(settings.runtimes)
    threads = settings.threads or usable_cores()
    settings = replace(settings, threads=threads)  # the report records the count really used
    records = {r.key: r for r in load_manifest(models_dir, required=True) if r.ok}
    cuda_reasons = {r: cuda_problem([r]) for r in settings.runtimes} if "cuda" in settings.devices else {}
    # An Identity's cost depends on runtime, device and batch shape, not on the model: time it once.
    overheads: dict[tuple[str, str, tuple[int, ...]], float | None] = {}
    measurements: list[Measurement] = []
    for model in model_names:
        any_record = artifact_for("eager", records, model)
        if any_record is None:
            raise DataError(f"no exported artifact for '{model}' in {models_dir}: run 'poolkit export' first")
        spec = parse_spec(any_record.spec)
        module = build_model(spec, any_record.sample_shape, seed=any_record.seed)
        for batch_size in settings.batch_sizes:
            batch = bench_batch(images, any_record.sample_shape, batch_size)
            cost = model_cost(module, any_record.sample_shape, batch_size)
            for device in settings.devices:
                for runtime_name in settings.runtimes:
                    m = Measurement(model, runtime_name, device, batch_size, threads=threads, warmup=settings.warmup)
                    measurements.append(m)
                    if on_step:
                        on_step(f"{model} {runtime_name} {device} b{batch_size}")
                    if device == "cuda" and cuda_reasons.get(runtime_name):
                        m.status, m.reason = "unavailable", cuda_reasons[runtime_name]
                        continue
                    record = artifact_for(runtime_name, records, model)
                    if record is None:
                        m.status, m.reason = "failed", f"no {RUNTIME_FORMATS[runtime_name]} artifact exported"
                        continue
                    if not record.dynamic_batch and int(record.input_shape[0]) != batch_size:
                        m.status = "failed"
                        m.reason = f"the ONNX file has a static batch of {record.input_shape[0]}"
                        continue
                    artifact = Artifact(record, Path(models_dir))
                    _measure_row(m, runtime_name, artifact, batch, settings, cost, clock, overheads)
    add_speedups(measurements)
    return BenchReport(environment or {}, settings, data_label, measurements)


def _measure_row(
    m: Measurement,
    runtime_name: str,
    artifact: Artifact,
    batch: np.ndarray,
    settings: BenchSettings,
    cost: Any,
    clock: Clock,
    overheads: dict[tuple[str, str, tuple[int, ...]], float | None],
) -> None:
    try:
        runtime = open_runtime(runtime_name, artifact, m.device, m.threads)
    except PoolkitError as exc:
        m.status, m.reason = ("unavailable" if exc.exit_code == 2 else "failed"), str(exc)
        return
    try:
        m.provider = runtime.provider
        if not provider_matches(m.device, m.provider):  # never label one device's time as another's
            raise PoolkitError(f"asked for {m.device}, but {m.provider} ran it")
        model_only, end_to_end = measure(runtime, batch, settings, clock)
        fill(m, model_only, end_to_end, cost)
        key = (runtime_name, m.device, tuple(batch.shape))
        if key not in overheads:
            overheads[key] = measure_overhead(runtime_name, m.device, batch, settings, m.threads, clock)
        m.overhead_ms = overheads[key]
        m.warnings = diagnose(m)
    except Exception as exc:  # noqa: BLE001 - a runtime that cannot run is a failed row, the rest go on
        m.status, m.reason = "failed", one_line(exc)
    finally:
        runtime.close()


def measure_overhead(
    runtime_name: str, device: str, batch: np.ndarray, settings: BenchSettings, threads: int | None, clock: Clock
) -> float | None:
    """p50 (ms) of the same runtime running an Identity on the same batch: the cost of a call itself."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="poolkit-identity-") as folder:
        identity = open_identity(runtime_name, device, tuple(batch.shape[1:]), Path(folder), threads)
        if identity is None:
            return None
        try:
            prepared = identity.prepare(batch)
            timing = time_calls(
                lambda: identity.infer(prepared), settings.warmup, settings.iters, settings.min_time_s, clock
            )
        finally:
            identity.close()
    return summarize([s * 1e3 for s in timing.samples_s]).p50


OVERHEAD_SHARE = 0.5  # an Identity costing half the figure or more: the call, not the model, is measured
COPY_FACTOR = 2.0  # end-to-end twice the model-only figure or more: host copies dominate


def diagnose(m: Measurement) -> list[str]:
    """What a reader should know before trusting the figure (trtexec warns the same way)."""
    notes = []
    if m.latency_ms is None:
        return notes
    p50 = m.latency_ms.p50
    if m.overhead_ms is not None and p50 > 0 and m.overhead_ms >= OVERHEAD_SHARE * p50:
        notes.append(
            f"overhead: an Identity call takes {m.overhead_ms:.3f} ms, {m.overhead_ms / p50:.0%} of this figure"
        )
    if m.end_to_end_ms is not None and p50 > 0 and m.end_to_end_ms.p50 >= COPY_FACTOR * p50:
        notes.append(f"copies: end to end takes {m.end_to_end_ms.p50 / p50:.1f}x the model-only time")
    if m.latency_ms.unstable:
        notes.append(f"unstable: CV {m.latency_ms.cv:.0%}")
    return notes


def provider_matches(device: str, provider: str) -> bool:
    name = provider.lower()
    return ("cuda" in name or "tensorrt" in name) if device == "cuda" else ("cpu" in name)


def self_check(models_dir: Path, model: str, threads: int | None, batch_size: int = 64) -> dict[str, float]:
    """poolkit's eager p50 against torch.utils.benchmark.Timer's median, same model, thread count and batch."""
    import numpy as np
    import torch

    from exporter.manifest import load_manifest
    from poolkit.capture import captured_output

    with captured_output():  # its import logs about CUDA_HOME on machines without CUDA
        import torch.utils.benchmark as tb

    records = {r.key: r for r in load_manifest(models_dir, required=True) if r.ok}
    record = artifact_for("eager", records, model)
    if record is None:
        raise DataError(f"no exported artifact for '{model}' in {models_dir}: run 'poolkit export' first")
    threads = threads or usable_cores()
    runtime = open_runtime("eager", Artifact(record, Path(models_dir)), "cpu", threads)
    x = np.random.default_rng(0).random((batch_size, *record.sample_shape), dtype=np.float32)
    prepared = runtime.prepare(x)
    ours = summarize([t * 1e3 for t in time_calls(lambda: runtime.infer(prepared), 10, 200, None).samples_s]).p50
    timer = tb.Timer(
        stmt="with torch.inference_mode(): module(x)",
        globals={"module": runtime.module, "x": prepared, "torch": torch},
        num_threads=threads,
    )
    theirs = timer.blocked_autorange(min_run_time=1.0).median * 1e3
    runtime.close()
    return {
        "model": model,
        "threads": threads,
        "batch_size": batch_size,
        "poolkit_p50_ms": ours,
        "torch_benchmark_median_ms": theirs,
        "ratio": ours / theirs,
        "within_10_percent": abs(ours / theirs - 1) <= 0.10,
    }
