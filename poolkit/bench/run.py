"""`poolkit bench`: time eager, TorchScript and ONNX Runtime on the CPU and CUDA, honestly.

`run_bench` times the rows; `run_bench_command` is the command around it (refusals, export, the
machine's state and roofs recorded once, the files, the --baseline).

Method (see README): each runtime is timed in its own worker process (`worker`), fed the same
batches; the parent collects raw samples and interleaves rounds across rows (`scheduler`) so a
drift of the machine touches all alike. With `--precision` each variant a runtime reads (fp16,
bf16, int8, autocast) is a row like any other, in that runtime's worker, in the same rounds. A
runtime with a spin-wait setting keeps its default (on) there (`--ort-spinning` records and changes
it); `--in-process` times everything in this process, where spinning is off by default to protect
torch. Per row: load time, first inference,
warm-up (not counted), then steady-state samples (`timer`, through the one loop in `loop`).
`model` times the call on a batch already on the device (pre-allocated outputs where the runtime
has them), `end_to_end` runs host arrays in and out as a user's loop does. Where a runtime with a
profiler is more than PROFILE_SLOWDOWN slower than eager, its profile names the op that dominates.
The clock is a parameter so tests drive it with known samples.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from poolkit.bench.cost import model_cost
from poolkit.bench.inputs import Group, artifact, bench_batches, check_variants, fitted_data, reference_outputs, rows_of
from poolkit.bench.loop import Clock
from poolkit.bench.measurement import BASELINE_RUNTIME, FP32, BenchReport, BenchSettings, Measurement, with_speedups
from poolkit.bench.report import Change, changes_since, load_report, write_reports
from poolkit.bench.roofs import HostRoofs, measure_host_roofs
from poolkit.bench.scheduler import OpenRow, Progress, progress_units, sample_interleaved
from poolkit.bench.stats import summarize
from poolkit.bench.worker import Timers
from poolkit.common.errors import PoolkitError
from poolkit.common.machine import usable_cores
from poolkit.exporter.ensure import ensure_exported
from poolkit.exporter.zoo import resolve_models
from poolkit.runtimes.capabilities import Profiled, Spinning
from poolkit.runtimes.registry import RUNTIMES, cuda_problem, formats_read, require_cuda, runtime_class
from poolkit.services.artifacts import ModelArtifacts, open_artifacts
from poolkit.services.cifar10 import load_cifar10
from poolkit.services.environment import environment, load_warning, machine_state

PROFILE_SLOWDOWN = 1.5  # a runtime with a profiler this much slower than eager: profile the row and say which op


def run_bench(
    models_dir: Path,
    model_names: list[str],
    settings: BenchSettings,
    images: np.ndarray,
    environment: dict[str, Any] | None = None,
    data_label: str = "",
    progress: Progress | None = None,
    clock: Clock = time.perf_counter,
    roofs: HostRoofs | None = None,
) -> BenchReport:
    """Bench every model x runtime (x precision) x device x batch size x thread count; unavailable and
    failed rows say why."""
    for name in settings.runtimes:
        runtime_class(name)  # unknown names are a usage error before anything runs
    counts = settings.thread_counts or (settings.threads or usable_cores(),)
    settings = replace(settings, threads=counts[0], thread_counts=counts)  # the report records the counts used
    models = open_artifacts(Path(models_dir), model_names)
    if settings.precision:
        check_variants(models, settings, models_dir)
    progress = progress or Progress()
    per_model = len(settings.batch_sizes) * len(settings.devices) * len(counts) * progress_units(settings)
    progress.total(sum(len(rows_of(m, settings)) for m in models) * per_model)
    cuda_reasons = {r: cuda_problem([r]) for r in settings.runtimes} if "cuda" in settings.devices else {}
    measurements: list[Measurement] = []
    notes: list[str] = []  # how the data was fitted to each model whose input is not the data's
    timers = Timers(settings, clock)
    try:
        # Every worker starts now: their imports (torch, seconds each) overlap with each other and with
        # the first model's reference outputs, instead of one after another at each first open.
        keys = [(r, d, t) for d in settings.devices for t in counts for r in settings.runtimes]
        timers.start_all([(r, d, t) for r, d, t in keys if not (d == "cuda" and cuda_reasons.get(r))])
        for index, model in enumerate(models):
            reference = model.reference
            if reference is None:
                raise PoolkitError(
                    f"no successful export of '{model.name}' in {models_dir}: run 'poolkit export' first"
                )
            progress.model(f"{model.name} ({index + 1} of {len(models)})")
            sample_shape = reference.sample_shape
            for batch_size in settings.batch_sizes:
                data, steps = fitted_data(images, sample_shape, batch_size)
                batches = bench_batches(data, sample_shape, batch_size)
                if steps and not any(n.startswith(f"data for {model.name}:") for n in notes):
                    notes.append(f"data for {model.name}: {'; '.join(steps)}")
                cost = model_cost(model.eager_module(), sample_shape, batch_size)
                group = Group(model, batch_size, batches, reference_outputs(model, batches, counts[0]), cost)
                for device, threads in itertools.product(settings.devices, counts):
                    rows = [
                        _row(group, runtime, precision, device, threads, settings, timers, cuda_reasons, progress)
                        for runtime, precision in rows_of(model, settings)
                    ]
                    measurements.extend(_measure(rows, settings, progress))
    except BaseException:
        timers.abandon()  # Ctrl-C or an error: the workers are killed, not waited for
        raise
    finally:
        timers.shutdown()
    machine = {"host_roofs": roofs} if roofs is not None else {}
    return BenchReport(
        environment or {}, settings, data_label, with_speedups(measurements), notes=notes, machine=machine
    )


def _row(
    group: Group,
    runtime: str,
    precision: str,
    device: str,
    threads: int,
    settings: BenchSettings,
    timers: Timers,
    cuda_reasons: dict[str, str | None],
    progress: Progress,
) -> OpenRow | Measurement:
    """One row opened on its timer (load time, first inference, warm-up), or the row saying why it cannot run."""
    model = group.model
    ci_target = settings.ci_target if settings.min_time_s is not None else None
    name, size, file = model.name, group.batch_size, artifact(model, runtime, precision)
    row = Measurement(
        name,
        runtime,
        device,
        size,
        threads,
        precision,
        file,
        flops=group.cost.flops,
        bytes_moved=group.cost.bytes,
        ci_target=ci_target,
    )
    units = progress_units(settings)
    if device == "cuda" and cuda_reasons.get(runtime):
        progress.step(row_label(row), units)
        return replace(row, status="unavailable", reason=cuda_reasons[runtime])
    problem = _row_problem(model, runtime, precision, group.batch_size)
    if problem:
        progress.step(row_label(row), units)
        return replace(row, status="failed", reason=problem)
    progress.step(f"{row_label(row)}: opening", 0)
    timer = timers.get(runtime, device, threads)
    try:
        opened = timer.open(
            str(model.models_dir), model.reopen_name, precision, group.batches, settings.warmup, group.expected, model
        )
    except PoolkitError as exc:
        progress.step(row_label(row), units)
        return replace(row, status="unavailable" if exc.exit_code == 2 else "failed", reason=str(exc))
    load_ms, first_run_ms = opened.load_s * 1e3, opened.first_s * 1e3
    row = replace(row, provider=opened.provider, mode=opened.mode, load_ms=load_ms, first_run_ms=first_run_ms)
    if not provider_matches(device, opened.provider):  # never label one device's time as another's
        timer.close(precision)
        progress.step(row_label(row), units)
        return replace(row, status="failed", reason=f"asked for {device}, but {opened.provider} ran it")
    warm = sorted(opened.warmup_s)
    return OpenRow(row, timer, warm[len(warm) // 2] if warm else opened.first_s)


def row_label(m: Measurement) -> str:
    """A row in a few words (the progress bar's)."""
    precision = f" {m.precision}" if m.precision != "fp32" else ""
    return f"{m.model} {m.runtime}{precision} {m.device} b{m.batch_size} t{m.threads}"


def _row_problem(model: ModelArtifacts, runtime: str, precision: str, batch_size: int) -> str | None:
    problem = model.problem(runtime, precision)
    record = model.record_for(runtime, precision)
    if problem is None and record is not None and not record.dynamic_batch and int(record.input_shape[0]) != batch_size:
        problem = f"the {record.format} file has a static batch of {record.input_shape[0]}"
    return problem


def _measure(rows: list[OpenRow | Measurement], settings: BenchSettings, progress: Progress) -> list[Measurement]:
    """Interleaved rounds over the group's open rows; then overheads and profiles, and every row as a value."""
    opened = [r for r in rows if isinstance(r, OpenRow)]
    try:
        sample_interleaved(opened, settings, lambda row, units: progress.step(row_label(row.opened), units))
        eager = next((r for r in opened if r.opened.runtime == BASELINE_RUNTIME and r.opened.precision == FP32), None)
        eager_p50 = summarize(eager.samples_ms).p50 if eager is not None and eager.samples_ms else None
        return [r if isinstance(r, Measurement) else _finish(r, eager_p50, settings) for r in rows]
    finally:
        for row in opened:
            row.timer.close()


def _finish(row: OpenRow, eager_p50: float | None, settings: BenchSettings) -> Measurement:
    """The row done: its Identity overhead, a profile where it is slow beside eager, then its value."""
    if row.status != "ok":
        return row.finish()
    try:
        overhead = row.timer.overhead(row.slot, settings.iters or 100)
    except PoolkitError as exc:
        row.fail(str(exc))
        return row.finish()
    profile = None
    if issubclass(runtime_class(row.opened.runtime), Profiled) and needs_profile(row.samples_ms, eager_p50):
        try:
            profile = row.timer.profile(row.slot)
        except PoolkitError as exc:  # the samples stand; only the explanation is missing
            profile = {"error": str(exc)}
    return row.finish(overhead_ms=overhead, profile=profile)


def needs_profile(samples_ms: list[float], eager_p50: float | None) -> bool:
    """Slower than eager (fp32, same model, device and batch) by more than PROFILE_SLOWDOWN."""
    return bool(samples_ms) and eager_p50 is not None and summarize(samples_ms).p50 > PROFILE_SLOWDOWN * eager_p50


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
    if settings.ort_spinning is not None and not any(issubclass(runtime_class(r), Spinning) for r in settings.runtimes):
        spinners = [name for name, cls in RUNTIMES.items() if issubclass(cls, Spinning)]  # runtimes whose threads spin
        raise PoolkitError(f"--ort-spinning applies to {' and '.join(spinners)} rows only: add --runtime {spinners[0]}")
    if settings.devices == ("cuda",):
        require_cuda(settings.runtimes)


def run_bench_command(
    models_dir: Path,
    names: list[str] | None,
    settings: BenchSettings,
    out: Path,
    baseline: Path | None = None,
    progress: Progress | None = None,
) -> BenchRun:
    """What `poolkit bench` does: check the inputs, export what is missing, bench, write, set against the baseline."""
    old = load_report(baseline) if baseline else None  # a bad --baseline file fails before any timing
    check_settings(settings)
    refs = resolve_models(names)
    exported = ensure_exported(refs, models_dir, formats_read(settings.runtimes))
    images = load_cifar10()
    before = machine_state()
    env = environment()
    roofs = measure_host_roofs(max(settings.thread_counts or (settings.threads or usable_cores(),)))
    names = [r.given for r in refs]
    report = run_bench(models_dir, names, settings, images.images, env, images.source.note, progress, roofs=roofs)
    after = machine_state()
    threads = max(report.settings.thread_counts or (1,))
    warning = load_warning(before["load_average"], after["load_average"], threads, usable_cores())
    report.machine.update(before=before, after=after, load_warning=warning)
    if warning:
        report.notes.append(warning)
    files = write_reports(report, out)
    changes = changes_since(old, report.measurements) if old is not None else None
    return BenchRun(report, files, changes, exported)
