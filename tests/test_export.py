"""Export: every zoo artifact loads back and matches eager; failures are rows, not crashes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from poolkit.common.files import sha256_file
from poolkit.exporter.export import ExportOptions, export_models
from poolkit.exporter.formats.registry import ALL_FORMATS
from poolkit.exporter.manifest import load_manifest
from poolkit.exporter.zoo import ZOO, resolve_model, resolve_models
from tests.helpers import records_by_key, run_artifact


def test_manifest_lists_every_zoo_artifact(zoo_dir: Path) -> None:
    records = records_by_key(zoo_dir)
    assert ALL_FORMATS == ("torchscript", "onnx", "pt2")  # aoti compiles for seconds a model: named, never in all
    assert set(records) == {(name, fmt) for name in ZOO for fmt in ALL_FORMATS}
    for r in records.values():
        assert r.ok and r.error is None
        path = zoo_dir / r.path
        assert path.exists() and r.sha256 == sha256_file(path) and r.size_bytes == path.stat().st_size
        assert r.input_shape[0] == "batch" and r.export_seconds > 0
        assert r.versions["torch"] and r.versions["poolkit"] == "0.1.0"
        assert (zoo_dir / r.weights).exists()
        assert r.method == {"torchscript": "script", "onnx": "dynamo", "pt2": "export"}[r.format]
    assert records[("tudui", "onnx")].input_shape == ["batch", 3, 32, 32]
    assert not list(zoo_dir.glob("*.tmp")), "atomic writes leave no temp files"


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_artifact_matches_eager(zoo_dir: Path, name: str) -> None:
    records = records_by_key(zoo_dir)
    x = np.random.default_rng(1).random((3, 3, 32, 32), dtype=np.float32)
    (expected,) = run_artifact(zoo_dir, records[(name, "onnx")], x, runtime="eager")
    for fmt, runtime in (("torchscript", None), ("onnx", None), ("pt2", "export")):
        (actual,) = run_artifact(zoo_dir, records[(name, fmt)], x, runtime)
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_onnx_files_pass_the_checker_and_carry_metadata(zoo_dir: Path) -> None:
    record = records_by_key(zoo_dir)[("tudui", "onnx")]
    proto = onnx.load(str(zoo_dir / record.path))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["poolkit.spec"] == ZOO["tudui"].spec.replace(" ", "").replace("|", " | ")
    assert meta["poolkit.opset"] == str(record.opset)
    assert meta["torch.version"] and meta["poolkit.version"] == "0.1.0"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis


def test_a_failed_export_is_a_row_and_the_rest_still_export(tmp_path: Path) -> None:
    refs = resolve_models(["adaptivemaxpool(5)", "relu"])
    run = export_models(refs, tmp_path, ExportOptions(formats=("onnx",)))
    failed = {r.name: r for r in run.failed}
    assert list(failed) == [refs[0].name]
    assert "adaptive_max_pool2d" in failed[refs[0].name].error and "\n" not in failed[refs[0].name].error
    assert not (tmp_path / f"{refs[0].name}.onnx").exists()
    ok = records_by_key(tmp_path)[("relu", "onnx")]
    assert ok.ok and (tmp_path / ok.path).exists()
    assert records_by_key(tmp_path)[(refs[0].name, "onnx")].status == "failed"


def test_a_second_export_keeps_other_entries(tmp_path: Path) -> None:
    export_models([resolve_model("relu")], tmp_path, ExportOptions(formats=("onnx",)))
    export_models([resolve_model("sigmoid")], tmp_path, ExportOptions(formats=("torchscript",)))
    assert set(records_by_key(tmp_path)) == {("relu", "onnx"), ("sigmoid", "torchscript")}
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["poolkit_manifest"] == 1


def test_legacy_exporter_static_batch_and_trace(tmp_path: Path) -> None:
    options = ExportOptions(exporter="legacy", method="trace", dynamic_batch=False, static_batch_size=4, opset=17)
    run = export_models([resolve_model("tudui")], tmp_path, options)
    assert not run.failed
    records = records_by_key(tmp_path)
    onnx_rec, ts_rec = records[("tudui", "onnx")], records[("tudui", "torchscript")]
    assert (onnx_rec.method, onnx_rec.opset, onnx_rec.input_shape) == ("legacy", 17, [4, 3, 32, 32])
    assert ts_rec.method == "trace"
    x = np.random.default_rng(2).random((4, 3, 32, 32), dtype=np.float32)
    (expected,) = run_artifact(tmp_path, onnx_rec, x, runtime="eager")
    for rec in (onnx_rec, ts_rec):
        np.testing.assert_allclose(run_artifact(tmp_path, rec, x)[0], expected, rtol=1e-5, atol=1e-5)


def test_spec_models_are_named_by_their_hash(tmp_path: Path) -> None:
    ref = resolve_model("conv(3, 6, k=3) | relu")
    assert ref.name.startswith("spec_") and ref.name == resolve_model("conv(3,6,kernel_size=3)|relu").name
    assert load_manifest(tmp_path) == []
