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
        assert m.status == "ok" and m.device == "cpu" and m.threads >= 1 and m.precision == "fp32"
        assert m.latency_ms.n == 5 and m.latency_ms.p50 > 0 and m.first_run_ms > 0
        assert m.images_per_s == pytest.approx(64 / (m.latency_ms.p50 / 1e3))
        assert m.gflops_per_s == pytest.approx(m.flops / (m.latency_ms.p50 / 1e3) / 1e9)
        assert m.end_to_end_ms.n == 5
    assert report.measurements[0].speedup_vs_eager == 1.0
    assert all(m.overhead_ms is not None and m.overhead_ms > 0 for m in report.measurements)
    eager, torchscript, ort = report.measurements
    assert (eager.artifact, torchscript.artifact, ort.artifact) == ("module", "tudui.torchscript.pt", "tudui.onnx")
    assert ort.mode == {"spinning": False, "io_binding": True, "outputs": "bound once"}  # in-process: spinning off


def test_what_bench_writes_is_what_the_report_and_baseline_read(zoo_dir: Path, tmp_path: Path) -> None:
    """The JSON written is read back by `poolkit report` and by `--baseline` with the same figures; the CSV too."""
    from poolkit.report.bench_view import bench_models
    from poolkit.report.schema import SOURCES, load_source

    images = np.random.default_rng(0).random((8, 3, 32, 32), dtype=np.float32)
    settings = BenchSettings(runtimes=("eager", "onnxruntime"), batch_sizes=(8,), warmup=0, iters=4, in_process=True)
    report = run_bench(zoo_dir, ["relu"], settings, images, environment={"cpu": "test"})
    paths = write_reports(report, tmp_path)
    (view,) = bench_models(load_source(paths["json"], SOURCES["bench"]))
    assert [(r["name"], r["latency_ms"]["p50"], r["speedup"]) for r in view.rows] == [
        (m.runtime, m.latency_ms.p50, m.speedup_vs_eager) for m in report.measurements
    ]
    assert [b.n for b in view.boxes] == [4, 4] and "spinning False" in view.rows[1]["mode_text"]
    assert [(m.key, m.samples_ms) for m in load_report(paths["json"])] == [
        (m.key, m.samples_ms) for m in report.measurements
    ]
    rows = paths["csv"].read_text().splitlines()
    assert len(rows) == 3 and rows[2].startswith("relu,onnxruntime,fp32,cpu,8,ok,CPUExecutionProvider,")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_baseline_from_before_precision_rows_is_read_as_fp32(tmp_path: Path) -> None:
    """A schema-4 bench.json (no precision, no mode) still serves as --baseline: its rows are fp32 rows."""
    row = {"model": "relu", "runtime": "eager", "device": "cpu", "batch_size": 64, "status": "ok", "threads": 2}
    old = {"schema": 4, "measurements": [{**row, "samples_ms": [1.0, 1.1, 1.0]}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    (row,) = load_report(tmp_path / "old.json")
    assert (row.key, row.threads, row.samples_ms) == (("relu", "eager", "cpu", 64, "fp32"), 2, (1.0, 1.1, 1.0))
    (tmp_path / "older.json").write_text(json.dumps({**old, "schema": 1}))
    result = runner.invoke(app, ["bench", "-m", "relu", "--baseline", str(tmp_path / "older.json")])
    assert result.exit_code == 2
    assert (
        result.stderr.startswith("error: --baseline")
        and "bench JSON schema 1; this poolkit reads schemas 2 to 5" in result.stderr
    )


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


# poolkit's eager loop against torch.utils.benchmark's Timer on conv at batch 64, one thread (about 0.9 ms a
# call, compute-bound): the fastest of 200 calls each, in alternating blocks. Measured on this 2-core VM at
# load 5-6: 0.98x (tudui 0.99x, maxpool_floor 0.99x), while the ratio of the medians swung between 0.61x and
# 1.01x with the neighbours' load. Within 0.8x-1.25x: the harness bug this guards against (each output kept
# alive over the next call) made every call 1.8-3.2x slower, its fastest too.
AGREEMENT = (0.8, 1.25)


def test_self_check_agrees_with_torch_utils_benchmark(zoo_dir: Path) -> None:
    from poolkit.bench.selfcheck import self_check

    check = self_check(zoo_dir, "conv", threads=1, batch_size=64)
    assert check["ratio"] == pytest.approx(check["poolkit_p50_ms"] / check["torch_benchmark_median_ms"])
    assert check["min_ratio"] == pytest.approx(check["poolkit_min_ms"] / check["torch_benchmark_min_ms"])
    assert AGREEMENT[0] <= check["min_ratio"] <= AGREEMENT[1], check


def test_self_check_refuses_precision_rows(zoo_dir: Path) -> None:
    result = runner.invoke(app, ["bench", "--models", str(zoo_dir), "-m", "conv", "--self-check", "--precision"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --self-check times the fp32 model against plain loops: drop --precision"


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


def test_progress_advances_with_the_timed_rounds(zoo_dir: Path) -> None:
    """The bar's total is every row's rounds; each round timed moves it, so it reaches its end when the
    timing does (it used to count rows opened, reach 4/4 and sit frozen while they were timed)."""
    from poolkit.bench.run import Progress

    seen: dict[str, list] = {"total": [], "step": [], "model": []}
    progress = Progress(
        seen["total"].append, lambda text, units: seen["step"].append((text, units)), seen["model"].append
    )
    settings = BenchSettings(
        runtimes=("eager", "onnxruntime"), batch_sizes=(2, 4), warmup=0, iters=6, rounds=3, threads=1, in_process=True
    )
    run_bench(zoo_dir, ["relu", "gap"], settings, np.zeros((16, 3, 32, 32), dtype=np.float32), progress=progress)
    assert seen["total"] == [2 * 2 * 2 * 3]  # models x batch sizes x runtimes x rounds
    assert sum(units for _, units in seen["step"]) == 24
    assert [text for text, units in seen["step"] if units][:2] == ["relu eager cpu b2 t1", "relu onnxruntime cpu b2 t1"]
    assert seen["model"] == ["relu (1 of 2)", "gap (2 of 2)"]


def test_a_log_gets_a_line_per_model(zoo_dir: Path, tmp_path: Path) -> None:
    """Where stderr is not a terminal (CliRunner's, a CI log) the bar draws nothing: a line per model instead."""
    args = [
        "bench",
        "--models",
        str(zoo_dir),
        "-m",
        "relu",
        "-m",
        "gap",
        "-r",
        "eager",
        "--iters",
        "2",
        "--warmup",
        "0",
    ]
    result = runner.invoke(app, [*args, "--in-process", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("bench: ")]
    assert [line.split()[1] for line in lines] == ["relu", "gap"], result.stdout  # one per model, in order
    assert all("rounds/s, ETA" in line for line in lines), lines  # the rate once rounds are done
    result = runner.invoke(app, [*args, "--in-process", "--out", str(tmp_path / "j"), "--json"])
    assert result.exit_code == 0 and not result.stderr.strip(), result.stderr
    assert len(json.loads(result.stdout)["report"]["measurements"]) == 2  # stdout stays JSON only
