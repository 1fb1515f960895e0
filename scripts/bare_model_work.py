"""The bare model work verify does on a models folder, timed with plain loops outside poolkit's
runtimes: eager (torch), TorchScript (torch.jit.load) and ONNX Runtime (a plain InferenceSession)
on the same images verify feeds (CIFAR10 fitted to the model's input, every input set, --batches N).

    python scripts/bare_model_work.py MODELS_DIR MODEL [BATCHES]   (MODEL as verify --model takes it)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import onnxruntime as ort
import torch

from poolkit.services.artifacts import open_artifacts
from poolkit.services.cifar10 import load_cifar10
from poolkit.services.image_fit import fit_images
from poolkit.verify.inputs import DEFAULT_INPUT_SETS, build_input_sets


def main() -> None:
    models_dir, name = Path(sys.argv[1]), sys.argv[2]
    batches = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    (model,) = open_artifacts(models_dir, [name], trust=[name])
    ref = model.reference
    assert ref is not None
    data = fit_images(load_cifar10(), ref.sample_shape, 64 * batches)
    sets = build_input_sets(data, ref.sample_shape, ref.dynamic_spatial, DEFAULT_INPUT_SETS)
    xs = [x for s in sets for _, x in s.batches(64, batches)]
    eager = model.eager_module()
    ts = torch.jit.load(str(models_dir / model.records["torchscript"].path)).eval()
    opts = ort.SessionOptions()
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(models_dir / model.records["onnx"].path), opts, providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0].name
    times = {}
    with torch.inference_mode():
        for label, run in (
            ("eager", lambda x: eager(torch.from_numpy(x))),
            ("torchscript", lambda x: ts(torch.from_numpy(x))),
            ("onnxruntime", lambda x: sess.run(None, {feed: x})),
        ):
            start = time.perf_counter()
            for x in xs:
                run(x)
            times[label] = time.perf_counter() - start
    images = sum(len(x) for x in xs)
    print(f"{images} images in {len(xs)} batches: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    print(f"bare model work: {sum(times.values()):.1f} s")


if __name__ == "__main__":
    main()
