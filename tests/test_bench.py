"""bench: the Runtime interface on every CPU backend, no silent fallback, reports and --compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poolkit.bench.cost import model_cost
from poolkit.bench.measurement import BenchSettings
from poolkit.bench.report import changes_since, load_report, write_reports
from poolkit.bench.run import run_bench
from poolkit.cli import app
from poolkit.exporter.build import build_model
from poolkit.exporter.spec import parse_spec
from poolkit.exporter.zoo import ZOO
from poolkit.runtimes.base import Runtime, run_batch
from poolkit.runtimes.registry import open_runtime
from tests.helpers import measurement, records_by_key

runner = CliRunner()
FAST = BenchSettings(warmup=1, iters=5, in_process=True)  # worker processes: one test in test_bench_method


@pytest.mark.parametrize("name", ["eager", "torchscript", "onnxruntime"])
def test_runtime_interface_on_cpu(zoo_dir: Path, name: str) -> None:
    records = records_by_key(zoo_dir)
    record = records[("tudui", "torchscript" if name == "torchscript" else "onnx")]
    source = zoo_dir / record.path
    if name == "eager":
        from poolkit.services.artifacts import open_artifacts

        (model,) = open_artifacts(zoo_dir, ["tudui"])
        source = model.eager_module()
    rt = open_runtime(name, source, "cpu", threads=1)
    assert isinstance(rt, Runtime)
    assert (rt.name, rt.device, rt.threads) == (name, "cpu", 1)
    assert rt.provider == {"eager": "torch-cpu", "torchscript": "torchscript-frozen-cpu"}.get(
        name, "CPUExecutionProvider"
    )
    x = np.random.default_rng(0).random((8, 3, 32, 32), dtype=np.float32)
    prepared = rt.prepare(x)
    first = rt.to_numpy(rt.infer(prepared))
    again = rt.to_numpy(rt.infer(prepared))  # a prepared batch can be run many times (the timed call)
    assert first[0].shape == (8, 10) and np.array_equal(first[0], again[0])
    np.testing.assert_array_equal(run_batch(rt, x)[0], first[0])
    rt.close()


def test_cost_of_tudui_by_hand() -> None:
    model = build_model(parse_spec(ZOO["tudui"].spec), (3, 32, 32))
    cost = model_cost(model, (3, 32, 32), 64)
    conv = 64 * 6 * 30 * 30 * (2 * 3 * 9 + 1)
    pool = 64 * 6 * 10 * 10 * 9
    relu = 64 * 600
    linear = 64 * 10 * (2 * 600 + 1)
    assert cost.flops == conv + pool + relu + linear
    conv_bytes = 4 * (64 * 3 * 32 * 32 + 6 * 3 * 9 + 6 + 64 * 6 * 30 * 30)
    assert cost.bytes > conv_bytes


def test_bench_rows_carry_statistics_rates_and_speedups(zoo_dir: Path, tmp_path: Path) -> None:
    images = np.random.default_rng(0).random((64, 3, 32, 32), dtype=np.float32)
    report = run_bench(zoo_dir, ["tudui"], FAST, images, environment={"cpu": "test"})
    assert [m.runtime for m in report.measurements] == ["eager", "torchscript", "onnxruntime"]
    for m in report.measurements:
        assert m.status == "ok" and m.device == "cpu" and m.threads >= 1
        assert m.latency_ms.n == 5 and m.latency_ms.p50 > 0 and m.first_run_ms > 0
        assert m.images_per_s == pytest.approx(64 / (m.latency_ms.p50 / 1e3))
        assert m.gflops_per_s == pytest.approx(m.flops / (m.latency_ms.p50 / 1e3) / 1e9)
        assert m.end_to_end_ms.n == 5
    assert report.measurements[0].speedup_vs_eager == 1.0
    assert all(m.overhead_ms is not None and m.overhead_ms > 0 for m in report.measurements)
    paths = write_reports(report, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["schema"] == 4 and data["environment"] == {"cpu": "test"}
    assert data["settings"]["threads"] == report.measurements[0].threads >= 1
    assert set(data["settings"]) == {
        "devices", "runtimes", "batch_sizes", "warmup", "iters", "min_time_s", "threads", "in_process", "ort_spinning",
        "cuda_graphs", "ci_target", "max_time_s", "rounds", "thread_counts", "settle",
    }  # fmt: skip
    assert data["settings"]["thread_counts"] == [data["settings"]["threads"]]  # one count, recorded as a list too
    row = data["measurements"][2]
    for key in ("model", "runtime", "device", "batch_size", "provider", "threads", "first_run_ms", "latency_ms",
                "end_to_end_ms", "overhead_ms", "flags", "images_per_s", "speedup_vs_eager", "flops", "bytes_moved", "gflops_per_s",
                "gb_per_s", "samples_ms", "process", "ort_spinning", "load_ms", "notes", "profile", "device_ms",
                "outputs_checked", "outputs_matched", "bandwidth_share", "compute_share", "peak_rss_mb", "settle_ms"):  # fmt: skip
        assert key in row, key
    assert (row["process"], row["ort_spinning"], row["load_ms"] > 0) == ("in-process", False, True)
    assert data["measurements"][0]["ort_spinning"] is None  # not an ONNX Runtime row
    assert set(row["latency_ms"]) == {
        "n",
        "min",
        "max",
        "mean",
        "std",
        "p50",
        "p90",
        "p99",
        "ci95_low",
        "ci95_high",
        "cv",
        "p25",
        "p75",
        "iqr_rel",
        "p90_reliable",
        "p99_reliable",
    }
    assert row["provider"] == "CPUExecutionProvider" and len(row["samples_ms"]) == 5
    header = paths["csv"].read_text().splitlines()[0]
    assert header.startswith("model,runtime,device,batch_size,status,provider,threads")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cuda_rows_are_unavailable_never_relabelled(zoo_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    settings = BenchSettings(devices=("cpu", "cuda"), warmup=0, iters=3, in_process=True)
    report = run_bench(zoo_dir, ["relu"], settings, np.zeros((2, 3, 32, 32), dtype=np.float32))
    cuda = [m for m in report.measurements if m.device == "cuda"]
    assert len(cuda) == 3 and all(m.status == "unavailable" and m.latency_ms is None for m in cuda)
    assert "CUDAExecutionProvider did not load" in next(m for m in cuda if m.runtime == "onnxruntime").reason
    assert "no GPU" in next(m for m in cuda if m.runtime == "eager").reason


def test_bench_cuda_without_gpu_is_exit_2(zoo_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["bench", "--models", str(zoo_dir), "-m", "relu", "--device", "cuda"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --device cuda:")
    assert "CUDAExecutionProvider did not load" in result.stderr and "no GPU" in result.stderr
    result = runner.invoke(app, ["bench", "--models", str(zoo_dir), "--runtime", "onnxruntime", "--device", "cuda"])
    assert result.exit_code == 2 and "torch" not in result.stderr.split("did not load")[0]


def test_compare_flags_only_real_changes(tmp_path: Path) -> None:
    """Synthetic samples, no timing: a 100x slower copy is a regression, the same run is within noise."""
    base = [1.0 + 0.01 * (i % 7) for i in range(50)]
    old = [measurement(base, runtime=r) for r in ("eager", "torchscript", "onnxruntime")]
    slow = [measurement([100 * s for s in base], runtime=r) for r in ("eager", "torchscript", "onnxruntime")]
    changes = changes_since(old, slow)
    assert [c.verdict for c in changes] == ["regression"] * 3
    assert changes[0].change_pct == pytest.approx(9900.0)
    assert [c.verdict for c in changes_since(slow, old)] == ["improvement"] * 3
    assert [c.verdict for c in changes_since(old, old)] == ["within noise"] * 3
    # through the saved JSON and the CLI: the report written by write_reports loads back the same rows
    from poolkit.bench.measurement import BenchReport, BenchSettings

    write_reports(BenchReport({"cpu": "test"}, BenchSettings(), "synthetic", slow), tmp_path, stem="slow")
    loaded = load_report(tmp_path / "slow.json")
    assert [m.latency_ms.p50 for m in loaded] == [m.latency_ms.p50 for m in slow]
    assert [c.verdict for c in changes_since(old, loaded)] == ["regression"] * 3


def test_bench_usage_errors(zoo_dir: Path) -> None:
    result = runner.invoke(app, ["bench", "--models", str(zoo_dir), "--runtime", "tflite"])
    assert result.exit_code == 2 and "unknown runtime 'tflite'" in result.stderr
    result = runner.invoke(app, ["bench", "--models", str(zoo_dir), "--batch-sizes", "1,x"])
    assert result.exit_code == 2 and "bad --batch-sizes '1,x'" in result.stderr
    result = runner.invoke(app, ["bench", "--models", str(zoo_dir), "--compare", str(zoo_dir / "relu.onnx")])
    assert result.exit_code == 2 and "not a poolkit bench JSON" in result.stderr


def test_self_check_prints_both_figures(zoo_dir: Path) -> None:
    """Every check runs (eager vs torch.utils.benchmark; isolated ORT vs a plain loop in its own process;
    eager's tail and ORT's p50 and end to end with both side by side); the exit code follows all of them."""
    result = runner.invoke(app, ["bench", "--models", str(zoo_dir), "-m", "conv", "--self-check", "--json"])
    check = json.loads(result.stdout)
    assert check["poolkit_p50_ms"] > 0 and check["torch_benchmark_median_ms"] > 0
    ort = check["onnxruntime"]
    assert (ort["model"], ort["process"], ort["ort_spinning"]) == ("conv", "isolated", True)
    assert ort["poolkit_samples"] == ort["plain_loop_samples"] == 300
    assert ort["ratio"] == pytest.approx(ort["poolkit_p50_ms"] / ort["plain_loop_p50_ms"])
    assert check["all_within_10_percent"] == (check["within_10_percent"] and ort["within_10_percent"])
    near = check["neighbours"]  # eager alone, then eager beside ONNX Runtime (isolated, spinning on)
    assert near["runtimes"] == ["eager", "onnxruntime"] and near["plain_loop_p50_ms"] == ort["plain_loop_p50_ms"]
    assert near["eager_p99_ratio"] == pytest.approx(near["eager_p99_beside_ms"] / near["eager_p99_alone_ms"])
    assert near["end_to_end_ratio"] == pytest.approx(near["end_to_end_p50_ms"] / near["plain_loop_p50_ms"])
    passed = check["all_within_10_percent"] and all(
        near[k] for k in ("eager_tail_within_2_5x", "p50_within_1_25x", "end_to_end_within_1_25x")
    )
    assert check["all_passed"] == passed and result.exit_code == (0 if passed else 1)


def test_flags_are_derived_structured_values() -> None:
    m = measurement([0.010, 0.010, 0.011, 0.010], e2e_samples_ms=[0.030, 0.031, 0.030, 0.030], overhead_ms=0.006)
    assert [f.kind for f in m.flags] == ["overhead", "copies"]
    assert [f.message for f in m.flags] == [
        "overhead: an Identity call takes 0.006 ms, 60% of this figure",
        "copies: end to end takes 3.0x the model-only time",
    ]
    m = measurement([0.010, 0.020, 0.010, 0.030], e2e_samples_ms=[0.012] * 4, overhead_ms=0.001)
    assert [(f.kind, f.message) for f in m.flags] == [("unstable", "unstable: IQR 100% of the median (CV 55%)")]
    assert m.images_per_s == pytest.approx(64 / 0.010e-3)
