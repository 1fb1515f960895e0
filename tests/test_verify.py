"""verify: the zoo passes on all 1,000 shipped images; tampering, corruption and NaN fail, with evidence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.common.files import sha256_file
from poolkit.exporter.manifest import load_manifest, save_manifest
from poolkit.exporter.zoo import ZOO
from poolkit.services.cifar10 import load_cifar10, synthetic_images
from poolkit.verify import VerifyOptions, verify
from tests.helpers import copy_model

runner = CliRunner()


@pytest.fixture(scope="module")
def cifar():
    return load_cifar10()


def test_every_zoo_artifact_verifies_on_all_shipped_images(zoo_dir: Path, cifar, tmp_path: Path) -> None:
    report = verify(zoo_dir, cifar, VerifyOptions(results_dir=tmp_path, sensitivity="full"))
    # every format `--format all` wrote, on its reader; the .pt2 files take the tutorials' smallest
    # inputs too (exported without 0/1 specialisation: a pool whose output is 1x1 no longer guards it)
    failed = {(r.model, r.format): r.reason for r in report.rows if not r.passed}
    assert not failed, failed
    assert len(report.rows) == 3 * len(ZOO)
    assert {(r.model, r.format) for r in report.rows} == {(n, f) for n in ZOO for f in ("torchscript", "onnx", "pt2")}
    fixed_size = {"tudui", "mlp_head"}  # a Linear on flattened pixels: 3x32x32 only
    for r in (r for r in report.rows if r.passed):
        runs = {i.name: i for i in r.inputs}
        assert runs["raw"].images == 1000 and runs["raw"].batches == 16 and r.provider
        assert runs["normalized"].images == 1000 and runs["edge"].images == 16
        any_size = ["raw", "normalized", "edge", "odd", "tutorial"]
        assert r.input_names == (any_size[:3] if r.model in fixed_size else any_size), r.model
        assert r.outputs[0].elements > 0 and all(i.max_abs <= 1e-5 for i in r.inputs)
        assert r.guidance is not None and r.guidance.min_atol <= 1e-5 and r.guidance.noise_floor is not None
    odd = {i.name: i for i in next(r for r in report.rows if r.model == "maxpool_ceil").inputs}
    assert odd["odd"].sizes == ["31x27"] and odd["tutorial"].sizes == ["5x5", "4x4", "2x2"]
    floor = {i.name: i for i in next(r for r in report.rows if r.model == "maxpool_floor").inputs}
    assert (
        floor["tutorial"].sizes == ["5x5", "4x4"] and "2x2: the model itself refuses it" in floor["tutorial"].skipped[0]
    )
    tudui = next(r for r in report.rows if (r.model, r.format) == ("tudui", "onnx"))
    assert tudui.provider == "CPUExecutionProvider" and tudui.outputs[0].top1_agreement == 1.0
    # would the data have caught a wrong artifact? raw CIFAR10 cannot see a ReLU removed, the rest can
    found = {(s.model, s.variant): s for s in report.sensitivity}
    relu = found[("relu", "relu1→identity")]
    assert relu.missed_by == ["raw"] and relu.detected_by == ["normalized", "edge", "odd", "tutorial"]
    assert relu.images["raw"] == 256 and relu.images["normalized"] == 64  # caught in its first batch
    assert "relu: undetectable: relu1→identity on raw (caught by normalized, edge, odd, tutorial)" in report.warnings
    # ceil_mode cannot matter on even sizes with a 2x2 window: only the odd sizes show it
    assert found[("maxpool_2x2", "maxpool1 ceil_mode False→True")].detected_by == ["odd", "tutorial"]
    # tudui's ceil_mode flip changes nothing on its 30x30 feature map (3x3 windows fit): equivalent, no warning
    flip = found[("tudui", "maxpool1 ceil_mode True→False")]
    assert (
        flip.equivalent
        and flip.warning is None
        and not any(w.startswith("tudui: ") and "ceil_mode" in w for w in report.warnings)
    )
    weight = found[("tudui", next(v for m, v in found if m == "tudui" and v.startswith("conv1.weight")))]
    assert weight.threshold is not None and weight.threshold < 1e-3 and weight.warning is None
    assert weight.detail.startswith("detects a relative change of ") and weight.detail.endswith(" of conv1")
    assert found[("sigmoid", "sigmoid1→identity")].missed_by == []


def tampered_copy(zoo_dir: Path, dest: Path, model: str, initializer: str, change) -> Path:
    """A copy of one model's artifacts whose ONNX initializer is changed and whose manifest hash is updated."""
    records = copy_model(zoo_dir, dest, model)
    onnx_rec = next(r for r in records if r.format == "onnx")
    proto = onnx.load(str(dest / onnx_rec.path))
    init = next(i for i in proto.graph.initializer if i.name == initializer)
    values = numpy_helper.to_array(init).copy()
    change(values)
    init.CopyFrom(numpy_helper.from_array(values, initializer))
    onnx.save(proto, str(dest / onnx_rec.path))
    onnx_rec.sha256 = sha256_file(dest / onnx_rec.path)  # only the numbers can catch it now
    save_manifest(dest, records)
    return dest


def test_a_changed_weight_fails_and_names_the_diverging_layer(zoo_dir: Path, cifar, tmp_path: Path) -> None:
    models = tampered_copy(
        zoo_dir, tmp_path / "models", "tudui", "linear1.weight", lambda w: w.__setitem__((3, 17), 0.9)
    )
    report = verify(models, cifar, VerifyOptions(batches=4, results_dir=tmp_path / "results"))
    rows = {r.format: r for r in report.rows}
    assert rows["torchscript"].passed
    bad = rows["onnx"]
    assert bad.status == "failed" and not report.passed
    assert bad.diverging_layer == "linear1 (layer 5: linear(600,10))"
    worst = bad.outputs[0]
    assert worst.worst_location[1] == 3 and worst.mismatched > 0 and worst.top1_agreement is not None
    assert Path(bad.failing_batch).exists()
    assert bad.replay == f"poolkit verify --replay {bad.failing_batch} --models {models}"
    # the saved batch replays in one command, and still fails
    result = runner.invoke(app, bad.replay.split()[1:])
    assert result.exit_code == 1 and "FAILED" in result.stdout
    # the .npz names its models folder, but only the folder the user passes is opened
    result = runner.invoke(app, ["verify", "--replay", bad.failing_batch, "--models", str(zoo_dir)])
    assert result.exit_code == 2 and "pass --models with the folder you trust" in result.stderr


def test_a_changed_conv_weight_names_the_first_layer(zoo_dir: Path, cifar, tmp_path: Path) -> None:
    models = tampered_copy(zoo_dir, tmp_path, "tudui", "conv1.weight", lambda w: w.__setitem__((0, 0, 1, 1), 2.0))
    report = verify(models, cifar, VerifyOptions(batches=1, results_dir=tmp_path / "results"))
    bad = next(r for r in report.rows if r.format == "onnx")
    assert bad.diverging_layer == "conv1 (layer 1: conv(3,6,k=3))"


def test_flipped_bytes_are_a_hash_mismatch(zoo_dir: Path, cifar, tmp_path: Path) -> None:
    records = [r for r in load_manifest(zoo_dir) if r.name in ("relu", "sigmoid")]
    for r in records:
        shutil.copy(zoo_dir / r.path, tmp_path / r.path)
        shutil.copy(zoo_dir / r.weights, tmp_path / r.weights)
    save_manifest(tmp_path, records)
    target = tmp_path / "relu.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    report = verify(tmp_path, cifar, VerifyOptions(batches=1, results_dir=tmp_path / "results"))
    rows = {(r.model, r.format): r for r in report.rows}
    assert rows[("relu", "onnx")].status == "failed"
    assert rows[("relu", "onnx")].reason.startswith(f"sha256 mismatch for {target}")
    assert sum(r.passed for r in report.rows) == 5  # the rest go on (TorchScript, ONNX and .pt2 of each)


def test_a_nan_in_the_output_fails(zoo_dir: Path, cifar, tmp_path: Path) -> None:
    models = tampered_copy(zoo_dir, tmp_path, "conv", "conv1.bias", lambda b: b.__setitem__(2, np.nan))
    report = verify(models, cifar, VerifyOptions(batches=1, results_dir=tmp_path / "results"))
    bad = next(r for r in report.rows if r.format == "onnx")
    assert bad.status == "failed" and bad.outputs[0].nan_actual == 64 * 30 * 30
    assert "NaN" in bad.reason


def test_synthetic_and_real_runs_state_their_data(zoo_dir: Path, tmp_path: Path) -> None:
    for data, kind, images in (("synthetic", "synthetic", 1000), ("cifar10", "cifar10", 1000)):
        report_path = tmp_path / f"{data}.json"
        args = ["verify", "--models", str(zoo_dir), "-m", "relu", "--data", data, "--batches", "2"]
        result = runner.invoke(app, [*args, "--report", str(report_path), "--results", str(tmp_path)])
        assert result.exit_code == 0, result.output
        saved = json.loads(report_path.read_text())
        assert saved["data"]["kind"] == kind and saved["data"]["images"] == images
        runs = {i["name"]: i for i in saved["rows"][0]["inputs"]}
        assert runs["raw"]["images"] == 128 and runs["normalized"]["images"] == 128 and saved["environment"]["torch"]
        assert saved["sensitivity"][0]["variant"] == "relu1→identity" and "warnings" in saved
    assert synthetic_images().source.origin == "synthetic"


def test_verify_cli_errors(zoo_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", "--models", str(tmp_path)])
    assert result.exit_code == 2 and f"no manifest at {tmp_path / 'manifest.json'}" in result.stderr
    result = runner.invoke(app, ["verify", "--models", str(zoo_dir), "-m", "nope"])
    assert result.exit_code == 2 and "no artifact named 'nope'" in result.stderr
    result = runner.invoke(app, ["verify", "--models", str(zoo_dir), "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "no CIFAR10 test set under" in result.stderr
    result = runner.invoke(app, ["verify", "--models", str(zoo_dir), "--batches", "zero"])
    assert result.exit_code == 2 and "bad --batches 'zero'" in result.stderr


def test_cuda_without_a_gpu_is_exit_2_and_all_marks_rows_unavailable(zoo_dir: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["verify", "--models", str(zoo_dir), "-m", "relu", "--device", "cuda"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --device cuda: torch") and "no GPU" in result.stderr
    args = ["verify", "--models", str(zoo_dir), "-m", "relu", "--device", "all", "--batches", "1", "--json"]
    result = runner.invoke(app, [*args, "--results", str(tmp_path)])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)["rows"]
    statuses = {(r["runtime"], r["device"]): r["status"] for r in rows}
    assert statuses == {
        ("onnxruntime", "cpu"): "passed",
        ("torchscript", "cpu"): "passed",
        ("onnxruntime", "cuda"): "unavailable",
        ("torchscript", "cuda"): "unavailable",
        ("export", "cpu"): "passed",  # the .pt2 file `--format all` wrote
        ("export", "cuda"): "unavailable",
        ("eager", "cuda"): "unavailable",  # eager on the GPU is checked against eager on the CPU too
    }
    ort_cuda = next(r for r in rows if (r["runtime"], r["device"]) == ("onnxruntime", "cuda"))
    assert "CUDAExecutionProvider did not load" in ort_cuda["reason"]
    eager_cuda = next(r for r in rows if r["runtime"] == "eager")
    assert "no GPU" in eager_cuda["reason"] and "onnxruntime" not in eager_cuda["reason"]


def test_a_saved_eager_batch_replays(zoo_dir: Path, tmp_path: Path) -> None:
    """Eager rows (eager on CUDA against the CPU) have no artifact file: replay rebuilds them from the manifest."""
    from poolkit.services.artifacts import open_artifacts
    from poolkit.verify.failure import replay_batch, save_failure
    from poolkit.verify.report import VerifyRow

    (model,) = open_artifacts(zoo_dir, ["relu"])
    row = VerifyRow("relu", "module", "eager", "cpu", model.reference.spec, "failed")
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    expected = np.maximum(x, 0)
    path, command = save_failure(row, model, 0, x, [expected], [expected + 1], VerifyOptions(results_dir=tmp_path))
    meta, results = replay_batch(Path(path), zoo_dir)
    assert meta["runtime"] == "eager" and len(results) == 1 and results[0]  # eager on the CPU reproduces eager
