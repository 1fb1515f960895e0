"""Small promises of issue 20: no option value silently dropped, no 300-digit figure, names never cut,
a broken artifact never 'unavailable', show never an internal error on a 2-channel model."""

from __future__ import annotations

import json
import re
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


def test_bench_at_20_columns_cuts_no_name_and_no_number() -> None:
    from rich.console import Console

    from poolkit.cli.bench_render import bench_table
    from tests.test_bench_method import synthetic_report

    report = synthetic_report()
    console = Console(width=20, record=True, color_system=None)
    console.print(bench_table(report, 20))  # before the fix: 'mod…', 'max…', 'eag…', '1…'
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 20
    joined = " ".join(text.split())  # the console wraps between words (a name longer than 20 folds whole)
    rows = joined.split("• ")[1 : 1 + len(report.measurements)]
    for row, m in zip(rows, report.measurements, strict=True):
        assert row.replace("spec_conv2d_32x3x3_m axpool", "spec_conv2d_32x3x3_maxpool").startswith(
            f"{m.model} {m.runtime} {m.device}"
        ), row
    for number in ("p50 0.257", "p50 12.3", "p50 1234.6"):
        assert number in joined


def test_a_baseline_of_1e_300_ms_samples_prints_short_figures() -> None:
    from rich.console import Console

    from poolkit.bench.report import changes_since
    from poolkit.cli.bench_render import changes_table
    from tests.helpers import measurement

    (change,) = changes_since([measurement([1e-300] * 20)], [measurement([0.05 + i / 1e4 for i in range(20)])])
    console = Console(width=200, record=True, color_system=None)
    console.print(changes_table([change], "old.json"))
    text = console.export_text()  # before the fix: a 300-digit percentage
    assert "+5.09e+300%" in text and "1e-300" in text and "regression" in text
    assert max(len(digits) for digits in re.findall(r"\d+", text)) < 5


def test_bench_marks_a_broken_artifact_failed_never_unavailable(models: Path) -> None:
    # Already right on today's code (a failed row, exit 1 from the CLI): kept so it stays so.
    import numpy as np

    from poolkit.bench.measurement import BenchSettings
    from poolkit.bench.run import run_bench
    from tests.test_hostile_files import rehash

    (models / "relu.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 50)
    rehash(models)  # its hash matches: ONNX Runtime itself refuses it
    (models / "relu.torchscript.pt").write_bytes(b"changed")  # its hash does not match
    settings = BenchSettings(runtimes=("torchscript", "onnxruntime"), warmup=0, iters=3, in_process=True)
    report = run_bench(models, ["relu"], settings, np.zeros((2, 3, 32, 32), dtype=np.float32))
    rows = {m.runtime: m for m in report.measurements}
    assert rows["onnxruntime"].status == "failed" and "onnxruntime cannot load" in str(rows["onnxruntime"].reason)
    assert rows["torchscript"].status == "failed" and "sha256 mismatch" in str(rows["torchscript"].reason)
