"""verify checks what was exported: with no --runtime, every format a model has an artifact of, each
on the runtime that reads it (issue 29)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.exporter.export import ExportOptions, export_models
from poolkit.exporter.zoo import resolve_models
from poolkit.services.artifacts import open_artifacts

QUICK = ["--data", "synthetic", "--batches", "1", "--no-sensitivity", "--inputs", "raw", "--json"]


def test_a_model_exported_only_to_onnx_verifies_with_no_flag(tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert not export_models(resolve_models(["relu"]), models, ExportOptions(formats=("onnx",))).failed
    result = CliRunner().invoke(app, ["verify", "--models", str(models), "--results", str(tmp_path / "r"), *QUICK])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["format"], r["runtime"], r["status"]) for r in rows] == [("onnx", "onnxruntime", "passed")]


def test_every_format_written_is_checked_on_its_reader(zoo_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(zoo_dir, models)
    (relu,) = open_artifacts(models, ["relu"])
    assert relu.readers() == ("torchscript", "onnxruntime", "export")  # `--format all`: .pt, .onnx, .pt2
    args = ["verify", "--models", str(models), "-m", "relu", "--results", str(tmp_path / "r"), *QUICK]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["format"], r["runtime"]) for r in rows] == [("torchscript", "torchscript"), ("onnx", "onnxruntime"),
                                                           ("pt2", "export")]  # fmt: skip
    assert all(r["status"] == "passed" for r in rows)


def test_a_failed_export_is_a_failed_row_never_skipped(tmp_path: Path) -> None:
    """A format whose export failed is still 'what was exported': its row fails and says why."""
    models = tmp_path / "models"
    assert not export_models(resolve_models(["relu"]), models, ExportOptions(formats=("onnx",))).failed
    manifest = json.loads((models / "manifest.json").read_text())
    broken = {**manifest["artifacts"][0], "format": "torchscript", "status": "failed", "error": "RuntimeError: no",
              "path": None, "sha256": None}  # fmt: skip
    manifest["artifacts"].append(broken)
    (models / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(app, ["verify", "--models", str(models), "--results", str(tmp_path / "r"), *QUICK])
    rows = {r["runtime"]: r for r in json.loads(result.stdout)["rows"]}
    assert result.exit_code == 1 and rows["onnxruntime"]["status"] == "passed"
    assert (
        rows["torchscript"]["status"] == "failed" and "export failed: RuntimeError: no" in rows["torchscript"]["reason"]
    )
