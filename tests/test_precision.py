"""Precision variants: export --precision, verify judging each on its own rounding, a broken int8 scale caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from poolkit.bench.measurement import BenchSettings
from poolkit.bench.report import write_reports
from poolkit.bench.run import run_bench
from poolkit.cli import app
from poolkit.common.errors import PoolkitError
from poolkit.common.files import sha256_file
from poolkit.exporter.dtypes import rounding_tolerance
from poolkit.exporter.export import export_models
from poolkit.exporter.manifest import load_manifest, save_manifest
from poolkit.exporter.options import ExportOptions
from poolkit.exporter.precision import Calibration, changed_scales, parse_precisions, variant_problem
from poolkit.exporter.zoo import resolve_models
from poolkit.services.artifacts import open_artifacts
from poolkit.services.cifar10 import load_images
from poolkit.verify.variants import ErrorStats, PrecisionRow, verify_precisions


def test_precision_names_and_refusals() -> None:
    assert parse_precisions(["fp16", "int8", "float16"]) == ("fp16", "int8")
    assert parse_precisions(["half", "bfloat16", "fp32"]) == ("fp16", "bf16", "fp32")
    with pytest.raises(PoolkitError, match="--precision 'int3': expected fp32, fp16, bf16, int8"):
        parse_precisions(["int3"])
    assert variant_problem("onnx", "int8") is None
    assert "poolkit quantizes ONNX files only" in (variant_problem("torchscript", "int8") or "")


def test_cli_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["export", "-m", "relu", "-f", "torchscript", "--precision", "int8", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "error: --precision int8 --format torchscript: poolkit quantizes ONNX files only" in result.output
    assert not (tmp_path / "manifest.json").exists()
    bad = CliRunner().invoke(app, ["export", "-m", "relu", "--precision", "fp8", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "--precision 'fp8'" in bad.output


def test_rounding_scales_with_the_dtype() -> None:
    assert rounding_tolerance("float32", 1e-5, 1e-5) == (1e-5, 1e-5)
    atol, rtol = rounding_tolerance("float16", 1e-5, 1e-5)
    assert atol == pytest.approx(1e-5 * 2**13) and rtol == atol
    assert rounding_tolerance("float64", 1e-5, 1e-5) == (1e-5, 1e-5)  # never tighter than fp32's


def test_error_stats_and_changed_scales() -> None:
    stats = ErrorStats()
    ref = np.ones((4, 10))
    stats.add(ref + 0.01, ref)
    assert stats.rms == pytest.approx(0.01) and stats.max_abs == pytest.approx(0.01)
    assert stats.sqnr_db == pytest.approx(40.0)
    assert changed_scales({"a": [0.5, 0.25]}, {"a": [0.5, 0.25]}) == []
    assert changed_scales({"a": [0.5, 0.25]}, {"a": [0.5, 2.5]}) == [
        "a[1] is 2.5 in the file, calibration computed 0.25 (10x)"
    ]
    assert changed_scales({"a": [0.5]}, {}) == ["a: missing from the file"]


def test_can_ship_needs_top1() -> None:
    row = PrecisionRow("m", "onnx", "int8", "onnxruntime", "cpu", "passed", top1=0.98)
    assert not row.can_ship
    row.top1 = 0.995
    assert row.can_ship
    assert not PrecisionRow("m", "onnx", "fp16", "onnxruntime", "cpu", "failed").can_ship


@pytest.fixture(scope="module")
def variants_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tudui and conv with fp16 and int8 ONNX variants, calibrated on 64 shipped CIFAR10 images."""
    out = tmp_path_factory.mktemp("precision")
    images = load_images("cifar10").images[:64]
    options = ExportOptions(formats=("onnx",), precisions=("fp32", "fp16", "int8"),
                            calibration=Calibration(images, "CIFAR10 test images 0-63"))  # fmt: skip
    run = export_models(resolve_models(["tudui", "conv"]), out, options)
    assert not run.failed, [r.error for r in run.failed]
    return out


@pytest.mark.slow
def test_variants_are_recorded(variants_dir: Path) -> None:
    records = {r.key: r for r in load_manifest(variants_dir)}
    assert set(records) >= {("tudui", "onnx"), ("tudui", "onnx", "fp16"), ("tudui", "onnx", "int8")}
    int8 = records[("tudui", "onnx", "int8")]
    assert int8.path == "tudui.int8.onnx" and int8.quantization is not None
    q = int8.quantization
    assert (q["method"], q["images"], q["per_channel"], q["format"]) == ("minmax", 64, True, "QDQ")
    assert q["source"] == "CIFAR10 test images 0-63" and "conv1.weight_scale" in q["scales"]
    fp16 = onnx.load(str(variants_dir / str(records[("tudui", "onnx", "fp16")].path)))
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O kept
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer)


@pytest.mark.slow
def test_verify_judges_each_variant_on_its_rounding(variants_dir: Path) -> None:
    images = load_images("cifar10")
    rows = {(m.name, r.precision): r for m in open_artifacts(variants_dir) for r in verify_precisions(m, images)}
    assert all(r.status == "passed" for r in rows.values()), {k: r.reason for k, r in rows.items()}
    fp16, int8 = rows[("tudui", "fp16")], rows[("tudui", "int8")]
    assert fp16.top1 is not None and fp16.top1 > 0.99  # a classifier: top-1 agreement with fp32
    assert fp16.rms is not None and fp16.rms < 1e-3 and int8.rms is not None and int8.rms > fp16.rms
    assert int8.top1 is not None and rows[("conv", "int8")].top1 is None  # conv's output is not classes
    assert int8.worst_layer is not None and int8.worst_layer.split(" ")[0] in {"conv1", "relu1", "flatten1", "linear1"}
    assert int8.weights and all(w.ok for w in int8.weights)


def _break_scale(folder: Path, scale_name: str, factor: float) -> None:
    """Multiply one scale of the int8 file by `factor`, and re-hash it into the manifest."""
    records = load_manifest(folder)
    (record,) = [r for r in records if r.name == "tudui" and r.precision == "int8"]
    path = folder / str(record.path)
    model = onnx.load(str(path))
    (init,) = [i for i in model.graph.initializer if i.name == scale_name]
    values = numpy_helper.to_array(init).copy()
    values.reshape(-1)[0] *= factor
    init.CopyFrom(numpy_helper.from_array(values, scale_name))
    onnx.save(model, str(path))
    record.sha256 = sha256_file(path)
    save_manifest(folder, records)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scale", "message"),
    [
        ("conv1.weight_scale", "quantized weights off their scale: conv1.weight"),
        ("conv2d_scale", "scales changed since calibration: conv2d_scale is"),
    ],
)
def test_a_broken_int8_scale_fails_verify(variants_dir: Path, tmp_path: Path, scale: str, message: str) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(variants_dir, broken)
    _break_scale(broken, scale, 10.0)
    (model,) = open_artifacts(broken, ["tudui"])
    rows = [r for r in verify_precisions(model, load_images("cifar10")) if r.precision == "int8"]
    assert rows[0].status == "failed" and message in (rows[0].reason or ""), rows[0].reason
    assert "10x" in (rows[0].reason or "")


@pytest.mark.slow
def test_verify_cli_exit_codes_per_precision(variants_dir: Path, tmp_path: Path) -> None:
    good = CliRunner().invoke(app, ["verify", "--models", str(variants_dir), "-m", "tudui", "-r", "onnxruntime", "--batches", "1",
                                    "--report", str(tmp_path / "good.json")])  # fmt: skip
    assert good.exit_code == 0, good.output
    assert "precision variants: 2 passed, 0 failed" in good.output
    broken = tmp_path / "broken"
    shutil.copytree(variants_dir, broken)
    _break_scale(broken, "conv1.weight_scale", 10.0)
    bad = CliRunner().invoke(app, ["verify", "--models", str(broken), "-m", "tudui", "-r", "onnxruntime", "--batches", "1",
                                   "--report", str(tmp_path / "bad.json")])  # fmt: skip
    assert bad.exit_code == 1 and "precision variants: 1 passed, 1 failed" in bad.output


def test_precision_rows_are_bench_rows_timed_in_the_workers(variants_dir: Path, tmp_path: Path) -> None:
    """bench --precision: each variant is a row in its runtime's own worker process, in the same rounds as
    fp32, outputs checked at its own precision, its ONNX Runtime settings and its file on the row."""
    images = load_images("cifar10").images[:32]
    settings = BenchSettings(runtimes=("onnxruntime",), batch_sizes=(8,), warmup=1, iters=14, threads=1, precision=True)
    report = run_bench(variants_dir, ["tudui"], settings, images)
    assert report.settings.process == "isolated"
    rows = {m.precision: m for m in report.measurements}
    assert list(rows) == ["fp32", "fp16", "int8"]
    for precision, m in rows.items():
        assert (m.status, m.outputs_matched, m.outputs_checked) == ("ok", True, 2), (precision, m.reason)
        assert m.mode == {"spinning": True, "io_binding": True, "outputs": "bound once"}  # the worker's default
        assert m.artifact == ("tudui.onnx" if precision == "fp32" else f"tudui.{precision}.onnx")
        assert m.latency_ms.n == 14 and m.end_to_end_ms.n == 14
    fp32, int8 = rows["fp32"], rows["int8"]
    assert fp32.speedup_vs_fp32 is None and int8.speedup_vs_fp32 == pytest.approx(
        fp32.latency_ms.p50 / int8.latency_ms.p50
    )
    data = json.loads(write_reports(report, tmp_path)["json"].read_text())
    assert [(r["precision"], r["outputs_matched"], r["mode"]["spinning"]) for r in data["measurements"]] == [
        ("fp32", True, True),
        ("fp16", True, True),
        ("int8", True, True),
    ]


def test_bench_precision_honours_the_other_options(variants_dir: Path, tmp_path: Path) -> None:
    """Thread lists, batch sizes, in-process and a baseline apply to the precision rows like any others."""
    common = [
        "bench",
        "--models",
        str(variants_dir),
        "-m",
        "conv",
        "-r",
        "onnxruntime",
        "--precision",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--in-process",
        "--ort-spinning",
        "on",
    ]
    first = CliRunner().invoke(
        app, [*common, "--threads", "1,2", "--batch-sizes", "2,4", "--out", str(tmp_path), "--json"]
    )
    assert first.exit_code == 0, first.stderr
    rows = json.loads(first.stdout)["report"]["measurements"]
    assert sorted((r["threads"], r["batch_size"], r["precision"]) for r in rows) == sorted(
        (t, b, p) for t in (1, 2) for b in (2, 4) for p in ("fp32", "fp16", "int8")
    )
    assert all(r["status"] == "ok" and r["mode"]["spinning"] is True for r in rows)
    again = CliRunner().invoke(
        app,
        [
            *common,
            "--threads",
            "1",
            "--batch-size",
            "2",
            "--out",
            str(tmp_path / "b"),
            "--baseline",
            str(tmp_path / "bench.json"),
            "--json",
        ],
    )
    assert again.exit_code == 0, again.stderr
    changes = json.loads(again.stdout)["changes"]
    assert sorted(c["precision"] for c in changes) == ["fp16", "fp32", "int8"]


def test_bench_precision_refuses_what_it_cannot_add(variants_dir: Path, tmp_path: Path) -> None:
    run = export_models(resolve_models(["relu"]), tmp_path, ExportOptions(formats=("onnx",)))
    assert not run.failed
    result = CliRunner().invoke(
        app, ["bench", "--models", str(tmp_path), "-m", "relu", "--precision", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: --precision: no model in {tmp_path} has precision variants: run 'poolkit export --precision fp16,int8'"
    )
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--models",
            str(variants_dir),
            "-m",
            "tudui",
            "-r",
            "torchscript",
            "--precision",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "error: --precision: no --runtime asked reads the variants there (onnx fp16, onnx int8)"
    )
