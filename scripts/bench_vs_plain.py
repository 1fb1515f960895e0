"""poolkit bench's p50 against plain loops outside poolkit, side by side in one run (the load hits both):
eager against torch.utils.benchmark's Timer (one call a sample), ONNX Runtime against a bare
`session.run` loop with ONNX Runtime's default session options in a process of its own.

    python scripts/bench_vs_plain.py MODELS_DIR [--threads=N] MODEL:ITERS [MODEL:ITERS ...]
    (e.g. conv:200 torchvision.models:resnet18:30)

Each model at batch 1 and 8, N threads (default: all usable cores), twice in turn (poolkit, then the plain loops).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from poolkit.bench.inputs import bench_batches, fitted_data
from poolkit.bench.measurement import BenchSettings
from poolkit.bench.run import run_bench
from poolkit.common.machine import usable_cores
from poolkit.runtimes.eager import EagerRuntime
from poolkit.runtimes.onnxruntime import OnnxRuntime
from poolkit.services.artifacts import open_artifacts
from poolkit.services.cifar10 import load_cifar10
from poolkit.services.workers import run_apart


def main() -> None:
    models_dir, specs = Path(sys.argv[1]), sys.argv[2:]
    threads = int(specs.pop(0).split("=")[1]) if specs and specs[0].startswith("--threads=") else usable_cores()
    images = load_cifar10().images
    print(f"load before: {os.getloadavg()}; {threads} threads; ONNX Runtime spinning at its default (on)")
    for spec in specs:
        name, iters = spec.rsplit(":", 1)
        (model,) = open_artifacts(models_dir, [name])
        assert model.reference is not None
        shape = model.reference.sample_shape
        for batch in (1, 8):
            x = bench_batches(fitted_data(images, shape, batch)[0], shape, batch)[0]
            for attempt in (1, 2):
                settings = BenchSettings(
                    runtimes=("eager", "onnxruntime"), batch_sizes=(batch,), iters=int(iters), threads=threads
                )
                ours = {m.runtime: m for m in run_bench(models_dir, [name], settings, images).measurements}
                torch_ref = EagerRuntime.reference_loop(model.eager_module(), threads, x, 10, int(iters))
                ort_ref = run_apart(
                    "plain", OnnxRuntime.reference_loop, str(model.source("onnxruntime")), threads, x, 10, int(iters)
                )
                for runtime, ref in (("eager", torch_ref), ("onnxruntime", ort_ref)):
                    m = ours[runtime]
                    assert m.latency_ms is not None and ref is not None, m.reason
                    print(
                        f"{model.name} t{threads} b{batch} #{attempt} {runtime:11s} poolkit p50 {m.latency_ms.p50:8.3f} ms "
                        f"(n {m.latency_ms.n}, end to end {m.end_to_end_ms.p50 if m.end_to_end_ms else 0:8.3f}) "
                        f"{ref.tool} {ref.median_ms:8.3f} ms (n {ref.samples}): {m.latency_ms.p50 / ref.median_ms:.2f}x",
                        flush=True,
                    )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
