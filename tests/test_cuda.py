"""The last step that needs a real GPU: the same code paths as on the CPU, on CUDA. Skipped without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poolkit.bench.measurement import BenchSettings
from poolkit.bench.run import run_bench
from poolkit.runtimes.base import run_batch
from poolkit.runtimes.registry import open_runtime
from poolkit.services.cifar10 import load_cifar10
from poolkit.verify import VerifyOptions, verify
from tests.helpers import records_by_key

pytestmark = pytest.mark.cuda


def test_onnxruntime_cuda_provider_really_runs_with_io_binding(zoo_dir: Path) -> None:
    record = records_by_key(zoo_dir)[("tudui", "onnx")]
    rt = open_runtime("onnxruntime", zoo_dir / record.path, "cuda")
    assert rt.provider == "CUDAExecutionProvider"
    x = np.random.default_rng(0).random((64, 3, 32, 32), dtype=np.float32)
    (out,) = run_batch(rt, x)
    assert out.shape == (64, 10)


def test_zoo_verifies_on_cuda(zoo_dir: Path, tmp_path: Path) -> None:
    report = verify(
        zoo_dir, load_cifar10(), VerifyOptions(devices=("cuda",), atol=1e-4, rtol=1e-4, results_dir=tmp_path)
    )
    failed = [(r.model, r.format, r.reason) for r in report.rows if not r.passed]
    assert not failed
    assert all(r.provider in ("CUDAExecutionProvider", "torchscript-frozen-cuda", "torch-cuda") for r in report.rows)
    assert {r.runtime for r in report.rows} == {"eager", "torchscript", "onnxruntime"}


def test_bench_cuda_rows_are_measured_on_cuda(zoo_dir: Path) -> None:
    images = load_cifar10().images[:64]
    report = run_bench(zoo_dir, ["tudui"], BenchSettings(devices=("cuda",), warmup=2, iters=5), images)
    for m in report.measurements:
        assert m.status == "ok" and m.device == "cuda" and "cpu" not in m.provider.lower()
