"""bench's types, the leaf every other bench module imports: a row's raw samples and settings, and the
figures derived from them (statistics, throughput, flags) as properties, computed here and only here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from poolkit.bench.stats import Stats, summarize
from poolkit.runtimes.registry import DEFAULT_RUNTIMES

BASELINE_RUNTIME = "eager"  # what every speedup is held against (verify's reference too)
BENCH_SCHEMA = (
    4  # 4: outputs checked, IQR, host roofs, thread counts; 3: process, spinning, load, device samples, profile
)

OVERHEAD_SHARE = 0.5  # an Identity costing half the figure or more: the call, not the model, is measured
COPY_FACTOR = 2.0  # end-to-end twice the model-only figure or more: host copies dominate


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
    peak_gb_per_s: float | None = None  # the memory bandwidth: CUDA rows the device's, CPU rows the host's triad
    peak_gflops_per_s: float | None = None  # CPU rows: the host's fp32 GEMM rate, measured once per run
    outputs_checked: int = 0  # outputs produced inside the timed loops and compared with eager's
    outputs_matched: bool | None = None  # None: none checked; False fails the row
    peak_rss_mb: float | None = None  # the worker's peak resident memory while this row ran
    settle_ms: float = 0.0  # time the worker waited after its rounds for its spinning threads to go idle

    DERIVED = (
        "latency_ms", "end_to_end_ms", "device_ms", "images_per_s", "gflops_per_s", "gb_per_s", "bandwidth_share",
        "compute_share", "arithmetic_intensity", "flags", "notes",
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
        """Achieved GB/s as a share of the memory bandwidth (the device's, or the host's measured triad)."""
        rate = self.gb_per_s
        return rate / self.peak_gb_per_s if rate is not None and self.peak_gb_per_s else None

    @property
    def compute_share(self) -> float | None:
        """Achieved GFLOP/s as a share of the measured fp32 GEMM rate: how close to the compute roof."""
        rate = self.gflops_per_s
        return rate / self.peak_gflops_per_s if rate is not None and self.peak_gflops_per_s else None

    @property
    def arithmetic_intensity(self) -> float | None:
        """FLOPs per byte moved: where the row sits on the roofline's x axis."""
        return self.flops / self.bytes_moved if self.flops and self.bytes_moved else None

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
            flags.append(Flag("unstable", f"unstable: IQR {s.iqr_rel:.0%} of the median (CV {s.cv:.0%})"))
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
    settle: bool = (
        True  # a spinning runtime's worker waits for its threads to idle after each round (False: measure why)
    )

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


def add_speedups(measurements: list[Measurement]) -> None:
    def where(m: Measurement) -> tuple[str, str, int, int | None]:
        return (m.model, m.device, m.batch_size, m.threads)

    eager = {where(m): m.latency_ms for m in measurements if m.runtime == BASELINE_RUNTIME}
    for m in measurements:
        ref = eager.get(where(m))
        if ref is not None and m.latency_ms is not None and m.latency_ms.p50 > 0:
            m.speedup_vs_eager = ref.p50 / m.latency_ms.p50
