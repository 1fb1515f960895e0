"""Small promises of issue 20: no option value silently dropped, no 300-digit figure, names never cut,
a broken artifact never 'unavailable', show never an internal error on a 2-channel model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.cli.options import parse_formats
from poolkit.common.errors import PoolkitError
from poolkit.exporter.formats.registry import ALL_FORMATS
from poolkit.exporter.manifest import load_manifest

runner = CliRunner()


def one_error(result, code: int) -> str:  # type: ignore[no-untyped-def]
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.output[-500:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-500:]
    assert "Traceback" not in result.output
    return str(lines[0])


def test_export_formats_repeat_or_comma_and_none_is_dropped() -> None:
    assert parse_formats(["torchscript", "onnx"]) == ("torchscript", "onnx")
    assert parse_formats(["torchscript,onnx", "onnx"]) == ("torchscript", "onnx")
    assert parse_formats(None) == ALL_FORMATS
    assert parse_formats(["all", "aoti"]) == tuple(dict.fromkeys([*ALL_FORMATS, "aoti"]))
    for bad, shown in ((["onnx,bogus"], "bogus"), ([""], ""), (["all", "ONNX"], "ONNX")):
        with pytest.raises(PoolkitError, match=f"bad --format '{shown}': choose from torchscript, onnx"):
            parse_formats(bad)


def test_export_writes_every_format_given(tmp_path: Path) -> None:
    # Before the fix Click kept the last value of the repeated option: only onnx was written.
    result = runner.invoke(app, ["export", "-m", "relu", "-f", "torchscript", "-f", "onnx", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output[-500:]
    assert sorted(r.format for r in load_manifest(tmp_path)) == ["onnx", "torchscript"]
    result = runner.invoke(app, ["export", "-m", "relu", "-f", "onnx,nope", "--out", str(tmp_path / "x")])
    assert one_error(result, 2).startswith("error: bad --format 'nope': choose from torchscript, onnx, pt2")
    assert not (tmp_path / "x").exists()


def test_show_draws_a_2_channel_input_by_its_first_channel(tmp_path: Path) -> None:
    # Before the fix: "unexpected AssertionError ... a poolkit bug" (TensorBoard draws 1 or 3 channels only).
    models = tmp_path / "m"
    assert (
        runner.invoke(app, ["export", "-m", "conv(2,3,k=3)", "-f", "torchscript", "--out", str(models)]).exit_code == 0
    )
    result = runner.invoke(app, ["show", "-m", "conv(2,3,k=3)", "--data", "synthetic", "--batches", "1",
                                 "--models", str(models), "--logdir", str(tmp_path / "tb"), "--png",
                                 str(tmp_path / "png"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output[-500:]
    (shown,) = json.loads(result.stdout)["results"]
    assert shown["display"].endswith("; input: channel 0 of 2 shown as grayscale"), shown["display"]
    assert Path(shown["png"]).stat().st_size > 10_000
