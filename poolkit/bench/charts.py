"""bench's pictures: p50 per runtime and model, and the roofline of the CPU rows against the host's roofs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poolkit.bench.measurement import BenchReport, Measurement
from poolkit.common.files import write_atomic


def _pyplot() -> Any:
    import matplotlib  # lazily: matplotlib costs a second to import and only the charts need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_chart(report: BenchReport, path: Path) -> Path | None:
    """p50 latency per runtime and device, one group of bars per model (log scale: models differ 100x)."""
    rows = [m for m in report.measurements if m.latency_ms]
    if not rows:
        return None
    plt = _pyplot()
    models = list(dict.fromkeys(f"{m.model} b{m.batch_size}" for m in rows))
    series = list(dict.fromkeys(_series(m) for m in rows))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(models) + 3), 5))
    for i, name in enumerate(series):
        values = {f"{m.model} b{m.batch_size}": m.latency_ms.p50 for m in rows if m.latency_ms and _series(m) == name}
        xs = [j + i * width for j, model in enumerate(models) if model in values]
        ax.bar(xs, [values[model] for model in models if model in values], width, label=name)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(models))], models, rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency per batch (ms, log scale)")
    env = report.environment
    ax.set_title(f"poolkit bench — {env.get('cpu', '?')}" + (f" / {env['gpu']}" if env.get("gpu") else ""), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def write_roofline(report: BenchReport, path: Path) -> Path | None:
    """Arithmetic intensity (FLOPs per byte) against achieved GFLOP/s, one point per CPU row, under the
    two roofs the run measured (bandwidth x intensity, and the GEMM rate); log-log, as Williams et al."""
    roofs = report.host_roofs
    rows = [m for m in report.measurements if m.device == "cpu" and m.arithmetic_intensity and m.gflops_per_s]
    if roofs is None or not rows:
        return None
    bandwidth, peak = float(roofs["gb_per_s"]), float(roofs["gflops_per_s"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    lows = [m.arithmetic_intensity or 1.0 for m in rows]
    x_min, x_max = min(min(lows) / 2, 0.01), max(max(lows) * 2, 2 * peak / bandwidth)
    ridge = peak / bandwidth
    ax.plot([x_min, ridge, x_max], [bandwidth * x_min, peak, peak], color="black", linewidth=1.5)
    ax.annotate(f"triad {bandwidth:.1f} GB/s", (x_min, bandwidth * x_min), textcoords="offset points",
                xytext=(4, 6), fontsize=8)  # fmt: skip
    ax.annotate(f"GEMM {peak:.0f} GFLOP/s", (ridge, peak), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for name in dict.fromkeys(_series(m) for m in rows):
        mine = [m for m in rows if _series(m) == name]
        ax.scatter([m.arithmetic_intensity for m in mine], [m.gflops_per_s for m in mine], label=name, s=22)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved, no fusion assumed)")
    ax.set_ylabel("achieved GFLOP/s (p50)")
    env = report.environment
    ax.set_title(f"poolkit bench roofline — {env.get('cpu', '?')}, {roofs['threads']} threads", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def _series(m: Measurement) -> str:
    """One bar colour or point kind per runtime, device and precision (an int8 row is its own series)."""
    return f"{m.runtime} {m.device}" + (f" {m.precision}" if m.precision != "fp32" else "")
