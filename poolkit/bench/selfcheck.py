"""`poolkit bench --self-check`: poolkit's figures against timings of the same thing by tools poolkit did not write.

Eager: poolkit's loop (in this process) against torch.utils.benchmark's median. ONNX Runtime:
poolkit's isolated figure against a plain `session.run` loop in a process of its own, with the
same file, thread count, batch and (default) spinning. Both references are asked of the runtime
itself (its `ReferenceLoop` capability), so bench names no backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poolkit.bench.loop import timed_loop
from poolkit.bench.measurement import BASELINE_RUNTIME, BenchSettings
from poolkit.bench.run import run_bench
from poolkit.bench.stats import summarize
from poolkit.common.errors import PoolkitError
from poolkit.common.machine import usable_cores
from poolkit.exporter.ensure import ensure_exported
from poolkit.exporter.zoo import resolve_models
from poolkit.runtimes.capabilities import Reference, ReferenceLoop, Spinning
from poolkit.runtimes.registry import DEFAULT_RUNTIMES, open_runtime, runtime_class
from poolkit.services.artifacts import ModelArtifacts, open_artifacts
from poolkit.services.workers import run_apart

BLOCKS = 4  # eager check: poolkit's loop and torch.utils.benchmark take turns this many times
SPINNING_CHECKED = next(n for n in DEFAULT_RUNTIMES if issubclass(runtime_class(n), Spinning))  # the isolated check


def _reference(runtime: str, source: Any, threads: int, x: np.ndarray, warmup: int, iters: int) -> Reference:
    """The runtime timed by its plainest loop (`ReferenceLoop`); the self-check fails where it has none."""
    cls = runtime_class(runtime)
    found = cls.reference_loop(source, threads, x, warmup, iters) if issubclass(cls, ReferenceLoop) else None
    if found is None:
        raise PoolkitError(f"self-check: runtime '{runtime}' has no reference loop", exit_code=1)
    return found


def _model(models_dir: Path, model: str, batch_size: int) -> tuple[ModelArtifacts, np.ndarray]:
    """The model's artifacts and a seeded batch of its input shape."""
    (artifacts,) = open_artifacts(Path(models_dir), [model])
    sample_shape = artifacts.reference.sample_shape if artifacts.reference else ()
    return artifacts, np.random.default_rng(0).random((batch_size, *sample_shape), dtype=np.float32)


def self_check(models_dir: Path, model: str, threads: int | None, batch_size: int = 64) -> dict[str, Any]:
    """poolkit's eager p50 against torch.utils.benchmark.Timer's median, same model, thread count and batch."""
    artifacts, x = _model(models_dir, model, batch_size)
    module = artifacts.eager_module()
    threads = threads or usable_cores()
    samples: list[float] = []
    medians: list[float] = []
    fastest: list[float] = []
    with open_runtime(BASELINE_RUNTIME, module, "cpu", threads) as runtime:
        prepared = runtime.prepare(x)
        # Alternating blocks, so a drift of the machine (a neighbour, a clock change) touches both alike:
        # measured one after the other, the two figures differed by up to 3x on this 2-core VM.
        for _ in range(BLOCKS):
            timed_loop(lambda i: runtime.infer(prepared), 10)  # warm-up
            samples += [t * 1e3 for t in timed_loop(lambda i: runtime.infer(prepared), 200 // BLOCKS).host_s]
            found = _reference(BASELINE_RUNTIME, module, threads, x, 10, 200 // BLOCKS)
            medians.append(found.median_ms)
            fastest.append(found.min_ms if found.min_ms is not None else found.median_ms)
    ours, theirs = summarize(samples).p50, float(np.median(medians))
    return {
        "model": model,
        "threads": threads,
        "batch_size": batch_size,
        "poolkit_p50_ms": ours,
        "torch_benchmark_median_ms": theirs,
        "ratio": ours / theirs,
        "within_10_percent": abs(ours / theirs - 1) <= 0.10,
        # The fastest calls of both: on a loaded machine a median moves with the neighbours, the fastest does not.
        "poolkit_min_ms": min(samples),
        "torch_benchmark_min_ms": min(fastest),
        "min_ratio": min(samples) / min(fastest),
    }


def isolated_loop_check(
    models_dir: Path, model: str, threads: int | None, batch_size: int = 64, iters: int = 300, warmup: int = 20
) -> dict[str, Any]:
    """poolkit's isolated p50 of the spinning runtime against its plain reference loop in a process of its own.

    Same file, thread count, batch and (default) spinning; the plain loop also allocates its outputs
    and reads the numpy input directly, which on the CPU costs little beside a model of any size.
    """
    runtime = SPINNING_CHECKED
    artifacts, x = _model(models_dir, model, batch_size)
    path = artifacts.source(runtime)
    threads = threads or usable_cores()
    settings = BenchSettings(runtimes=(runtime,), batch_sizes=(batch_size,), warmup=warmup, iters=iters,
                             threads=threads)  # fmt: skip
    report = run_bench(Path(models_dir), [model], settings, x)
    (row,) = report.measurements
    if row.latency_ms is None:
        raise PoolkitError(f"self-check: poolkit could not time {model} on {runtime}: {row.reason}", exit_code=1)
    cls = runtime_class(runtime)
    assert issubclass(cls, ReferenceLoop)  # the spinning runtime has its plain loop: the child imports only it
    plain: Reference = run_apart("self-check", cls.reference_loop, str(path), threads, x, warmup, iters)
    ours = row.latency_ms.p50
    return {
        "model": model,
        "threads": threads,
        "batch_size": batch_size,
        "process": report.settings.process,
        "ort_spinning": row.mode.get("spinning"),
        "poolkit_p50_ms": ours,
        "poolkit_samples": row.latency_ms.n,
        "plain_loop_p50_ms": plain.median_ms,
        "plain_loop_samples": plain.samples,
        "ratio": ours / plain.median_ms,
        "within_10_percent": abs(ours / plain.median_ms - 1) <= 0.10,
    }


NEIGHBOUR_TAIL = 2.5  # eager's p99 beside a spinning runtime, against eager's p99 alone
NEIGHBOUR_P50 = 1.25  # the spinning runtime's p50 beside eager, against its plain loop (spin on)
END_TO_END = 1.25  # its end-to-end p50, against the same plain loop (numpy in, numpy out)


def neighbour_check(
    models_dir: Path, model: str, threads: int | None, batch_size: int, plain_ms: float, iters: int = 300
) -> dict[str, Any]:
    """Does a spinning runtime beside eager (isolated, interleaved, its default spinning) still leave
    eager's tail alone, while keeping its own spin-on figure and an honest end-to-end figure?"""
    x = _model(models_dir, model, batch_size)[1]

    def rows(runtimes: tuple[str, ...]) -> dict[str, Any]:
        settings = BenchSettings(runtimes=runtimes, batch_sizes=(batch_size,), warmup=20, iters=iters, threads=threads)
        found = {m.runtime: m for m in run_bench(Path(models_dir), [model], settings, x).measurements}
        for m in found.values():
            if m.latency_ms is None:
                raise PoolkitError(f"self-check: poolkit could not time {model} on {m.runtime}: {m.reason}", 1)
        return found

    alone = rows((BASELINE_RUNTIME,))[BASELINE_RUNTIME].latency_ms
    beside = rows((BASELINE_RUNTIME, SPINNING_CHECKED))
    eager, spinner = beside[BASELINE_RUNTIME].latency_ms, beside[SPINNING_CHECKED]
    assert alone is not None and eager is not None and spinner.latency_ms is not None
    e2e = spinner.end_to_end_ms
    e2e_p50 = e2e.p50 if e2e is not None else float("nan")
    return {
        "runtimes": [BASELINE_RUNTIME, SPINNING_CHECKED],
        "eager_p99_alone_ms": alone.p99,
        "eager_p99_beside_ms": eager.p99,
        "eager_p99_ratio": eager.p99 / alone.p99,
        "eager_tail_within_2_5x": eager.p99 <= NEIGHBOUR_TAIL * alone.p99,
        "p50_beside_ms": spinner.latency_ms.p50,
        "plain_loop_p50_ms": plain_ms,
        "p50_ratio": spinner.latency_ms.p50 / plain_ms,
        "p50_within_1_25x": spinner.latency_ms.p50 <= NEIGHBOUR_P50 * plain_ms,
        "end_to_end_p50_ms": e2e_p50,
        "end_to_end_ratio": e2e_p50 / plain_ms,
        "end_to_end_within_1_25x": e2e_p50 <= END_TO_END * plain_ms,
        "settle_ms": spinner.settle_ms,
    }


def run_self_check(models_dir: Path, names: list[str] | None, threads: int | None, batch_size: int) -> dict[str, Any]:
    """`poolkit bench --self-check`: the first model, exported if missing, against the reference loops."""
    refs = resolve_models(names)
    ensure_exported(refs[:1], models_dir)
    check = self_check(models_dir, refs[0].given, threads, batch_size)
    isolated = check[SPINNING_CHECKED] = isolated_loop_check(models_dir, refs[0].given, threads, batch_size)
    check["all_within_10_percent"] = check["within_10_percent"] and isolated["within_10_percent"]
    near = check["neighbours"] = neighbour_check(
        models_dir, refs[0].given, threads, batch_size, isolated["plain_loop_p50_ms"]
    )
    check["all_passed"] = check["all_within_10_percent"] and all(
        near[k] for k in ("eager_tail_within_2_5x", "p50_within_1_25x", "end_to_end_within_1_25x")
    )
    return check
