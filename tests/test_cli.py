"""The command line: exit codes, one-line errors, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from poolkit.cli import app

runner = CliRunner()


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from poolkit.cli import app\n"
        "for args in (['--help'], ['zoo', '--help'], ['export', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_zoo_json_lists_every_model_with_shapes() -> None:
    result = runner.invoke(app, ["zoo", "--json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["conv"]["output_shapes"] == [[64, 6, 30, 30]]
    assert rows["maxpool_ceil"]["output_shapes"] == [[64, 3, 11, 11]]
    assert rows["maxpool_floor"]["output_shapes"] == [[64, 3, 10, 10]]
    assert rows["tudui"]["output_shapes"] == [[64, 10]] and rows["tudui"]["parameters"] == 6178
    assert rows["mlp_head"]["output_shapes"] == [[64, 10]]
    assert rows["conv"]["parameters"] == 168


def test_bad_spec_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "--model", "conv(3,6,k=abc)", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: bad value 'abc' for kernel_size in 'conv(3,6,k=abc)': "
        "expected an integer or a pair of integers like (3,5)"
    )
    assert "Traceback" not in result.output
    assert not (tmp_path / "manifest.json").exists()


def test_layers_that_do_not_chain_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["zoo", "--model", "conv(3,6,k=3) | conv(4,8,k=3)"])
    assert result.exit_code == 2
    assert "'conv(4,8,k=3)' expects in_channels=4 but gets 6 channels" in result.stderr


def test_unknown_option_value_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "--format", "tflite", "--out", str(tmp_path)])
    assert result.exit_code == 2
    result = runner.invoke(app, ["export", "--input-shape", "3xbig", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "bad --input-shape '3xbig'" in result.stderr


def test_export_exit_1_when_any_artifact_failed(tmp_path: Path) -> None:
    args = ["export", "--format", "onnx", "-m", "adaptivemaxpool(5)", "-m", "relu", "--out", str(tmp_path), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [r["status"] for r in rows] == ["failed", "ok"]


def test_export_says_torchscript_is_deprecated_once(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", "--format", "torchscript", "-m", "relu", "-m", "tanh", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0
    assert result.stderr.count("deprecated") == 1
    assert "torch.jit (TorchScript) as deprecated" in result.stderr
    assert "[torch.onnx]" not in result.output
