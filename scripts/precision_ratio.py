"""fp32 against int8 ONNX Runtime, through poolkit's bench and through a plain default loop, with
intra-op spinning on and off, side by side in one run so the machine's load falls on all of them:
why the int8/fp32 ratio depended so much on who measured it (issue 31).

    python scripts/precision_ratio.py MODELS_DIR [MODEL ...]   (exported with --format onnx --precision int8)

Per model, thread count (all usable cores, then 1) and spinning setting, twice in turn: `poolkit bench
--precision -r onnxruntime` (isolated workers, interleaved rounds; its model-only figure through IO
binding and its end-to-end figure through `session.run`) and a plain loop in this process
(`ort.InferenceSession` with ONNX Runtime's default options, only the spinning and, at 1 thread, the
thread count set; `session.run` with numpy in and out; fp32 and int8 in alternating blocks). Prints
medians (ms) and int8's speed as a share of fp32's (fp32 median / int8 median), and each file's node count.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from poolkit.bench.measurement import BenchSettings
from poolkit.bench.run import run_bench
from poolkit.common.machine import usable_cores
from poolkit.services.artifacts import open_artifacts
from poolkit.services.cifar10 import load_cifar10

BATCH, ITERS, BLOCKS = 64, 100, 5


def plain(paths: dict[str, Path], spinning: bool | None, x: np.ndarray, threads: int | None) -> dict[str, float]:
    """Median ms of `session.run` per precision, the sessions' blocks alternating; None: ORT's default."""
    sessions = {}
    for precision, path in paths.items():
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        if spinning is not None:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        sessions[precision] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    samples: dict[str, list[float]] = {p: [] for p in paths}
    for session in sessions.values():
        for _ in range(10):
            session.run(None, {session.get_inputs()[0].name: x})
    for _ in range(BLOCKS):
        for precision, session in sessions.items():
            feed = {session.get_inputs()[0].name: x}
            for _ in range(ITERS // BLOCKS):
                t0 = time.perf_counter()
                session.run(None, feed)
                samples[precision].append((time.perf_counter() - t0) * 1e3)
    return {p: float(np.median(s)) for p, s in samples.items()}


def poolkit(models_dir: Path, model: str, spinning: bool, threads: int) -> dict[str, float]:
    settings = BenchSettings(
        runtimes=("onnxruntime",),
        batch_sizes=(BATCH,),
        iters=ITERS,
        threads=threads,
        ort_spinning=spinning,
        precision=True,
    )
    report = run_bench(models_dir, [model], settings, load_cifar10().images)
    rows = {m.precision: m for m in report.measurements if m.precision in ("fp32", "int8")}
    assert all(m.latency_ms and m.outputs_matched and m.mode["spinning"] is spinning for m in rows.values())
    model_only = {p: m.latency_ms.p50 for p, m in rows.items() if m.latency_ms}
    return {**model_only, **{f"{p} e2e": m.end_to_end_ms.p50 for p, m in rows.items() if m.end_to_end_ms}}


def main() -> None:
    import onnx

    models_dir = Path(sys.argv[1])
    cores = usable_cores()
    print(f"load before: {os.getloadavg()}; {cores} usable cores")
    for artifacts in open_artifacts(models_dir, sys.argv[2:] or None):
        int8 = next((v for v in artifacts.variants if v.format == "onnx" and v.precision == "int8"), None)
        if int8 is None:
            continue
        paths = {"fp32": artifacts.source("onnxruntime"), "int8": artifacts.variant_path(int8)}
        nodes = {p: len(onnx.load(str(path)).graph.node) for p, path in paths.items()}
        print(f"{artifacts.name}: nodes in the file fp32 {nodes['fp32']}, int8 {nodes['int8']}")
        x = load_cifar10().images[:BATCH]
        for threads in (cores, 1):
            for spinning in (True, False):
                for attempt in (1, 2):
                    ours = poolkit(models_dir, artifacts.name, spinning, threads)
                    theirs = plain(paths, None if spinning else False, x, None if threads == cores else threads)
                    what = f"{artifacts.name} t{threads} spinning {'on ' if spinning else 'off'} #{attempt}"
                    for who, fp32, q in (
                        ("poolkit model-only", ours["fp32"], ours["int8"]),
                        ("poolkit end-to-end", ours["fp32 e2e"], ours["int8 e2e"]),
                        ("plain session.run ", theirs["fp32"], theirs["int8"]),
                    ):
                        print(f"{what} {who} fp32 {fp32:7.3f} ms  int8 {q:7.3f} ms  int8 speed {fp32 / q:.2f}x fp32")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
