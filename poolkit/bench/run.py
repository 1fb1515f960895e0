"""`poolkit bench`: time eager, TorchScript and ONNX Runtime on the CPU and CUDA, honestly.

Method (see README): each runtime is timed in its own worker process (`bench_worker`, spawn
context), fed the same batch; the parent collects raw samples and interleaves rounds across
runtimes so a drift of the machine touches all alike. ONNX Runtime keeps its default spinning
there (`--ort-spinning` records and changes it); `--in-process` times everything in this process,
where spinning is off by default to protect torch. Per row: load time, first inference, warm-up
(not counted), then steady-state samples. `model` times `infer` on a batch already on the device
(ONNX Runtime through IO binding with pre-allocated outputs), `end_to_end` adds the host copies.
With `--min-time`, sampling goes on until the median's 95 % interval is narrow enough
(`ci_target`), like torch.utils.benchmark's adaptive_autorange. Where ONNX Runtime is more than
1.5x slower than eager, its profile names the op that dominates. The clock is a parameter so
tests drive it with known samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.bench.stats import Stats, summarize
from poolkit.common.errors import PoolkitError, one_line
from poolkit.common.machine import usable_cores
from poolkit.runtimes.registry import cuda_problem, open_runtime, runtime_class
from poolkit.services.artifacts import ModelArtifacts, open_artifacts

if TYPE_CHECKING:
    import numpy as np

Clock = Callable[[], float]
BENCH_SCHEMA = 3  # 3: process, spinning, load time, device samples, profile; 2: raw samples are the record


@dataclass
class Timing:
    """What the timing loop measured: the first call alone, then every counted iteration."""

    first_s: float
    samples_s: list[float]


OVERHEAD_SHARE = 0.5  # an Identity costing half the figure or more: the call, not the model, is measured
COPY_FACTOR = 2.0  # end-to-end twice the model-only figure or more: host copies dominate
PROFILE_SLOWDOWN = 1.5  # ONNX Runtime this much slower than eager: profile the row and say which op
ROUND_S = 0.05  # adaptive mode: about this much sampling per runtime per round


@dataclass(frozen=True)
class Flag:
    """Something a reader should know before trusting a figure (trtexec warns the same way)."""

    kind: str  # overhead | copies | unstable | imprecise
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
    process: str = "in-process"  # isolated (its own worker process) | in-process
    ort_spinning: bool | None = None  # ONNX Runtime rows: session.intra_op.allow_spinning
    cuda_graphs: bool = False
    load_ms: float | None = None  # opening the runtime on the artifact (session creation, jit load + freeze, rebuild)
    device_samples_ms: list[float] = field(default_factory=list)  # CUDA rows: per-call device time by CUDA events
    ci_target: float | None = None  # adaptive mode: the relative width of the median's interval asked for
    profile: dict[str, Any] | None = None  # ONNX Runtime profile of a slow row: dominating op and shares
    peak_gb_per_s: float | None = None  # CUDA rows: the device's memory bandwidth

    DERIVED = (
        "latency_ms", "end_to_end_ms", "device_ms", "images_per_s", "gflops_per_s", "gb_per_s", "bandwidth_share",
        "flags", "notes",
    )  # fmt: skip

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.model, self.runtime, self.device, self.batch_size)

    @cached_property
    def latency_ms(self) -> Stats | None:
        return summarize(self.samples_ms) if self.samples_ms else None

    @cached_property
    def end_to_end_ms(self) -> Stats | None:
        return summarize(self.e2e_samples_ms) if self.e2e_samples_ms else None

    @cached_property
    def device_ms(self) -> Stats | None:
        """CUDA rows: the device's own time per call (events), beside the host latency."""
        return summarize(self.device_samples_ms) if self.device_samples_ms else None

    @property
    def bandwidth_share(self) -> float | None:
        """CUDA rows: achieved GB/s as a share of the device's memory bandwidth."""
        rate = self.gb_per_s
        return rate / self.peak_gb_per_s if rate is not None and self.peak_gb_per_s else None

    @property
    def notes(self) -> list[str]:
        """What explains the row (the profile of a slow ONNX Runtime row); flags say what to distrust."""
        out = []
        p = self.profile
        if p and "error" in p:
            out.append(f"no ONNX Runtime profile: {p['error']}")
        elif p:
            runner_up = ", ".join(f"{o['op']} {o['share']:.0%}" for o in p.get("ops", [])[1:3])
            out.append(
                f"ONNX Runtime profile ({p.get('iters', '?')} runs): {p['op']} takes {p['share']:.0%} of kernel time"
                + (f", {p['kernel_us'] * p['share'] / p['iters'] / 1e3:.3f} ms per run" if p.get("iters") else "")
                + (f" (then {runner_up})" if runner_up else "")
            )
        return out

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
        if self.ci_target is not None and s.ci95_rel_width > self.ci_target:
            flags.append(
                Flag(
                    "imprecise",
                    f"imprecise: the median's 95% interval is {s.ci95_rel_width:.1%} wide "
                    f"(target {self.ci_target:.1%}) when the time ran out",
                )
            )
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
    min_time_s: float | None = None  # adaptive: at least this much time, then until the interval is narrow
    threads: int | None = None  # None: every usable core, set explicitly on every runtime
    in_process: bool = False  # False: each runtime in its own worker process
    ort_spinning: bool | None = None  # None: on when isolated (ONNX Runtime's default), off in-process
    cuda_graphs: bool = False
    ci_target: float = 0.05  # adaptive: stop when the median's 95 % interval is this share of it or narrower
    max_time_s: float | None = None  # adaptive: give up narrowing after this long per row (default 10x min-time)
    rounds: int = 5  # fixed-count mode: the iterations are split in this many interleaved rounds

    @property
    def spinning(self) -> bool:
        return self.ort_spinning if self.ort_spinning is not None else not self.in_process


@dataclass
class BenchReport:
    environment: dict[str, Any]
    settings: BenchSettings
    data: str
    measurements: list[Measurement]
    schema: int = BENCH_SCHEMA
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)  # load average and clocks before/after, warning


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


def bench_batch(data: np.ndarray, sample_shape: tuple[int, ...], batch_size: int) -> np.ndarray:
    """The first `batch_size` images (tiled when more are asked for), or seeded noise for other shapes."""
    import numpy as np

    if tuple(data.shape[1:]) != tuple(sample_shape):
        return np.random.default_rng(0).random((batch_size, *sample_shape), dtype=np.float32)
    reps = -(-batch_size // len(data))
    return np.ascontiguousarray(np.concatenate([data] * reps)[:batch_size])


def add_speedups(measurements: list[Measurement]) -> None:
    eager = {(m.model, m.device, m.batch_size): m.latency_ms for m in measurements if m.runtime == "eager"}
    for m in measurements:
        ref = eager.get((m.model, m.device, m.batch_size))
        if ref is not None and m.latency_ms is not None and m.latency_ms.p50 > 0:
            m.speedup_vs_eager = ref.p50 / m.latency_ms.p50


class Timers:
    """One timer per runtime and device for the whole run: a worker process each, or in this process."""

    def __init__(self, settings: BenchSettings, clock: Clock) -> None:
        self.settings, self.clock = settings, clock
        self._timers: dict[tuple[str, str], Any] = {}

    @property
    def process(self) -> str:
        return "in-process" if self.settings.in_process else "isolated"

    def get(self, runtime: str, device: str) -> Any:
        s = self.settings
        key = (runtime, device)
        timer = self._timers.get(key)
        if timer is not None and not s.in_process and not timer.alive:
            timer.shutdown()  # died with the previous model: start afresh
            timer = None
        if timer is None:
            graphs = s.cuda_graphs and device == "cuda"
            if s.in_process:
                from poolkit.bench.timer import LocalTimer

                timer = LocalTimer(runtime, device, s.threads, s.spinning, graphs, self.clock)
            else:
                from poolkit.bench.worker import WorkerTimer

                timer = WorkerTimer(runtime, device, s.threads, s.spinning, graphs)
            self._timers[key] = timer
        return timer

    def settle(self) -> None:
        """Isolated mode: a short pause when handing over from one worker to the next (spinning pools idle)."""
        if not self.settings.in_process:
            from poolkit.bench.worker import SETTLE_S

            time.sleep(SETTLE_S)

    def shutdown(self) -> None:
        for timer in self._timers.values():
            if hasattr(timer, "shutdown"):
                timer.shutdown()
            else:
                timer.close()
        self._timers.clear()


@dataclass
class Row:
    """A row being measured: its Measurement, its timer, and the cost estimate adaptive rounds are sized by."""

    m: Measurement
    timer: Any
    estimate_s: float
    done: bool = False


def _take(row: Row, n: int, timers: Timers) -> None:
    try:
        host, device, e2e = row.timer.round(n, n)
    except PoolkitError as exc:
        row.m.status, row.m.reason, row.done = "failed", str(exc), True
        row.m.samples_ms, row.m.e2e_samples_ms, row.m.device_samples_ms = [], [], []
        return
    row.m.samples_ms.extend(h * 1e3 for h in host)
    row.m.device_samples_ms.extend(device)
    row.m.e2e_samples_ms.extend(e * 1e3 for e in e2e)
    timers.settle()


def round_counts(iters: int, rounds: int) -> list[int]:
    """`iters` split as evenly as possible in `rounds` rounds (never an empty round)."""
    rounds = max(1, min(rounds, iters))
    return [iters // rounds + (1 if i < iters % rounds else 0) for i in range(rounds)]


def sample_interleaved(rows: list[Row], settings: BenchSettings, timers: Timers) -> None:
    """Rounds across runtimes, each round starting one runtime later, so no runtime always follows another.

    Fixed count: `iters` split in `rounds`. Adaptive (`min_time_s`): every row samples at least
    `min_time_s` and 10 iterations, then until its median's 95 % interval is within `ci_target` of
    the median, or `max_time_s` is spent (then it is flagged `imprecise`).
    """
    if settings.min_time_s is None:
        for r, n in enumerate(round_counts(settings.iters or 100, settings.rounds)):
            for row in _rotated(rows, r):
                if not row.done:
                    _take(row, n, timers)
        return
    limit = settings.max_time_s if settings.max_time_s is not None else max(10 * settings.min_time_s, 1.0)
    r = 0
    while not all(row.done for row in rows):
        for row in _rotated(rows, r):
            if row.done:
                continue
            n = max(1, min(1000, int(ROUND_S / max(row.estimate_s, 1e-7))))
            _take(row, n, timers)
            row.done = row.done or adaptive_done(row.m.samples_ms, settings, limit)
        r += 1


def adaptive_done(samples_ms: list[float], settings: BenchSettings, limit_s: float) -> bool:
    spent = sum(samples_ms) / 1e3
    if spent >= limit_s:
        return True
    if spent < (settings.min_time_s or 0) or len(samples_ms) < max(10, settings.iters or 0):
        return False
    return summarize(samples_ms).ci95_rel_width <= settings.ci_target


def _rotated(rows: list[Row], r: int) -> list[Row]:
    k = r % len(rows) if rows else 0
    return rows[k:] + rows[:k]


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
    from poolkit.bench.cost import model_cost

    for name in settings.runtimes:
        runtime_class(name)  # unknown names are a usage error before anything runs
    threads = settings.threads or usable_cores()
    settings = replace(settings, threads=threads)  # the report records the count really used
    cuda_reasons = {r: cuda_problem([r]) for r in settings.runtimes} if "cuda" in settings.devices else {}
    peak = (environment or {}).get("gpu_peak_gb_per_s")
    measurements: list[Measurement] = []
    timers = Timers(settings, clock)
    try:
        for model in open_artifacts(Path(models_dir), model_names):
            reference = model.reference
            if reference is None:
                raise PoolkitError(
                    f"no successful export of '{model.name}' in {models_dir}: run 'poolkit export' first"
                )
            sample_shape = reference.sample_shape
            module = model.eager_module()
            for batch_size in settings.batch_sizes:
                batch = bench_batch(images, sample_shape, batch_size)
                cost = model_cost(module, sample_shape, batch_size)
                for device in settings.devices:
                    rows: list[Row] = []
                    for runtime_name in settings.runtimes:
                        m = Measurement(
                            model.name, runtime_name, device, batch_size, threads=threads, warmup=settings.warmup,
                            process=timers.process, cuda_graphs=settings.cuda_graphs and device == "cuda",
                            ort_spinning=settings.spinning if runtime_name == "onnxruntime" else None,
                            ci_target=settings.ci_target if settings.min_time_s is not None else None,
                            peak_gb_per_s=peak if device == "cuda" else None,
                        )  # fmt: skip
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
                        row = _open_row(m, model, batch, settings, timers)
                        if row is not None:
                            rows.append(row)
                    _measure_group(rows, settings, timers)
    finally:
        timers.shutdown()
    add_speedups(measurements)
    return BenchReport(environment or {}, settings, data_label, measurements)


def _row_problem(model: ModelArtifacts, runtime_name: str, batch_size: int) -> str | None:
    problem = model.problem(runtime_name)
    record = model.record_for(runtime_name)
    if problem is None and record is not None and not record.dynamic_batch and int(record.input_shape[0]) != batch_size:
        problem = f"the {record.format} file has a static batch of {record.input_shape[0]}"
    return problem


def _open_row(
    m: Measurement, model: ModelArtifacts, batch: np.ndarray, settings: BenchSettings, timers: Timers
) -> Row | None:
    """Open the model on the row's timer (load time, first inference, warm-up); None when it cannot run."""
    timer = timers.get(m.runtime, m.device)
    try:
        opened = timer.open(str(model.models_dir), model.reopen_name, batch, settings.warmup, model)
    except PoolkitError as exc:
        m.status, m.reason = ("unavailable" if exc.exit_code == 2 else "failed"), str(exc)
        return None
    except Exception as exc:  # noqa: BLE001 - in-process: a runtime that cannot run is a failed row
        m.status, m.reason = "failed", one_line(exc)
        return None
    m.provider, m.load_ms, m.first_run_ms = opened.provider, opened.load_s * 1e3, opened.first_s * 1e3
    if not provider_matches(m.device, m.provider):  # never label one device's time as another's
        m.status, m.reason = "failed", f"asked for {m.device}, but {m.provider} ran it"
        timer.close()
        return None
    warm = sorted(opened.warmup_s)
    return Row(m, timer, warm[len(warm) // 2] if warm else opened.first_s)


def _measure_group(rows: list[Row], settings: BenchSettings, timers: Timers) -> None:
    """Interleaved rounds for one model, batch and device; then overheads, profiles, and close."""
    try:
        sample_interleaved(rows, settings, timers)
        eager = next((r.m for r in rows if r.m.runtime == "eager" and r.m.samples_ms), None)
        for row in rows:
            m = row.m
            if m.status != "ok":
                continue
            try:
                m.overhead_ms = row.timer.overhead(settings.iters or 100)
            except PoolkitError as exc:
                m.status, m.reason = "failed", str(exc)
                continue
            if m.runtime == "onnxruntime" and needs_profile(m, eager):
                try:
                    m.profile = row.timer.profile()
                except PoolkitError as exc:  # the samples stand; only the explanation is missing
                    m.profile = {"error": str(exc)}
    finally:
        for row in rows:
            row.timer.close()


def needs_profile(m: Measurement, eager: Measurement | None) -> bool:
    """ONNX Runtime slower than eager by more than PROFILE_SLOWDOWN on the same model, device and batch."""
    if eager is None or not eager.samples_ms or not m.samples_ms:
        return False
    return summarize(m.samples_ms).p50 > PROFILE_SLOWDOWN * summarize(eager.samples_ms).p50


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


def ort_loop_check(
    models_dir: Path, model: str, threads: int | None, batch_size: int = 64, iters: int = 300, warmup: int = 20
) -> dict[str, Any]:
    """poolkit's isolated ONNX Runtime p50 against a plain `session.run` loop in a process of its own.

    Same file, thread count, batch and (default) spinning; the plain loop also allocates its outputs
    and reads the numpy input directly, which on the CPU costs little beside a model of any size.
    """
    import numpy as np

    from poolkit.bench.worker import plain_ort_loop, run_apart

    (artifacts,) = open_artifacts(Path(models_dir), [model])
    path = artifacts.source("onnxruntime")
    sample_shape = artifacts.reference.sample_shape if artifacts.reference else ()
    threads = threads or usable_cores()
    x = np.random.default_rng(0).random((batch_size, *sample_shape), dtype=np.float32)
    settings = BenchSettings(runtimes=("onnxruntime",), batch_sizes=(batch_size,), warmup=warmup, iters=iters,
                             threads=threads)  # fmt: skip
    (row,) = run_bench(Path(models_dir), [model], settings, x).measurements
    if row.latency_ms is None:
        raise PoolkitError(f"self-check: poolkit could not time {model} on onnxruntime: {row.reason}", exit_code=1)
    plain = summarize(run_apart(plain_ort_loop, str(path), threads, x, warmup, iters))
    ours = row.latency_ms.p50
    return {
        "model": model,
        "threads": threads,
        "batch_size": batch_size,
        "process": row.process,
        "ort_spinning": row.ort_spinning,
        "poolkit_p50_ms": ours,
        "poolkit_samples": row.latency_ms.n,
        "plain_loop_p50_ms": plain.p50,
        "plain_loop_samples": plain.n,
        "ratio": ours / plain.p50,
        "within_10_percent": abs(ours / plain.p50 - 1) <= 0.10,
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
    from poolkit.bench.report import compare_runs, load_report, write_reports
    from poolkit.exporter.export import ensure_exported
    from poolkit.exporter.zoo import resolve_models
    from poolkit.runtimes.registry import require_cuda
    from poolkit.services.cifar10 import load_cifar10
    from poolkit.services.environment import environment, load_warning, machine_state

    old = load_report(compare) if compare else None  # a bad --compare file fails before any timing
    for name in settings.runtimes:
        cls = runtime_class(name)
        if not set(settings.devices) & set(cls.devices):
            raise PoolkitError(f"--runtime {name} runs on --device {' or '.join(cls.devices)} only")
    if settings.cuda_graphs and "cuda" not in settings.devices:
        raise PoolkitError("--cuda-graphs applies to CUDA rows only: add --device cuda or --device all")
    if settings.ort_spinning is not None and "onnxruntime" not in settings.runtimes:
        raise PoolkitError("--ort-spinning applies to onnxruntime rows only: add --runtime onnxruntime")
    if settings.devices == ("cuda",):
        require_cuda(settings.runtimes)
    refs = resolve_models(names)
    exported = ensure_exported(refs, models_dir)
    images = load_cifar10()
    if on_total:
        on_total(len(refs) * len(settings.batch_sizes) * len(settings.devices) * len(settings.runtimes))
    before = machine_state()
    env = environment()
    report = run_bench(models_dir, [r.given for r in refs], settings, images.images, env, images.source.note, on_step)
    after = machine_state()
    warning = load_warning(before["load_average"], after["load_average"], report.settings.threads or 1, usable_cores())
    report.machine = {"before": before, "after": after, "load_warning": warning}
    if warning:
        report.notes.append(warning)
    files = write_reports(report, out)
    changes = compare_runs(old, report.measurements) if old is not None else None
    return BenchRun(report, files, changes, exported)


def run_self_check(models_dir: Path, names: list[str] | None, threads: int | None, batch_size: int) -> dict[str, Any]:
    """`poolkit bench --self-check`: the first model, exported if missing, against torch.utils.benchmark."""
    from poolkit.exporter.export import ensure_exported
    from poolkit.exporter.zoo import resolve_models

    refs = resolve_models(names)
    ensure_exported(refs[:1], models_dir)
    check = self_check(models_dir, refs[0].given, threads, batch_size)
    check["onnxruntime"] = ort_loop_check(models_dir, refs[0].given, threads, batch_size)
    check["all_within_10_percent"] = check["within_10_percent"] and check["onnxruntime"]["within_10_percent"]
    return check
