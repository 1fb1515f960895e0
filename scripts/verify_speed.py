"""How long verify takes against simply running the models on the same inputs (not a test: timings).

    .venv/bin/python scripts/verify_speed.py [models_dir] [--repeat N]

"models only" opens eager, TorchScript and ONNX Runtime on every zoo artifact and runs every batch
of the same input sets verify uses (eager once per batch, each artifact once), comparing nothing.
"verify" is `verify()` with the default settings: the same runs plus the metrics, the sensitivity
variants and the fp64 noise floor. Both run in this process, alternating, best of N.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from poolkit.runtimes.base import run_batch
from poolkit.services.artifacts import open_artifacts
from poolkit.services.cifar10 import load_cifar10
from poolkit.verify.report import VerifyOptions
from poolkit.verify.run import InputSetCache, verify


def models_only(models_dir: Path, images, options: VerifyOptions) -> float:
    start = time.perf_counter()
    cache = InputSetCache(images, options.inputs, options.batch_size * options.batches if options.batches else None)
    for model in open_artifacts(models_dir):
        ref = model.reference
        sets = cache.get(ref.sample_shape, ref.dynamic_spatial)
        runtimes = [model.open(r, "cpu") for r in ("eager", "torchscript", "onnxruntime")]
        try:
            for input_set in sets:
                for _, x in input_set.batches(options.batch_size, options.batches):
                    try:
                        run_batch(runtimes[0], x)
                    except Exception:  # noqa: BLE001, S112 - a size eager refuses: verify skips it too
                        continue
                    for rt in runtimes[1:]:
                        run_batch(rt, x)
        finally:
            for rt in runtimes:
                rt.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="?", default="models", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inputs", default=None, help="comma-separated input sets (default: all)")
    args = parser.parse_args()
    images = load_cifar10()
    # the runtimes `models_only` runs, named: like for like whatever formats the folder holds
    options = VerifyOptions(results_dir=Path("/tmp/verify_speed"), runtimes=("torchscript", "onnxruntime"))
    if args.inputs:
        options.inputs = tuple(args.inputs.split(","))
    best_models, best_verify = float("inf"), float("inf")
    for _ in range(args.repeat):
        best_models = min(best_models, models_only(args.models, images, options))
        start = time.perf_counter()
        report = verify(args.models, images, options)
        best_verify = min(best_verify, time.perf_counter() - start)
        assert report.rows
    print(f"inputs: {','.join(options.inputs)}; {images.source.images} images; rows: {len(report.rows)}")
    print(f"models only: {best_models:.2f} s; verify: {best_verify:.2f} s; ratio {best_verify / best_models:.2f}")


if __name__ == "__main__":
    main()
