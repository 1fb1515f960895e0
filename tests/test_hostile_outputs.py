"""Outputs poolkit cannot compare or draw (issue 20, wrong exits): string, sequence, dict, scalar,
NaN everywhere. Each is a failed row or one error line with the documented exit code, never
"unexpected ... poolkit bug" and never a crashed process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.common.files import sha256_file
from poolkit.exporter.manifest import load_manifest, save_manifest

runner = CliRunner()


def onnx_with(folder: Path, nodes: list[onnx.NodeProto], output: onnx.ValueInfoProto, opset: int = 17) -> None:
    """relu.onnx replaced by `nodes` from `input` to `output`, its hash recorded (it passes the hash check)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [output]), opset_imports=[helper.make_opsetid("", opset)]
    )
    model.ir_version = 8
    onnx.save(model, str(folder / "relu.onnx"))
    rehash(folder, "onnx")


def rehash(folder: Path, fmt: str) -> None:
    records = load_manifest(folder)
    for r in records:
        if r.format == fmt:
            r.sha256 = sha256_file(folder / str(r.path))
    save_manifest(folder, records)


def verify_rows(folder: Path, runtime: str) -> tuple[int, list[dict]]:
    result = runner.invoke(
        app,
        [
            "verify",
            "--models",
            str(folder),
            "--runtime",
            runtime,
            "--data",
            "synthetic",
            "--no-sensitivity",
            "--json",
            "--results",
            str(folder / "results"),
        ],  # fmt: skip
    )
    assert "poolkit bug" not in result.output, result.output[-400:]
    return result.exit_code, json.loads(result.stdout)["rows"]


def test_an_onnx_string_output_is_a_failed_row_not_a_crash(models: Path) -> None:
    out = helper.make_tensor_value_info("output", TensorProto.STRING, ["batch", 3, 32, 32])
    onnx_with(models, [helper.make_node("Cast", ["input"], ["output"], to=TensorProto.STRING)], out)
    code, (row,) = verify_rows(models, "onnxruntime")
    assert code == 1 and row["status"] == "failed"
    assert "output 'output' is tensor(string): poolkit compares numeric tensors only" in row["reason"]


def test_an_onnx_sequence_output_is_a_failed_row(models: Path) -> None:
    out = helper.make_tensor_sequence_value_info("output", TensorProto.FLOAT, ["batch", 3, 32, 32])
    onnx_with(models, [helper.make_node("SequenceConstruct", ["input", "input"], ["output"])], out)
    code, (row,) = verify_rows(models, "onnxruntime")
    assert code == 1 and row["status"] == "failed" and "is seq(tensor(float))" in row["reason"]


class DictOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": torch.relu(x)}


class ListOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.relu(x), [x][0]]


@pytest.mark.parametrize(("module", "what"), [(DictOut(), "a dict"), (ListOut(), None)])
def test_a_torchscript_file_returning_a_dict_or_a_list(models: Path, module: torch.nn.Module, what: str | None) -> None:
    torch.jit.save(torch.jit.script(module), str(models / "relu.torchscript.pt"))
    rehash(models, "torchscript")
    code, (row,) = verify_rows(models, "torchscript")
    if what is None:  # a sequence of tensors is compared output by output: one output more than eager's
        assert code == 1 and row["status"] == "failed" and "2" in row["reason"] and "output" in row["reason"]
    else:
        assert code == 1 and row["status"] == "failed" and f"output 0 is {what}" in row["reason"]


def test_show_draws_nan_everywhere_and_refuses_a_scalar(models: Path, tmp_path: Path) -> None:
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 32, 32])
    zero = helper.make_node("Sub", ["input", "input"], ["z"])
    onnx_with(models, [zero, helper.make_node("Div", ["z", "z"], ["output"])], out)  # 0/0: NaN everywhere
    args = ["show", "--models", str(models), "-m", "relu", "--runtime", "onnxruntime", "--data", "synthetic",
            "--batches", "1", "--logdir", str(tmp_path / "logs"), "--png", str(tmp_path / "png"), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output[-400:]
    (shown,) = json.loads(result.stdout)["results"]
    assert "NaN/Inf values shown as 0" in shown["display"]
    scalar = helper.make_tensor_value_info("output", TensorProto.FLOAT, [])
    onnx_with(models, [helper.make_node("ReduceMean", ["input"], ["output"], keepdims=0)], scalar)
    result = runner.invoke(app, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output[-400:]
    assert lines[0].startswith("error: show: onnxruntime gives an output of shape [] for")


def test_check_outputs_names_what_it_refuses() -> None:
    from poolkit.common.outputs import UnusableOutput, check_outputs

    assert [a.shape for a in check_outputs([np.zeros((2, 3)), np.zeros(())])] == [(2, 3), ()]
    for value, what in ((np.array(["a"]), "a ndarray of <U1"), (1.5, "a float"), ({"y": 1}, "a dict")):
        with pytest.raises(UnusableOutput, match=f"output 0 is {what}"):
            check_outputs([value])


def test_zoo_refuses_a_batch_whose_activations_exceed_the_limit() -> None:
    result = runner.invoke(app, ["zoo", "-m", "conv(3,512,k=3)", "--batch-size", "65536"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output[-300:]
    assert lines[0] == (
        "error: bad --batch-size 65,536: 30,198,988,800 values in one batch of 512x30x30; the limit is 268,435,456"
    )
    result = runner.invoke(app, ["zoo", "-m", "conv(3,6,k=3)|maxpool(k=3,ceil=true)", "--batch-size", "4", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["output_shapes"] == [[4, 6, 10, 10]]
