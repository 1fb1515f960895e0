"""The seeds' last Conv2d rows (dtype, device) and MaxUnpool2d after a pool with return_indices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.common.errors import SpecError
from poolkit.exporter.build import build_model
from poolkit.exporter.export import export_models
from poolkit.exporter.manifest import load_manifest
from poolkit.exporter.options import ExportOptions
from poolkit.exporter.spec import parse_spec
from poolkit.exporter.zoo import resolve_model
from poolkit.runtimes.base import run_batch
from poolkit.runtimes.registry import open_runtime
from poolkit.sweep.grid import Cell, build_grid
from poolkit.sweep.unpool import unpool_pairs
from poolkit.verify.examples import run_examples

FOUR_BY_FOUR = np.array([[1, 3, 2, 4], [5, 6, 1, 2], [7, 2, 8, 3], [4, 5, 9, 0]], dtype=np.float32).reshape(1, 1, 4, 4)
UNPOOLED = [[0, 0, 0, 4], [0, 6, 0, 0], [7, 0, 0, 0], [0, 0, 9, 0]]  # 6, 4, 7, 9 back at their argmax
UNPOOL_SPEC = "maxpool(k=2,s=2,indices=true) | maxunpool(k=2,s=2)"


@pytest.mark.parametrize(
    ("text", "canonical", "torch_call"),
    [
        ("conv(3,6,k=3,dtype=float16)", "conv(3,6,k=3,dtype=float16)", "Conv2d(3, 6, 3, dtype=torch.float16)"),
        ("Conv2d(3, 6, kernel_size=3, dtype=torch.float64)", "conv(3,6,k=3,dtype=float64)", None),
        ("conv(3,6,k=3,dtype=torch.half)", "conv(3,6,k=3,dtype=float16)", None),
        ("linear(4,2,dtype=bf16)", "linear(4,2,dtype=bfloat16)", "Linear(4, 2, dtype=torch.bfloat16)"),
        ("conv(3,6,k=3,dtype=float32)", "conv(3,6,k=3)", None),  # torch's default: same model, same name
        ("conv(3,6,k=3,device=cpu)", "conv(3,6,k=3)", None),
        ("prelu(3,dtype=double)", "prelu(n=3,dtype=float64)", None),
    ],
)
def test_dtype_and_device_spellings(text: str, canonical: str, torch_call: str | None) -> None:
    spec = parse_spec(text)
    assert str(spec) == canonical
    if torch_call:
        assert spec.torch_calls() == torch_call


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("conv(3,6,k=3,dtype=int8)", "bad value 'int8' for dtype in 'conv(3,6,k=3,dtype=int8)': expected float32,"),
        ("conv(3,6,k=3,device=cuda)", "ask for the GPU with --device cuda in verify, bench or show"),
        ("maxpool(k=2,dtype=float16)", "unknown parameter 'dtype' in 'maxpool(k=2,dtype=float16)'"),
        (
            "conv(3,6,k=3,dtype=float16) | flatten | linear(5400,2)",
            "'linear(5400,2)' holds float32 parameters but 'conv(3,6,k=3,dtype=float16)' holds float16",
        ),
        ("maxunpool(k=2)", "'maxunpool(k=2)' puts a max pool's values back where its indices say: it needs a"),
        ("maxpool(k=2) | maxunpool(k=2)", "it needs a 'maxpool(...,indices=true)' right before it"),
        ("maxpool1d(k=2,indices=true) | maxunpool(k=2)", "it needs a 'maxpool(...,indices=true)' right before it"),
        ("maxpool(k=2,indices=true) | relu", "allowed on the last layer only, or right before a maxunpool"),
    ],
)
def test_spec_errors_name_the_culprit(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=None) as caught:
        parse_spec(text)
    assert message in str(caught.value)


def test_dtype_model_holds_its_dtype_and_takes_float32_input() -> None:
    model = build_model(parse_spec("conv(3,6,k=3,dtype=float16)"), (3, 32, 32))
    assert model.conv1.weight.dtype == torch.float16
    out = model(torch.rand(2, 3, 32, 32))  # CIFAR10's float32, cast inside
    assert out.dtype == torch.float16 and out.shape == (2, 6, 30, 30)
    twin = model.double()  # verify's fp64 noise floor: the input cast follows the model
    assert twin(torch.rand(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


def test_whole_model_dtype_applies_to_every_layer() -> None:
    model = build_model(parse_spec(resolve_model("tudui").spec_text), (3, 32, 32), dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model(torch.rand(3, 3, 32, 32)).dtype == torch.bfloat16


def test_unpool_puts_the_seed_maxima_back() -> None:
    model = build_model(parse_spec(UNPOOL_SPEC), (1, 4, 4))
    assert model(torch.from_numpy(FOUR_BY_FOUR))[0, 0].tolist() == UNPOOLED
    # 1-D and 3-D forms chain the same way
    one = build_model(parse_spec("maxpool1d(k=2,indices=true) | maxunpool1d(k=2)"), (1, 4))
    assert one(torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]))[0, 0].tolist() == [0, 3, 2, 0]
    three = build_model(parse_spec("maxpool3d(k=2,indices=true) | maxunpool3d(k=2)"), (1, 2, 2, 2))
    cube = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
    assert three(cube).flatten().tolist() == [0, 0, 0, 0, 0, 0, 0, 7]


def test_zoo_cli_shows_the_dtype() -> None:
    result = CliRunner().invoke(app, ["zoo", "-m", "conv(3,6,k=3,dtype=float16)", "-m", UNPOOL_SPEC, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["dtype"] for r in rows] == ["float16", "float32"]
    assert rows[1]["output_shapes"] == [[64, 3, 32, 32]]
    bad = CliRunner().invoke(app, ["zoo", "-m", "relu", "--dtype", "int4"])
    assert bad.exit_code == 2 and "error: --dtype 'int4': expected float32, float16" in bad.output


def test_manifest_refuses_an_unknown_dtype(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "artifacts": [
                    {
                        "name": "m",
                        "spec": "relu",
                        "format": "onnx",
                        "method": "dynamo",
                        "status": "ok",
                        "input_shape": ["batch", 3, 4, 4],
                        "dtype": "int3",
                    }
                ]
            }
        )  # fmt: skip
    )
    (record,) = load_manifest(tmp_path)  # one bad entry is that artifact's failure, never the folder's
    assert record.status == "failed" and "has dtype 'int3'" in str(record.error)


def test_sweep_grid_has_pool_unpool_pairs_and_a_dtype_axis() -> None:
    pairs = dict(unpool_pairs())
    assert pairs[UNPOOL_SPEC] == 2 and pairs["maxpool1d(k=2,s=2,indices=true) | maxunpool1d(k=2,s=2)"] == 1
    cells = build_grid(("unpool",), ("torchscript-script",), (20,), ((32, 32),), dtypes=("float32", "float16"))
    assert len(cells) == 2 * len(pairs)
    fp16 = next(c for c in cells if c.dtype == "float16")
    assert fp16.path_label == "ts-script fp16"
    old = Cell("maxpool", "maxpool(k=3)", 32, 32, "onnx-dynamo", 20, "onnxruntime")
    assert old.id == "12bba2a0c567535e"  # float32 cells keep the ids old journals resume from


@pytest.fixture(scope="module")
def typed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpool worked example (1x4x4, any size) and a float16 conv, exported to both formats."""
    out = tmp_path_factory.mktemp("typed")
    run = export_models([resolve_model(UNPOOL_SPEC)], out, ExportOptions(input_shape=(1, 4, 4)))
    assert not run.failed, [r.error for r in run.failed]
    run = export_models([resolve_model("conv(3,6,k=3,dtype=float16)")], out, ExportOptions())
    assert not run.failed, [r.error for r in run.failed]
    return out


@pytest.mark.slow
def test_unpool_worked_example_through_both_files(typed_dir: Path) -> None:
    report = run_examples(typed_dir, None, ("torchscript", "onnxruntime"), ("cpu",))
    rows = [r for r in report.rows if "MaxUnpool2d" in r.example]
    assert {(r.runtime, r.status) for r in rows} == {("eager", "passed"), ("torchscript", "passed"),
                                                     ("onnxruntime", "passed")}  # fmt: skip
    assert all(r.got == UNPOOLED for r in rows)


@pytest.mark.slow
def test_dtype_recorded_and_artifacts_take_float32(typed_dir: Path) -> None:
    records = [r for r in load_manifest(typed_dir) if r.spec == "conv(3,6,k=3,dtype=float16)"]
    assert {r.format: r.dtype for r in records} == {"torchscript": "float16", "onnx": "float16", "pt2": "float16"}
    x = np.random.default_rng(1).random((2, 3, 32, 32), dtype=np.float32)
    for record in records:
        runtime = {"torchscript": "torchscript", "onnx": "onnxruntime", "pt2": "export"}[record.format]
        with open_runtime(runtime, typed_dir / str(record.path), "cpu") as rt:
            (out,) = run_batch(rt, x)
        assert out.dtype == np.float16 and out.shape == (2, 6, 30, 30)


def test_dtype_for_a_model_of_your_own(tmp_path: Path) -> None:
    from poolkit.exporter.models import build_user_model
    from poolkit.zoo.info import describe

    source = tmp_path / "mynet.py"
    source.write_text(
        "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n\n"
        "    def forward(self, x):\n        return torch.relu(self.conv(x))\n"
    )
    ref = resolve_model(f"{source}:Net")
    built = build_user_model(ref, ExportOptions(input_shape=(3, 8, 8), dtype="float16"))
    assert built.dtype == "float16" and next(built.module.parameters()).dtype == torch.float16
    out = built.exported(torch.rand(2, 3, 8, 8))  # float32 in, cast inside
    assert out.dtype == torch.float16 and out.shape == (2, 4, 6, 6)
    (row,) = describe([ref], batch=2, input_shapes=((3, 8, 8),), dtype="float16")
    assert row.dtype == "float16" and row.output_shapes == [(2, 4, 6, 6)]
