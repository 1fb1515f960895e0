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
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.commands.artifacts import ModelArtifacts, open_artifacts
from poolkit.commands.stats import Stats, summarize
from poolkit.common.errors import PoolkitError, one_line
from poolkit.runtimes.base import Runtime
from poolkit.runtimes.registry import cuda_problem, open_runtime, runtime_class

if TYPE_CHECKING:
    import numpy as np

Clock = Callable[[], float]
BENCH_SCHEMA = 2  # 2: raw samples are the record, statistics are derived from them


@dataclass
class Timing:
    """What the timing loop measured: the first call alone, then every counted iteration."""

    first_s: float
    samples_s: list[float]


OVERHEAD_SHARE = 0.5  # an Identity costing half the figure or more: the call, not the model, is measured
COPY_FACTOR = 2.0  # end-to-end twice the model-only figure or more: host copies dominate


@dataclass(frozen=True)
class Flag:
    """Something a reader should know before trusting a figure (trtexec warns the same way)."""

    kind: str  # overhead | copies | unstable
    message: str


@dataclass
class Measurement:
    """One model on one runtime, device and batch size: raw samples and settings; the rest is derived."""

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
    samples_ms: list[float] = field(default_factory=list)  # model only: inputs already where the runtime reads them
    e2e_samples_ms: list[float] = field(default_factory=list)  # with host-to-device and device-to-host copies
    overhead_ms: float | None = None  # p50 of an Identity model on the same runtime, device and batch
    flops: int | None = None
    bytes_moved: int | None = None
    speedup_vs_eager: float | None = None  # set once per report by add_speedups: it needs the eager row

    DERIVED = ("latency_ms", "end_to_end_ms", "images_per_s", "gflops_per_s", "gb_per_s", "flags")

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.model, self.runtime, self.device, self.batch_size)

    @cached_property
    def latency_ms(self) -> Stats | None:
        return summarize(self.samples_ms) if self.samples_ms else None

    @cached_property
    def end_to_end_ms(self) -> Stats | None:
        return summarize(self.e2e_samples_ms) if self.e2e_samples_ms else None

    def _per_p50(self, amount: float | None) -> float | None:
        s = self.latency_ms
        return amount / (s.p50 / 1e3) if s is not None and s.p50 > 0 and amount is not None else None

    @property
    def images_per_s(self) -> float | None:
        return self._per_p50(self.batch_size)

    @property
    def gflops_per_s(self) -> float | None:
        rate = self._per_p50(self.flops)
        return rate / 1e9 if rate is not None else None

    @property
    def gb_per_s(self) -> float | None:
        rate = self._per_p50(self.bytes_moved)
        return rate / 1e9 if rate is not None else None

    @property
    def flags(self) -> list[Flag]:
        """Overhead- or copy-dominated, or unstable: computed here and only here."""
        s = self.latency_ms
        if s is None:
            return []
        flags = []
        if self.overhead_ms is not None and s.p50 > 0 and self.overhead_ms >= OVERHEAD_SHARE * s.p50:
            flags.append(
                Flag(
                    "overhead",
                    f"overhead: an Identity call takes {self.overhead_ms:.3f} ms, {self.overhead_ms / s.p50:.0%} of this figure",
                )
            )
        e2e = self.end_to_end_ms
        if e2e is not None and s.p50 > 0 and e2e.p50 >= COPY_FACTOR * s.p50:
            flags.append(Flag("copies", f"copies: end to end takes {e2e.p50 / s.p50:.1f}x the model-only time"))
        if s.unstable:
            flags.append(Flag("unstable", f"unstable: CV {s.cv:.0%}"))
        return flags

    def __json__(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update({name: getattr(self, name) for name in self.DERIVED})
        return data


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


def fill(m: Measurement, model_only: Timing, end_to_end: Timing) -> None:
    """Keep the raw samples, in milliseconds; every statistic is derived from them."""
    m.first_run_ms = model_only.first_s * 1e3
    m.samples_ms = [s * 1e3 for s in model_only.samples_s]
    m.e2e_samples_ms = [s * 1e3 for s in end_to_end.samples_s]


def add_speedups(measurements: list[Measurement]) -> None:
    eager = {(m.model, m.device, m.batch_size): m.latency_ms for m in measurements if m.runtime == "eager"}
    for m in measurements:
        ref = eager.get((m.model, m.device, m.batch_size))
        if ref is not None and m.latency_ms is not None and m.latency_ms.p50 > 0:
            m.speedup_vs_eager = ref.p50 / m.latency_ms.p50


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
    from poolkit.commands.cost import model_cost

    for name in settings.runtimes:
        runtime_class(name)  # unknown names are a usage error before anything runs
    threads = settings.threads or usable_cores()
    settings = replace(settings, threads=threads)  # the report records the count really used
    cuda_reasons = {r: cuda_problem([r]) for r in settings.runtimes} if "cuda" in settings.devices else {}
    # An Identity's cost depends on runtime, device and batch shape, not on the model: time it once.
    overheads: dict[tuple[str, str, tuple[int, ...]], float | None] = {}
    measurements: list[Measurement] = []
    for model in open_artifacts(Path(models_dir), model_names):
        reference = model.reference
        if reference is None:
            raise PoolkitError(f"no successful export of '{model.name}' in {models_dir}: run 'poolkit export' first")
        sample_shape = reference.sample_shape
        module = model.eager_module()
        for batch_size in settings.batch_sizes:
            batch = bench_batch(images, sample_shape, batch_size)
            cost = model_cost(module, sample_shape, batch_size)
            for device in settings.devices:
                for runtime_name in settings.runtimes:
                    m = Measurement(
                        model.name, runtime_name, device, batch_size, threads=threads, warmup=settings.warmup
                    )
                    m.flops, m.bytes_moved = cost.flops, cost.bytes
                    measurements.append(m)
                    if on_step:
                        on_step(f"{model.name} {runtime_name} {device} b{batch_size}")
                    if device == "cuda" and cuda_reasons.get(runtime_name):
                        m.status, m.reason = "unavailable", cuda_reasons[runtime_name]
                        continue
                    problem = _row_problem(model, runtime_name, batch_size)
                    if problem:
                        m.status, m.reason = "failed", problem
                        continue
                    _measure_row(m, model, batch, settings, clock, overheads)
    add_speedups(measurements)
    return BenchReport(environment or {}, settings, data_label, measurements)


def _row_problem(model: ModelArtifacts, runtime_name: str, batch_size: int) -> str | None:
    problem = model.problem(runtime_name)
    record = model.record_for(runtime_name)
    if problem is None and record is not None and not record.dynamic_batch and int(record.input_shape[0]) != batch_size:
        problem = f"the {record.format} file has a static batch of {record.input_shape[0]}"
    return problem


def _measure_row(
    m: Measurement,
    model: ModelArtifacts,
    batch: np.ndarray,
    settings: BenchSettings,
    clock: Clock,
    overheads: dict[tuple[str, str, tuple[int, ...]], float | None],
) -> None:
    try:
        runtime = model.open(m.runtime, m.device, m.threads)
    except PoolkitError as exc:
        m.status, m.reason = ("unavailable" if exc.exit_code == 2 else "failed"), str(exc)
        return
    with runtime:
        try:
            m.provider = runtime.provider
            if not provider_matches(m.device, m.provider):  # never label one device's time as another's
                raise PoolkitError(f"asked for {m.device}, but {m.provider} ran it")
            fill(m, *measure(runtime, batch, settings, clock))
            key = (m.runtime, m.device, tuple(batch.shape))
            if key not in overheads:
                overheads[key] = measure_overhead(m.runtime, m.device, batch, settings, m.threads, clock)
            m.overhead_ms = overheads[key]
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot run is a failed row, the rest go on
            m.status, m.reason = "failed", one_line(exc)


def measure_overhead(
    runtime_name: str, device: str, batch: np.ndarray, settings: BenchSettings, threads: int | None, clock: Clock
) -> float | None:
    """p50 (ms) of the same runtime running an Identity on the same batch: the cost of a call itself."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="poolkit-identity-") as folder:
        source = runtime_class(runtime_name).identity_source(Path(folder), tuple(batch.shape[1:]))
        if source is None:
            return None
        with open_runtime(runtime_name, source, device, threads) as identity:
            prepared = identity.prepare(batch)
            timing = time_calls(
                lambda: identity.infer(prepared), settings.warmup, settings.iters, settings.min_time_s, clock
            )
    return summarize([s * 1e3 for s in timing.samples_s]).p50


def provider_matches(device: str, provider: str) -> bool:
    name = provider.lower()
    return ("cuda" in name or "tensorrt" in name) if device == "cuda" else ("cpu" in name)


def self_check(models_dir: Path, model: str, threads: int | None, batch_size: int = 64) -> dict[str, Any]:
    """poolkit's eager p50 against torch.utils.benchmark.Timer's median, same model, thread count and batch."""
    import numpy as np
    import torch

    from poolkit.common.capture import captured_output

    with captured_output():  # its import logs about CUDA_HOME on machines without CUDA
        import torch.utils.benchmark as tb

    (artifacts,) = open_artifacts(Path(models_dir), [model])
    module = artifacts.eager_module()
    sample_shape = artifacts.reference.sample_shape if artifacts.reference else ()
    threads = threads or usable_cores()
    x = np.random.default_rng(0).random((batch_size, *sample_shape), dtype=np.float32)
    with open_runtime("eager", module, "cpu", threads) as runtime:
        prepared = runtime.prepare(x)
        ours = summarize([t * 1e3 for t in time_calls(lambda: runtime.infer(prepared), 10, 200, None).samples_s]).p50
        timer = tb.Timer(
            stmt="with torch.inference_mode(): module(x)",
            globals={"module": module, "x": prepared, "torch": torch},
            num_threads=threads,
        )
        theirs = timer.blocked_autorange(min_run_time=1.0).median * 1e3
    return {
        "model": model,
        "threads": threads,
        "batch_size": batch_size,
        "poolkit_p50_ms": ours,
        "torch_benchmark_median_ms": theirs,
        "ratio": ours / theirs,
        "within_10_percent": abs(ours / theirs - 1) <= 0.10,
    }


@dataclass
class BenchRun:
    """What `poolkit bench` produced: the report, the files written, the comparison asked for."""

    report: BenchReport
    files: dict[str, Path]
    compare: list[Any] | None = None
    exported: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(m.status == "failed" for m in self.report.measurements)


def run_bench_command(
    models_dir: Path,
    names: list[str] | None,
    settings: BenchSettings,
    out: Path,
    compare: Path | None = None,
    on_step: Callable[[str], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> BenchRun:
    """What `poolkit bench` does: check the inputs, export what is missing, bench, write, compare."""
    from poolkit.commands.bench_report import compare_runs, load_report, write_reports
    from poolkit.commands.cifar10 import load_cifar10
    from poolkit.commands.envinfo import environment
    from poolkit.exporter.export import ensure_exported
    from poolkit.exporter.zoo import resolve_models
    from poolkit.runtimes.registry import require_cuda

    old = load_report(compare) if compare else None  # a bad --compare file fails before any timing
    for name in settings.runtimes:
        cls = runtime_class(name)
        if not set(settings.devices) & set(cls.devices):
            raise PoolkitError(f"--runtime {name} runs on --device {' or '.join(cls.devices)} only")
    if settings.devices == ("cuda",):
        require_cuda(settings.runtimes)
    refs = resolve_models(names)
    exported = ensure_exported(refs, models_dir)
    images = load_cifar10()
    if on_total:
        on_total(len(refs) * len(settings.batch_sizes) * len(settings.devices) * len(settings.runtimes))
    report = run_bench(
        models_dir, [r.name for r in refs], settings, images.images, environment(), images.source.note, on_step
    )
    files = write_reports(report, out)
    changes = compare_runs(old, report.measurements) if old is not None else None
    return BenchRun(report, files, changes, exported)


def run_self_check(models_dir: Path, names: list[str] | None, threads: int | None, batch_size: int) -> dict[str, Any]:
    """`poolkit bench --self-check`: the first model, exported if missing, against torch.utils.benchmark."""
    from poolkit.exporter.export import ensure_exported
    from poolkit.exporter.zoo import resolve_models

    refs = resolve_models(names)
    ensure_exported(refs[:1], models_dir)
    return self_check(models_dir, refs[0].name, threads, batch_size)
