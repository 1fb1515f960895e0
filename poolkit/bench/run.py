"""`poolkit bench`: time eager, TorchScript and ONNX Runtime on the CPU and CUDA, honestly.

Method (see README): each runtime is timed in its own worker process (`worker`), fed the same
batch; the parent collects raw samples and interleaves rounds across runtimes (`scheduler`) so a
drift of the machine touches all alike. A runtime with a spin-wait setting keeps its default
(on) there (`--ort-spinning` records and changes it); `--in-process` times everything in this
process, where spinning is off by default to protect torch. Per row: load time, first inference,
warm-up (not counted), then steady-state samples (`timer`, through the one loop in `loop`).
`model` times the call on a batch already on the device (pre-allocated outputs where the runtime
has them), `end_to_end` runs host arrays in and out as a user's loop does. Where a runtime with a
profiler is more than PROFILE_SLOWDOWN slower than eager, its profile names the op that dominates.
The clock is a parameter so tests drive it with known samples.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from poolkit.bench.cost import model_cost
from poolkit.bench.loop import Clock
from poolkit.bench.measurement import BASELINE_RUNTIME, BenchReport, BenchSettings, Measurement, add_speedups
from poolkit.bench.outputs import ROTATE
from poolkit.bench.report import Change, changes_since, load_report, write_reports
from poolkit.bench.roofs import HostRoofs, measure_host_roofs
from poolkit.bench.scheduler import OpenRow, sample_interleaved
from poolkit.bench.stats import summarize
from poolkit.bench.timer import Timer, full_feed
from poolkit.bench.worker import Timers
from poolkit.common.errors import PoolkitError
from poolkit.common.machine import usable_cores
from poolkit.exporter.ensure import ensure_exported
from poolkit.exporter.zoo import resolve_models
from poolkit.runtimes.base import run_batch
from poolkit.runtimes.registry import RUNTIMES, cuda_problem, formats_read, open_runtime, require_cuda, runtime_class
from poolkit.services.artifacts import ModelArtifacts, open_artifacts
from poolkit.services.cifar10 import load_cifar10
from poolkit.services.environment import environment, load_warning, machine_state
from poolkit.services.image_fit import fit_array

PROFILE_SLOWDOWN = 1.5  # a runtime with a profiler this much slower than eager: profile the row and say which op


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
            return [run_batch(rt, full_feed(model, b)) for b in batches]
    except Exception:  # noqa: BLE001 - a model eager cannot run fails its eager row; the others go unchecked
        return None


def run_bench(
    models_dir: Path,
    model_names: list[str],
    settings: BenchSettings,
    images: np.ndarray,
    environment: dict[str, Any] | None = None,
    data_label: str = "",
    on_step: Callable[[str], None] | None = None,
    clock: Clock = time.perf_counter,
    roofs: HostRoofs | None = None,
) -> BenchReport:
    """Bench every model x runtime x device x batch size x thread count; unavailable and failed rows say why."""
    for name in settings.runtimes:
        runtime_class(name)  # unknown names are a usage error before anything runs
    counts = settings.thread_counts or (settings.threads or usable_cores(),)
    settings = replace(settings, threads=counts[0], thread_counts=counts)  # the report records the counts used
    cuda_reasons = {r: cuda_problem([r]) for r in settings.runtimes} if "cuda" in settings.devices else {}
    gpu_peak = (environment or {}).get("gpu_peak_gb_per_s")
    measurements: list[Measurement] = []
    notes: list[str] = []  # how the data was fitted to each model whose input is not the data's
    timers = Timers(settings, clock)
    try:
        # Every worker starts now: their imports (torch, seconds each) overlap with each other and with
        # the first model's reference outputs, instead of one after another at each first open.
        timers.start_all([(r, d, t) for d in settings.devices for t in counts for r in settings.runtimes
                          if not (d == "cuda" and cuda_reasons.get(r))])  # fmt: skip
        for model in open_artifacts(Path(models_dir), model_names):
            reference = model.reference
            if reference is None:
                raise PoolkitError(
                    f"no successful export of '{model.name}' in {models_dir}: run 'poolkit export' first"
                )
            sample_shape = reference.sample_shape
            module = model.eager_module()
            for batch_size in settings.batch_sizes:
                data, steps = fitted_data(images, sample_shape, batch_size)
                batches = bench_batches(data, sample_shape, batch_size)
                if steps and not any(n.startswith(f"data for {model.name}:") for n in notes):
                    notes.append(f"data for {model.name}: {'; '.join(steps)}")
                expected = reference_outputs(model, batches, counts[0])
                cost = model_cost(module, sample_shape, batch_size)
                for device, threads in itertools.product(settings.devices, counts):
                    rows: list[OpenRow] = []
                    for runtime_name in settings.runtimes:
                        cpu = device == "cpu"
                        m = Measurement(
                            model.name, runtime_name, device, batch_size, threads=threads, warmup=settings.warmup,
                            process=timers.process, cuda_graphs=settings.cuda_graphs and device == "cuda",
                            ort_spinning=settings.spinning if runtime_class(runtime_name).has_spinning else None,
                            ci_target=settings.ci_target if settings.min_time_s is not None else None,
                            peak_gb_per_s=(roofs.gb_per_s if roofs else None) if cpu else gpu_peak,
                            peak_gflops_per_s=roofs.gflops_per_s if roofs and cpu else None,
                        )  # fmt: skip
                        m.flops, m.bytes_moved = cost.flops, cost.bytes
                        measurements.append(m)
                        if on_step:
                            on_step(f"{model.name} {runtime_name} {device} b{batch_size} t{threads}")
                        if device == "cuda" and cuda_reasons.get(runtime_name):
                            m.status, m.reason = "unavailable", cuda_reasons[runtime_name]
                            continue
                        problem = _row_problem(model, runtime_name, batch_size)
                        if problem:
                            m.status, m.reason = "failed", problem
                            continue
                        row = _open_row(
                            m, model, batches, expected, settings, timers.get(runtime_name, device, threads)
                        )
                        if row is not None:
                            rows.append(row)
                    _measure_group(rows, settings)
    except BaseException:
        timers.abandon()  # Ctrl-C or an error: the workers are killed, not waited for
        raise
    finally:
        timers.shutdown()
    add_speedups(measurements)
    return BenchReport(environment or {}, settings, data_label, measurements, notes=notes)


def _row_problem(model: ModelArtifacts, runtime_name: str, batch_size: int) -> str | None:
    problem = model.problem(runtime_name)
    record = model.record_for(runtime_name)
    if problem is None and record is not None and not record.dynamic_batch and int(record.input_shape[0]) != batch_size:
        problem = f"the {record.format} file has a static batch of {record.input_shape[0]}"
    return problem


def _open_row(
    m: Measurement,
    model: ModelArtifacts,
    batches: list[np.ndarray],
    expected: list[list[np.ndarray]] | None,
    settings: BenchSettings,
    timer: Timer,
) -> OpenRow | None:
    """Open the model on the row's timer (load time, first inference, warm-up); None when it cannot run."""
    try:
        opened = timer.open(str(model.models_dir), model.reopen_name, batches, settings.warmup, expected, model)
    except PoolkitError as exc:
        m.status, m.reason = ("unavailable" if exc.exit_code == 2 else "failed"), str(exc)
        return None
    m.provider, m.load_ms, m.first_run_ms = opened.provider, opened.load_s * 1e3, opened.first_s * 1e3
    if not provider_matches(m.device, m.provider):  # never label one device's time as another's
        m.status, m.reason = "failed", f"asked for {m.device}, but {m.provider} ran it"
        timer.close()
        return None
    warm = sorted(opened.warmup_s)
    return OpenRow(m, timer, warm[len(warm) // 2] if warm else opened.first_s)


def _measure_group(rows: list[OpenRow], settings: BenchSettings) -> None:
    """Interleaved rounds for one model, batch, device and thread count; then overheads, profiles, and close."""
    try:
        sample_interleaved(rows, settings)
        eager = next((r.m for r in rows if r.m.runtime == BASELINE_RUNTIME and r.m.samples_ms), None)
        for row in rows:
            m = row.m
            if m.status != "ok":
                continue
            try:
                m.overhead_ms = row.timer.overhead(settings.iters or 100)
            except PoolkitError as exc:
                m.status, m.reason = "failed", str(exc)
                continue
            if runtime_class(m.runtime).has_profiler and needs_profile(m, eager):
                try:
                    m.profile = row.timer.profile()
                except PoolkitError as exc:  # the samples stand; only the explanation is missing
                    m.profile = {"error": str(exc)}
    finally:
        for row in rows:
            row.timer.close()


def needs_profile(m: Measurement, eager: Measurement | None) -> bool:
    """Slower than eager by more than PROFILE_SLOWDOWN on the same model, device and batch."""
    if eager is None or not eager.samples_ms or not m.samples_ms:
        return False
    return summarize(m.samples_ms).p50 > PROFILE_SLOWDOWN * summarize(eager.samples_ms).p50


def provider_matches(device: str, provider: str) -> bool:
    name = provider.lower()
    return ("cuda" in name or "tensorrt" in name) if device == "cuda" else ("cpu" in name)


@dataclass
class BenchRun:
    """What `poolkit bench` produced: the report, the files written, the changes since a --baseline run."""

    report: BenchReport
    files: dict[str, Path]
    changes: list[Change] | None = None  # against --baseline, when one was given
    exported: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(m.status == "failed" for m in self.report.measurements)


def check_settings(settings: BenchSettings) -> None:
    """Options that cannot apply to the runtimes and devices asked for are refused, never ignored."""
    for name in settings.runtimes:
        cls = runtime_class(name)
        if not set(settings.devices) & set(cls.devices):
            raise PoolkitError(f"--runtime {name} runs on --device {' or '.join(cls.devices)} only")
    if settings.cuda_graphs and "cuda" not in settings.devices:
        raise PoolkitError("--cuda-graphs applies to CUDA rows only: add --device cuda or --device all")
    spinners = [name for name, cls in RUNTIMES.items() if cls.has_spinning]
    if settings.ort_spinning is not None and not any(runtime_class(r).has_spinning for r in settings.runtimes):
        raise PoolkitError(f"--ort-spinning applies to {spinners[0]} rows only: add --runtime {spinners[0]}")
    if settings.devices == ("cuda",):
        require_cuda(settings.runtimes)


def run_bench_command(
    models_dir: Path,
    names: list[str] | None,
    settings: BenchSettings,
    out: Path,
    baseline: Path | None = None,
    on_step: Callable[[str], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> BenchRun:
    """What `poolkit bench` does: check the inputs, export what is missing, bench, write, set against the baseline."""
    old = load_report(baseline) if baseline else None  # a bad --baseline file fails before any timing
    check_settings(settings)
    refs = resolve_models(names)
    exported = ensure_exported(refs, models_dir, formats_read(settings.runtimes))
    images = load_cifar10()
    if on_total:
        on_total(len(refs) * len(settings.batch_sizes) * len(settings.devices) * len(settings.runtimes))
    before = machine_state()
    env = environment()
    roofs = measure_host_roofs(max(settings.thread_counts or (settings.threads or usable_cores(),)))
    report = run_bench(models_dir, [r.given for r in refs], settings, images.images, env, images.source.note, on_step,
                       roofs=roofs)  # fmt: skip
    after = machine_state()
    threads = max(report.settings.thread_counts or (1,))
    warning = load_warning(before["load_average"], after["load_average"], threads, usable_cores())
    report.machine = {"before": before, "after": after, "load_warning": warning, "host_roofs": roofs}
    if warning:
        report.notes.append(warning)
    files = write_reports(report, out)
    changes = changes_since(old, report.measurements) if old is not None else None
    return BenchRun(report, files, changes, exported)
