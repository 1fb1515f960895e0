"""bench's types, the leaf every other bench module imports: a row as a value, and the report.

A row (`Measurement`) is made once, when it is done: what it is (model, runtime, device, batch,
threads, precision, the file timed), what ran it (provider and the runtime's own mode), its raw
samples, and the statistics and flags computed from them there and only there. The machine's facts
(its roofs, its environment) are the report's, said once; a row's share of them is asked of the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from poolkit.bench.stats import Stats, summarize
from poolkit.runtimes.registry import DEFAULT_RUNTIMES

BASELINE_RUNTIME = "eager"  # what every speedup is held against (verify's reference too)
FP32 = "fp32"
# 5: precision rows (precision, artifact), each runtime's mode, the roofs once per report; 4: outputs checked,
# IQR, host roofs, thread counts; 3: process, spinning, load, device samples, profile
BENCH_SCHEMA = 5

OVERHEAD_SHARE = 0.5  # an Identity costing half the figure or more: the call, not the model, is measured
COPY_FACTOR = 2.0  # end-to-end twice the model-only figure or more: host copies dominate


@dataclass(frozen=True)
class Flag:
    """Something a reader should know before trusting a figure (trtexec warns the same way)."""

    kind: str  # overhead | copies | unstable | imprecise
    message: str


@dataclass(frozen=True)
class Measurement:
    """One model on one runtime, device, batch size, thread count and precision, made when it is done."""

    model: str
    runtime: str
    device: str
    batch_size: int
    threads: int | None = None
    precision: str = FP32  # the variant timed (export --precision): fp32, fp16, bf16, int8, bf16-autocast...
    artifact: str | None = None  # the file timed, in the models folder; "module" (under autocast): eager's
    status: str = "ok"  # ok | failed | unavailable
    reason: str | None = None
    provider: str | None = None
    mode: dict[str, Any] = field(default_factory=dict)  # the runtime's own settings, read back (ORT spinning...)
    load_ms: float | None = None  # opening the runtime on the artifact (session creation, jit load + freeze, rebuild)
    first_run_ms: float | None = None
    samples_ms: tuple[float, ...] = ()  # model only: inputs already where the runtime reads them
    e2e_samples_ms: tuple[float, ...] = ()  # with host-to-device and device-to-host copies
    device_samples_ms: tuple[float, ...] = ()  # CUDA rows: per-call device time by CUDA events
    overhead_ms: float | None = None  # p50 of an Identity model on the same runtime, device and batch
    profile: dict[str, Any] | None = None  # a slow row's profile: the profiler, the dominating op and shares
    outputs_checked: int = 0  # outputs produced inside the timed loops and compared with eager's
    outputs_matched: bool | None = None  # None: none checked; False fails the row
    peak_rss_mb: float | None = None  # the worker's peak resident memory while this row ran
    settle_ms: float = 0.0  # time the worker waited after its rounds for its spinning threads to go idle
    flops: int | None = None
    bytes_moved: int | None = None
    ci_target: float | None = None  # adaptive mode: the relative width of the median's interval asked for
    speedup_vs_eager: float | None = None  # eager fp32's p50 over this row's: set across rows by `with_speedups`
    speedup_vs_fp32: float | None = None  # a precision row: its runtime's fp32 p50 over its own
    latency_ms: Stats | None = field(init=False, default=None)
    end_to_end_ms: Stats | None = field(init=False, default=None)
    device_ms: Stats | None = field(init=False, default=None)  # CUDA rows: the device's own time per call
    flags: tuple[Flag, ...] = field(init=False, default=())

    DERIVED = ("images_per_s", "gflops_per_s", "gb_per_s", "arithmetic_intensity", "notes")

    def __post_init__(self) -> None:
        """The statistics, once: the samples of a row never change after it is made."""
        samples = {
            "latency_ms": self.samples_ms,
            "end_to_end_ms": self.e2e_samples_ms,
            "device_ms": self.device_samples_ms,
        }
        for name, values in samples.items():
            object.__setattr__(self, name, summarize(values) if values else None)
        object.__setattr__(self, "flags", tuple(self._flags()))

    @property
    def key(self) -> tuple[str, str, str, int, str]:
        return (self.model, self.runtime, self.device, self.batch_size, self.precision)

    @property
    def arithmetic_intensity(self) -> float | None:
        """FLOPs per byte moved: where the row sits on the roofline's x axis."""
        return self.flops / self.bytes_moved if self.flops and self.bytes_moved else None

    @property
    def notes(self) -> list[str]:
        """What explains the row (the profile of a slow row); flags say what to distrust."""
        p = self.profile
        if p and "error" in p:
            return [f"no profile: {p['error']}"]
        if not p:
            return []
        runner_up = ", ".join(f"{o['op']} {o['share']:.0%}" for o in p.get("ops", [])[1:3])
        return [
            f"{p.get('tool', 'profile')} ({p.get('iters', '?')} runs): {p['op']} takes {p['share']:.0%} of kernel time"
            + (f", {p['kernel_us'] * p['share'] / p['iters'] / 1e3:.3f} ms per run" if p.get("iters") else "")
            + (f" (then {runner_up})" if runner_up else "")
        ]

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

    def _flags(self) -> list[Flag]:
        """Overhead- or copy-dominated, unstable, or imprecise: computed here and only here."""
        s = self.latency_ms
        if s is None:
            return []
        flags = []
        if self.overhead_ms is not None and s.p50 > 0 and self.overhead_ms >= OVERHEAD_SHARE * s.p50:
            share = f"{self.overhead_ms / s.p50:.0%} of this figure"
            flags.append(Flag("overhead", f"overhead: an Identity call takes {self.overhead_ms:.3f} ms, {share}"))
        e2e = self.end_to_end_ms
        if e2e is not None and s.p50 > 0 and e2e.p50 >= COPY_FACTOR * s.p50:
            flags.append(Flag("copies", f"copies: end to end takes {e2e.p50 / s.p50:.1f}x the model-only time"))
        if s.unstable:
            flags.append(Flag("unstable", f"unstable: IQR {s.iqr_rel:.0%} of the median (CV {s.cv:.0%})"))
        if self.ci_target is not None and s.ci95_rel_width > self.ci_target:
            wide = f"{s.ci95_rel_width:.1%} wide (target {self.ci_target:.1%})"
            flags.append(Flag("imprecise", f"imprecise: the median's 95% interval is {wide} when the time ran out"))
        return flags

    def __json__(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update({name: getattr(self, name) for name in self.DERIVED})
        return data


@dataclass(frozen=True)
class BenchSettings:
    devices: tuple[str, ...] = ("cpu",)
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    batch_sizes: tuple[int, ...] = (64,)
    warmup: int = 10
    iters: int | None = 100
    min_time_s: float | None = None  # adaptive: at least this much time, then until the interval is narrow
    threads: int | None = None  # None: every usable core, set explicitly on every runtime
    thread_counts: tuple[int, ...] = ()  # --threads 1,2: every row at each count (overrides `threads`)
    in_process: bool = False  # False: each runtime in its own worker process
    ort_spinning: bool | None = None  # None: on when isolated (ONNX Runtime's default), off in-process
    cuda_graphs: bool = False
    ci_target: float = 0.05  # adaptive: stop when the median's 95 % interval is this share of it or narrower
    max_time_s: float | None = None  # adaptive: give up narrowing after this long per row (default 10x min-time)
    rounds: int = 5  # fixed-count mode: the iterations are split in this many interleaved rounds
    settle: bool = True  # a spinning runtime's worker waits for its threads to idle after each round
    precision: bool = False  # also a row per precision variant (export --precision) each runtime reads

    @property
    def spinning(self) -> bool:
        return self.ort_spinning if self.ort_spinning is not None else not self.in_process

    @property
    def process(self) -> str:
        return "in-process" if self.in_process else "isolated"


@dataclass
class BenchReport:
    """The rows and, once, what they were measured on: environment, settings, machine state and roofs."""

    environment: dict[str, Any]
    settings: BenchSettings
    data: str
    measurements: list[Measurement]
    schema: int = BENCH_SCHEMA
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)  # load before/after, its warning, the host's roofs

    @property
    def host_roofs(self) -> dict[str, Any] | None:
        """The host's roofs as measured once for the run (`roofs.HostRoofs`, or its JSON read back), or None."""
        roofs = self.machine.get("host_roofs")
        return roofs if roofs is None or isinstance(roofs, dict) else asdict(roofs)

    def roofs(self, m: Measurement) -> tuple[float | None, float | None]:
        """(GB/s, GFLOP/s) a row is set against: the host's triad and GEMM for CPU rows, the GPU's bandwidth for CUDA."""
        if m.device != "cpu":
            return self.environment.get("gpu_peak_gb_per_s"), None
        roofs = self.host_roofs
        return (roofs["gb_per_s"], roofs["gflops_per_s"]) if roofs else (None, None)

    def bandwidth_share(self, m: Measurement) -> float | None:
        """Achieved GB/s as a share of the memory bandwidth (the device's, or the host's measured triad)."""
        peak = self.roofs(m)[0]
        return m.gb_per_s / peak if m.gb_per_s is not None and peak else None

    def compute_share(self, m: Measurement) -> float | None:
        """Achieved GFLOP/s as a share of the measured fp32 GEMM rate: how close to the compute roof."""
        peak = self.roofs(m)[1]
        return m.gflops_per_s / peak if m.gflops_per_s is not None and peak else None

    def __json__(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["measurements"] = [
            {**m.__json__(), "bandwidth_share": self.bandwidth_share(m), "compute_share": self.compute_share(m)}
            for m in self.measurements
        ]
        return data


def with_speedups(measurements: list[Measurement]) -> list[Measurement]:
    """Each row with its speed-up against eager fp32 (same model, device, batch, threads) and, for a
    precision row, against its own runtime's fp32 row."""

    def p50(m: Measurement | None) -> float | None:
        return m.latency_ms.p50 if m is not None and m.latency_ms is not None and m.latency_ms.p50 > 0 else None

    fp32 = {(m.model, m.runtime, m.device, m.batch_size, m.threads): m for m in measurements if m.precision == FP32}
    out = []
    for m in measurements:
        own, eager = p50(m), p50(fp32.get((m.model, BASELINE_RUNTIME, m.device, m.batch_size, m.threads)))
        same = p50(fp32.get((m.model, m.runtime, m.device, m.batch_size, m.threads))) if m.precision != FP32 else None
        vs_eager, vs_fp32 = (eager / own if own and eager else None), (same / own if own and same else None)
        out.append(replace(m, speedup_vs_eager=vs_eager, speedup_vs_fp32=vs_fp32))
    return out
