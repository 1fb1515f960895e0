"""The format registry and the torch.export / AOTInductor / OpenVINO additions built on it."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from poolkit.cli.app import app
from poolkit.common.errors import DeviceError, PoolkitError
from poolkit.exporter.export import ExportOptions, export_models
from poolkit.exporter.formats.registry import ALL_FORMATS, FORMATS, SWEEP_PATHS, artifact_filename
from poolkit.exporter.manifest import load_manifest
from poolkit.exporter.zoo import resolve_models
from poolkit.runtimes.base import precision_tolerance, run_batch
from poolkit.runtimes.registry import RUNTIMES, open_runtime
from poolkit.sweep.cell import run_cell
from poolkit.sweep.grid import Cell, build_grid
from poolkit.sweep.report import markdown
from tests.helpers import records_by_key

# The seeds' MaxPool2d(3, ceil_mode=True) worked example: a 1x1x5x5 input, output [[2, 3], [5, 1]].
SEED_5X5 = torch.tensor(
    [[1, 2, 0, 3, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0], [5, 2, 3, 1, 1], [2, 1, 0, 1, 1]], dtype=torch.float32
).reshape(1, 1, 5, 5)
SEED_OUT = [[2.0, 3.0], [5.0, 1.0]]


def test_registry_names_every_format_and_every_runtime_reads_one() -> None:
    assert list(FORMATS) == ["torchscript", "onnx", "pt2", "aoti"]
    assert {n: f.suffix for n, f in FORMATS.items()} == {
        "torchscript": ".torchscript.pt",
        "onnx": ".onnx",
        "pt2": ".pt2",
        "aoti": ".aoti.pt2",
    }
    assert ALL_FORMATS == ("torchscript", "onnx", "pt2")
    assert artifact_filename("tudui", "aoti") == "tudui.aoti.pt2"
    assert all(cls.reads == "module" or cls.reads in FORMATS for cls in RUNTIMES.values())
    assert {p: f.name for p, (f, _) in SWEEP_PATHS.items()} == {
        "torchscript-script": "torchscript",
        "torchscript-trace": "torchscript",
        "onnx-dynamo": "onnx",
        "onnx-legacy": "onnx",
        "pt2-export": "pt2",
        "pt2-aoti": "aoti",
    }
    with pytest.raises(PoolkitError, match="unknown format 'tflite' \\(known: torchscript, onnx, pt2, aoti\\)"):
        export_models(resolve_models(["relu"]), Path("unused"), ExportOptions(formats=("tflite",)))


@pytest.fixture(scope="module")
def pt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pt2")
    run = export_models(resolve_models(["maxpool_ceil", "tudui"]), out, ExportOptions(formats=("pt2",)))
    assert not run.failed, [r.error for r in run.failed]
    return out


def test_pt2_files_open_with_torch_export_load_and_give_the_seeds_numbers(pt2_dir: Path) -> None:
    records = records_by_key(pt2_dir)
    ceil = records[("maxpool_ceil", "pt2")]
    program = torch.export.load(str(pt2_dir / str(ceil.path)))  # torch alone, no poolkit
    assert program.module()(SEED_5X5)[0, 0].tolist() == SEED_OUT
    # MaxPool2d(3, ceil_mode=True) refuses explicit Dims for height and width; Dim.AUTO takes them, from
    # 0 up (no 0/1 specialisation: a 1x1 input gives a 1x1 output, as in eager)
    assert ceil.dynamic_axes == ["batch", "channels", "height", "width"]  # no parameters: any channel count
    assert ceil.dynamic_dims["batch"] == "Dim [0, inf]"
    assert ceil.dynamic_dims["height"].startswith("Dim.AUTO [0, inf] (explicit Dim refused: Constraints violated")
    one = torch.rand(1, 1, 1, 1)
    assert program.module()(one).tolist() == torch.nn.MaxPool2d(3, ceil_mode=True)(one).tolist()
    tudui = records[("tudui", "pt2")]
    assert tudui.dynamic_dims == {"batch": "Dim [0, inf]"} and tudui.method == "export"
    x = np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)
    with open_runtime("export", pt2_dir / str(tudui.path), "cpu", threads=1) as rt:
        assert rt.threads == 1 and rt.provider == "torch.export-cpu"
        (out,) = run_batch(rt, x)
    expected = torch.export.load(str(pt2_dir / str(tudui.path))).module()(torch.from_numpy(x))
    np.testing.assert_array_equal(out, expected.detach().numpy())
    assert out.shape == (5, 10)


def test_pt2_export_is_cached_and_a_changed_file_is_not_trusted(pt2_dir: Path) -> None:
    run = export_models(resolve_models(["tudui"]), pt2_dir, ExportOptions(formats=("pt2",)))
    assert [r.cached for r in run.records] == [True]
    result = CliRunner().invoke(app, ["verify", "--models", str(pt2_dir), "-m", "tudui", "-r", "export"])
    assert result.exit_code == 0, result.output
    path = pt2_dir / str(records_by_key(pt2_dir)[("tudui", "pt2")].path)
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\0")
        result = CliRunner().invoke(app, ["verify", "--models", str(pt2_dir), "-m", "tudui", "-r", "export"])
        assert result.exit_code == 1 and "sha256 mismatch" in result.output
    finally:
        path.write_bytes(original)


def test_a_module_torch_export_cannot_trace_is_a_failed_row_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "branchy.py"
    source.write_text(
        "import torch\n"
        "class Branchy(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x * 2 if x.sum() > 0 else x  # data-dependent control flow\n"
        "def example_input():\n"
        "    return torch.rand(2, 3, 4, 4)\n"
    )
    run = export_models(resolve_models([f"{source}:Branchy"]), tmp_path / "out", ExportOptions(formats=("pt2",)))
    (failed,) = run.failed
    assert failed.format == "pt2" and "\n" not in (failed.error or "") and failed.error
    assert not list((tmp_path / "out").glob("*.pt2"))


def test_an_aoti_package_compiled_for_another_device_is_refused_naming_why(tmp_path: Path) -> None:
    """Read from the package's metadata before loading: a CUDA package is refused on the CPU."""
    fake = tmp_path / "m.aoti.pt2"
    with zipfile.ZipFile(fake, "w") as archive:
        meta = {"AOTI_DEVICE_KEY": "cuda", "AOTI_PLATFORM": "linux"}
        archive.writestr("m/data/aotinductor/model/x.wrapper_metadata.json", json.dumps(meta))
    with pytest.raises(DeviceError, match="compiled for cuda: it cannot run on --device cpu"):
        open_runtime("aoti", fake, "cpu")


@pytest.mark.slow
def test_aoti_package_opens_with_aoti_load_package_and_gives_the_seeds_numbers(tmp_path: Path) -> None:
    """One compile (seconds on an idle machine): the package loads without poolkit, the compile is recorded."""
    from torch._inductor import aoti_load_package

    run = export_models(resolve_models(["maxpool_ceil"]), tmp_path, ExportOptions(formats=("aoti",)))
    (record,) = run.records
    assert record.ok, record.error
    assert record.compile_seconds and 0 < record.compile_seconds <= record.export_seconds
    assert record.path == "maxpool_ceil.aoti.pt2"
    assert aoti_load_package(str(tmp_path / record.path))(SEED_5X5)[0, 0].tolist() == SEED_OUT
    with open_runtime("aoti", tmp_path / record.path, "cpu") as rt:
        (out,) = run_batch(rt, SEED_5X5.numpy())
    assert out[0, 0].tolist() == SEED_OUT and rt.provider == "aoti-cpu"
    with pytest.raises(DeviceError, match="compiled for cpu: it cannot run on --device cuda"):
        open_runtime("aoti", tmp_path / record.path, "cuda")


def test_openvino_rows_say_the_precision_openvino_used(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    export_models(resolve_models(["conv"]), tmp_path, ExportOptions(formats=("onnx",)))
    path = tmp_path / "conv.onnx"
    x = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    with open_runtime("onnxruntime", path, "cpu") as ort:
        (expected,) = run_batch(ort, x)
    with open_runtime("openvino-f32", path, "cpu", threads=1) as rt:
        assert (rt.precision, rt.provider, rt.threads) == ("fp32", "openvino-CPU-fp32", 1)
        (out,) = run_batch(rt, x)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    import openvino

    default = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    with open_runtime("openvino", path, "cpu") as rt:
        assert rt.precision == {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[default]
        assert rt.provider == f"openvino-CPU-{rt.precision}"
    if "BF16" not in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(PoolkitError, match="runtime openvino-bf16: OpenVINO .* runs fp32 on this CPU, not bf16"):
            open_runtime("openvino-bf16", path, "cpu")


def test_a_missing_openvino_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(
        PoolkitError,
        match=r"^runtime openvino needs OpenVINO, which is not installed: pip install 'poolkit\[openvino\]'$",
    ):
        open_runtime("openvino", Path("model.onnx"), "cpu")
    with pytest.raises(DeviceError, match="the openvino runtime runs on --device cpu only"):
        open_runtime("openvino", Path("model.onnx"), "cuda")


def test_reduced_precision_is_judged_by_its_own_rounding() -> None:
    assert precision_tolerance("fp32", 1e-5, 1e-5) == (1e-5, 1e-5)
    assert precision_tolerance("bf16", 1e-5, 1e-5) == (4 * 2**-8, 4 * 2**-8)
    assert precision_tolerance("fp16", 1e-2, 1e-5) == (1e-2, 4 * 2**-11)


def test_sweep_pt2_cells_export_with_open_image_axes_and_report_dim_auto() -> None:
    cells = build_grid(("maxpool",), ("pt2-export",), sizes=((7, 7),))
    assert {(c.runtime, c.device, c.opset, c.path_label) for c in cells} == {("export", "cpu", None, "pt2-export")}
    ceil = Cell("maxpool", "maxpool(kernel_size=3,ceil_mode=True)", 7, 7, "pt2-export", None, "export", "cpu")
    result = run_cell(ceil)
    assert result.outcome == "ok", result.reason
    assert result.export_dims and result.export_dims["height"].startswith("Dim.AUTO")
    plain = run_cell(Cell("activation", "relu", 7, 7, "pt2-export", None, "export", "cpu"))
    assert plain.outcome == "ok"
    assert plain.export_dims == {"batch": "Dim [0, inf]", "height": "Dim [1, inf]", "width": "Dim [1, inf]"}
    text = markdown([result, plain], {})
    assert "## torch.export with dynamic shapes" in text
    assert "`maxpool(kernel_size=3,ceil_mode=True)` 7x7, pt2-export: Constraints violated (height, width)!" in text
    assert "`relu` 7x7" not in text.split("## torch.export with dynamic shapes")[1]


def test_a_crafted_dynamic_dims_entry_is_a_data_error(pt2_dir: Path, tmp_path: Path) -> None:
    data = json.loads((pt2_dir / "manifest.json").read_text())
    data["artifacts"][0]["dynamic_dims"] = {"height": 5}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    # one malformed entry is that artifact's failed record (issue 20), never the whole folder's error
    broken = load_manifest(tmp_path)[0]
    assert broken.raw is not None and not broken.ok and "entry 0 has bad dynamic_dims" in str(broken.error)
