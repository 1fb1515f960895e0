"""`poolkit bench --self-check`: poolkit's figures against timings of the same thing by tools poolkit did not write.

Eager: poolkit's loop (in this process) against torch.utils.benchmark's median. ONNX Runtime:
poolkit's isolated figure against a plain `session.run` loop in a process of its own, with the
same file, thread count, batch and (default) spinning. Both references are asked of the runtime
itself (`Runtime.reference_loop`), so bench names no backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poolkit.bench.loop import time_calls
from poolkit.bench.measurement import BASELINE_RUNTIME, BenchSettings
from poolkit.bench.run import run_bench
from poolkit.bench.stats import summarize
from poolkit.common.errors import PoolkitError
from poolkit.common.machine import usable_cores
from poolkit.exporter.export import ensure_exported
from poolkit.exporter.zoo import resolve_models
from poolkit.runtimes.base import Reference
from poolkit.runtimes.registry import DEFAULT_RUNTIMES, open_runtime, runtime_class
from poolkit.services.artifacts import open_artifacts
from poolkit.services.workers import run_apart

SPINNING_CHECKED = next(n for n in DEFAULT_RUNTIMES if runtime_class(n).has_spinning)  # the isolated check


def _reference(runtime: str, source: Any, threads: int, x: np.ndarray, warmup: int, iters: int) -> Reference:
    found = runtime_class(runtime).reference_loop(source, threads, x, warmup, iters)
    if found is None:
        raise PoolkitError(f"self-check: runtime '{runtime}' has no reference loop", exit_code=1)
    return found


def self_check(models_dir: Path, model: str, threads: int | None, batch_size: int = 64) -> dict[str, Any]:
    """poolkit's eager p50 against torch.utils.benchmark.Timer's median, same model, thread count and batch."""
    (artifacts,) = open_artifacts(Path(models_dir), [model])
    module = artifacts.eager_module()
    sample_shape = artifacts.reference.sample_shape if artifacts.reference else ()
    threads = threads or usable_cores()
    x = np.random.default_rng(0).random((batch_size, *sample_shape), dtype=np.float32)
    with open_runtime(BASELINE_RUNTIME, module, "cpu", threads) as runtime:
        prepared = runtime.prepare(x)
        ours = summarize([t * 1e3 for t in time_calls(lambda: runtime.infer(prepared), 10, 200, None).samples_s]).p50
        theirs = _reference(BASELINE_RUNTIME, module, threads, x, 10, 200).median_ms
    return {
        "model": model,
        "threads": threads,
        "batch_size": batch_size,
        "poolkit_p50_ms": ours,
        "torch_benchmark_median_ms": theirs,
        "ratio": ours / theirs,
        "within_10_percent": abs(ours / theirs - 1) <= 0.10,
    }


def isolated_loop_check(
    models_dir: Path, model: str, threads: int | None, batch_size: int = 64, iters: int = 300, warmup: int = 20
) -> dict[str, Any]:
    """poolkit's isolated p50 of the spinning runtime against its plain reference loop in a process of its own.

    Same file, thread count, batch and (default) spinning; the plain loop also allocates its outputs
    and reads the numpy input directly, which on the CPU costs little beside a model of any size.
    """
    runtime = SPINNING_CHECKED
    (artifacts,) = open_artifacts(Path(models_dir), [model])
    path = artifacts.source(runtime)
    sample_shape = artifacts.reference.sample_shape if artifacts.reference else ()
    threads = threads or usable_cores()
    x = np.random.default_rng(0).random((batch_size, *sample_shape), dtype=np.float32)
    settings = BenchSettings(runtimes=(runtime,), batch_sizes=(batch_size,), warmup=warmup, iters=iters,
                             threads=threads)  # fmt: skip
    (row,) = run_bench(Path(models_dir), [model], settings, x).measurements
    if row.latency_ms is None:
        raise PoolkitError(f"self-check: poolkit could not time {model} on {runtime}: {row.reason}", exit_code=1)
    plain: Reference = run_apart(
        "self-check", runtime_class(runtime).reference_loop, str(path), threads, x, warmup, iters
    )
    ours = row.latency_ms.p50
    return {
        "model": model,
        "threads": threads,
        "batch_size": batch_size,
        "process": row.process,
        "ort_spinning": row.ort_spinning,
        "poolkit_p50_ms": ours,
        "poolkit_samples": row.latency_ms.n,
        "plain_loop_p50_ms": plain.median_ms,
        "plain_loop_samples": plain.samples,
        "ratio": ours / plain.median_ms,
        "within_10_percent": abs(ours / plain.median_ms - 1) <= 0.10,
    }


def run_self_check(models_dir: Path, names: list[str] | None, threads: int | None, batch_size: int) -> dict[str, Any]:
    """`poolkit bench --self-check`: the first model, exported if missing, against the reference loops."""
    refs = resolve_models(names)
    ensure_exported(refs[:1], models_dir)
    check = self_check(models_dir, refs[0].given, threads, batch_size)
    check[SPINNING_CHECKED] = isolated_loop_check(models_dir, refs[0].given, threads, batch_size)
    check["all_within_10_percent"] = check["within_10_percent"] and check[SPINNING_CHECKED]["within_10_percent"]
    return check
