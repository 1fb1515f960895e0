"""The formats a command's runtimes read, exported where a model lacks them, as its other files were."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.common.errors import PoolkitError
from poolkit.exporter.ensure import export_command, options_like, refs_named
from poolkit.exporter.export import export_models
from poolkit.exporter.manifest import ExportRecord, load_manifest
from poolkit.exporter.options import ExportOptions
from poolkit.exporter.zoo import resolve_model, resolve_models
from poolkit.runtimes.registry import formats_read


def test_each_runtime_names_the_format_it_reads() -> None:
    runtimes = ("eager", "export", "aoti", "openvino", "openvino-f32", "onnxruntime", "torchscript", "compiled")
    assert formats_read(runtimes) == ("pt2", "aoti", "onnx", "torchscript")


def _record(fmt: str, seed: int = 0) -> ExportRecord:
    return ExportRecord("relu", "relu", fmt, "x", "ok", ["batch", 3, 32, 32], seed=seed,
                        dynamic_axes=["batch", "height", "width"])  # fmt: skip


def test_options_that_cannot_be_reproduced_are_refused_with_the_command() -> None:
    ref = resolve_model("relu")
    options = options_like(ref, [_record("onnx", 7), _record("torchscript", 7)], ("aoti",), Path("/m"))
    assert (options.seed, options.dynamic_batch, options.dynamic_shape, options.input_shape) == (
        7,
        True,
        True,
        (3, 32, 32),
    )
    assert export_command(ref, options, Path("/m")) == (
        "poolkit export -m relu --format aoti --out /m --seed 7 --dynamic-shape --input-shape 3x32x32"
    )
    with pytest.raises(PoolkitError) as info:
        options_like(ref, [_record("onnx", 0), _record("pt2", 5)], ("aoti",), Path("/m"))
    assert str(info.value) == (
        "'relu' has no aoti artifact in /m and poolkit cannot export one as its other files were exported (its files"
        " were exported with different seeds or dtypes): run 'poolkit export -m relu --format aoti --out /m"
        " --dynamic-shape --input-shape 3x32x32'"
    )


def test_refs_named_leave_unknown_names_to_the_command(tmp_path: Path) -> None:
    assert [r.name for r in refs_named(["relu", "nope", "relu"], tmp_path)] == ["relu"]


@pytest.mark.slow  # the first torch.export of a process imports dynamo (seconds); the suite pays it once
def test_verify_exports_only_the_missing_formats_with_the_existing_options(tmp_path: Path) -> None:
    """An ONNX-only, seed-3, static-batch export; `verify -r export,torchscript` adds pt2 and TorchScript like it."""
    export_models(
        resolve_models(["relu"]),
        tmp_path,
        ExportOptions(formats=("onnx",), exporter="legacy", seed=3, dynamic_batch=False),
    )
    onnx_before = {r.key: r for r in load_manifest(tmp_path)}[("relu", "onnx")]
    result = CliRunner().invoke(app, ["verify", "--models", str(tmp_path), "-m", "relu", "-r", "export,torchscript",
                                      "--batches", "1", "--sensitivity", "off", "--inputs", "raw",
                                      "--report", str(tmp_path / "v.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    records = {r.key: r for r in load_manifest(tmp_path)}
    assert set(records) == {("relu", "onnx"), ("relu", "pt2"), ("relu", "torchscript")}  # aoti: not asked for
    pt2 = records[("relu", "pt2")]
    assert (pt2.seed, pt2.input_shape, pt2.weights_sha256) == (3, [64, 3, 32, 32], onnx_before.weights_sha256)
    assert records[("relu", "onnx")] == onnx_before  # untouched: same file, same record, not stale
    assert "2 passed, 0 failed" in result.output and "exported relu first" in result.output
