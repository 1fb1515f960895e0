"""Your own models (`--model PATH.py:NAME`): export, verify, bench, show and zoo as for a zoo model.

The tests write their own small modules: a CNN with BatchNorm and Dropout whose forward() flattens
between layers, a model with two outputs (its input shape from an `example_input()` beside it), and
one with two inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from poolkit.bench.cost import model_cost
from poolkit.cli import app
from poolkit.common.files import sha256_file
from poolkit.exporter.manifest import load_manifest
from poolkit.exporter.user_model import construct, parse_user_model
from poolkit.runtimes.base import run_batch
from poolkit.runtimes.registry import open_runtime
from poolkit.services.artifacts import open_artifacts

runner = CliRunner()

CNN = '''
import torch
from torch import nn


class SmallCNN(nn.Module):
    """Weights set by the constructor: poolkit must keep them, never re-seed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 16 * 16, 10)
        with torch.no_grad():
            self.conv.weight.fill_(0.05)
            self.conv.bias.fill_(0.1)
            self.bn.running_mean.fill_(0.3)
            self.bn.running_var.fill_(2.0)
            self.fc.weight.copy_(torch.linspace(-0.01, 0.01, 10 * 4 * 16 * 16).reshape(10, -1))
            self.fc.bias.fill_(0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = nn.functional.max_pool2d(x, 2)
        return self.fc(self.drop(torch.flatten(x, 1)))
'''

TWO = """
from typing import Tuple

import torch
from torch import nn


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.conv(x))
        return features, self.head(features.mean(dim=(2, 3)))


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3)) + self.fc(y)


def example_input() -> torch.Tensor:
    return torch.zeros(1, 3, 32, 32)
"""


def invoke(*args: str | Path) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn.py and two.py, and both models exported in both formats into models/ (as a user would)."""
    root = tmp_path_factory.mktemp("user")
    (root / "cnn.py").write_text(CNN)
    (root / "two.py").write_text(TWO)
    models = root / "models"
    result = invoke("export", "--model", root / "cnn.py:SmallCNN", "--input-shape", "3x32x32", "--out", models)
    assert result.exit_code == 0, result.output
    result = invoke("export", "--model", root / "two.py:TwoHeads", "--out", models)
    assert result.exit_code == 0, result.output
    return root


def test_export_records_source_weights_and_both_formats(user_dir: Path) -> None:
    records = {r.key: r for r in load_manifest(user_dir / "models")}
    assert set(records) == {(n, f) for n in ("cnn_SmallCNN", "two_TwoHeads") for f in ("onnx", "torchscript", "pt2")}
    cnn = records[("cnn_SmallCNN", "onnx")]
    assert cnn.ok and cnn.import_path == str(user_dir / "cnn.py") and cnn.object_name == "SmallCNN"
    assert cnn.source_sha256 == sha256_file(user_dir / "cnn.py")
    assert cnn.input_shape == ["batch", 3, 32, 32] and cnn.outputs == 1 and cnn.input_shapes is None
    # the weights saved are the constructor's own, never re-seeded
    state = torch.load(user_dir / "models" / str(cnn.weights), weights_only=True)
    assert torch.all(state["conv.weight"] == 0.05) and torch.all(state["bn.running_var"] == 2.0)
    two = records[("two_TwoHeads", "torchscript")]
    assert two.outputs == 2 and two.input_shape == ["batch", 3, 32, 32]  # from example_input() beside it


def test_rebuilt_eager_is_in_eval_mode_and_matches_every_runtime(user_dir: Path) -> None:
    (model,) = open_artifacts(user_dir / "models", [f"{user_dir}/cnn.py:SmallCNN"])
    eager = model.eager_module()
    assert not eager.training and not eager.bn.training and not eager.drop.training
    x = np.random.default_rng(1).random((4, 3, 32, 32), dtype=np.float32)
    fresh = construct(parse_user_model(f"{user_dir}/cnn.py:SmallCNN"))
    with torch.inference_mode():
        expected = fresh(torch.from_numpy(x)).numpy()
        train_mode = fresh.train()(torch.from_numpy(x)).numpy()
    assert not np.allclose(expected, train_mode)  # BatchNorm's running stats and no Dropout: eval mode matters
    for runtime in ("eager", "torchscript", "onnxruntime"):
        with model.open(runtime, "cpu") as rt:
            (out,) = run_batch(rt, x)
        np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-4)


def test_verify_bench_show_and_zoo_take_your_own_models(user_dir: Path) -> None:
    models, results = user_dir / "models", user_dir / "results"
    cnn, two = f"{user_dir}/cnn.py:SmallCNN", f"{user_dir}/two.py:TwoHeads"
    result = invoke("verify", "--models", models, "--model", cnn, "--model", two, "--batches", "1",
                    "--batch-size", "16", "--results", results)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((results / "verify.json").read_text())["rows"]
    assert {(r["model"], r["runtime"], r["status"]) for r in rows} == {
        (m, r, "passed") for m in ("cnn_SmallCNN", "two_TwoHeads") for r in ("torchscript", "onnxruntime", "export")
    }  # every format `export --format all` wrote (.pt2 on the export runtime too)
    assert [len(r["outputs"]) for r in rows if r["model"] == "two_TwoHeads"] == [2, 2, 2]
    # the sensitivity check finds the layers of your own module by their torch type, wherever they sit
    sensitivity = json.loads((results / "verify.json").read_text())["sensitivity"]
    variants = {v["variant"] for v in sensitivity if v["model"] == "cnn_SmallCNN"}
    assert variants == {"conv.weight[0, 0, 0, 0] ×(1+0.001)", "fc.weight[0, 0] ×(1+0.001)"}

    result = invoke("bench", "--models", models, "--model", cnn, "--iters", "2", "--warmup", "0",
                    "--batch-size", "8", "--out", results)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((results / "bench.json").read_text())["measurements"]
    assert [(r["runtime"], r["status"]) for r in rows] == [
        ("eager", "ok"),
        ("torchscript", "ok"),
        ("onnxruntime", "ok"),
    ]
    conv = 8 * 4 * 32 * 32 * (2 * 3 * 9 + 1)
    assert rows[0]["flops"] > conv  # counted through forward(), flatten and all

    result = invoke("show", "--models", models, "--model", two, "--runtime", "eager,onnxruntime", "--batches", "1",
                    "--png", results / "show", "--logdir", results / "logs")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (results / "show").iterdir()) == [
        "two_TwoHeads-eager.png",
        "two_TwoHeads-onnxruntime.png",
    ]

    result = invoke("zoo", "--model", two, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["output_shapes"] == [[64, 4, 30, 30], [64, 10]] and row["parameters"] == 4 * 27 + 4 + 4 * 10 + 10
    assert row["layers"] == "Conv2d → Linear"


def test_several_inputs_export_run_and_verify(tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(TWO)
    models = tmp_path / "models"
    model = f"{tmp_path}/two.py:TwoInputs"
    result = invoke("export", "--model", model, "--input-shape", "3x32x32+5", "--exporter", "legacy", "--out", models)
    assert result.exit_code == 0, result.output
    (artifacts,) = open_artifacts(models, [model])
    assert artifacts.records["onnx"].sample_shapes == [(3, 32, 32), (5,)]
    rng = np.random.default_rng(0)
    x, y = rng.random((3, 3, 32, 32), dtype=np.float32), rng.random((3, 5), dtype=np.float32)
    with torch.inference_mode():
        expected = artifacts.eager_module()(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    for runtime in ("torchscript", "onnxruntime"):
        with open_runtime(runtime, artifacts.source(runtime), "cpu") as rt:
            np.testing.assert_allclose(run_batch(rt, (x, y))[0], expected, atol=1e-5)
    with artifacts.open("onnxruntime", "cpu") as rt:  # one array: the others get the same seeded noise
        assert np.array_equal(run_batch(rt, x)[0], run_batch(rt, x)[0])
    assert model_cost(artifacts.eager_module(), (3, 32, 32), 2).flops is None  # cannot run on one input
    result = invoke("verify", "--models", models, "--model", model, "--data", "synthetic", "--batches", "1",
                    "--batch-size", "8", "--results", tmp_path / "results")  # fmt: skip
    assert result.exit_code == 0, result.output
    # bench's worker processes feed several inputs the same way (each runtime in its own process)
    result = invoke("bench", "--models", models, "--model", model, "--iters", "2", "--warmup", "0",
                    "--batch-size", "4", "--out", tmp_path / "results")  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results" / "bench.json").read_text())
    assert data["settings"]["in_process"] is False  # isolated: one worker process per runtime
    assert [(r["runtime"], r["status"], r["outputs_matched"]) for r in data["measurements"]] == [
        ("eager", "ok", True),
        ("torchscript", "ok", True),
        ("onnxruntime", "ok", True),
    ]


def test_weights_file_is_loaded_and_a_changed_source_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cnn.py").write_text(CNN)
    model, models = f"{tmp_path}/cnn.py:SmallCNN", tmp_path / "models"
    state = construct(parse_user_model(model)).state_dict()
    state["conv.bias"] = torch.full((4,), 0.7)
    torch.save(state, tmp_path / "w.pt")
    args = ("export", "--model", model, "--input-shape", "3x32x32", "--format", "torchscript", "--out", models)
    result = invoke(*args, "--weights", tmp_path / "w.pt")
    assert result.exit_code == 0, result.output
    (artifacts,) = open_artifacts(models, [model])
    assert torch.all(artifacts.eager_module().conv.bias == 0.7)

    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    result = invoke(*args, "--weights", tmp_path / "wrong.pt")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: weights {tmp_path}/wrong.pt do not fit SmallCNN: conv.weight is (1,),")

    with (tmp_path / "cnn.py").open("a") as fh:
        fh.write("# edited after export\n")
    result = invoke("verify", "--models", models, "--model", model, "--runtime", "torchscript", "--batches", "1",
                    "--results", tmp_path / "results")  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path}/cnn.py changed since export (sha256 was ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_names_of_package_models_and_their_clashes() -> None:
    """`torchvision.models:resnet18` is `resnet18`; a zoo name gets its module as a prefix; two models
    that would share a name are one clear error."""
    from poolkit.common.errors import SpecError
    from poolkit.exporter.zoo import resolve_model, resolve_models

    assert resolve_model("torchvision.models:resnet18").name == "resnet18"
    assert resolve_model("mynets.acts:relu").name == "acts_relu"  # `relu` is the zoo's
    assert resolve_model("net.py:Net").name == "net_Net"
    with pytest.raises(SpecError, match="would both be named 'resnet18': export them to different --out folders"):
        resolve_models(["torchvision.models:resnet18", "other.models:resnet18"])


def test_package_module_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "mynets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cnn.py").write_text(CNN)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = invoke("export", "--model", "mynets.cnn:SmallCNN", "--input-shape", "3x32x32", "--format", "torchscript",
                    "--out", tmp_path / "models")  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = load_manifest(tmp_path / "models")
    assert (record.name, record.import_path, record.object_name) == ("SmallCNN", "mynets.cnn", "SmallCNN")
    assert record.source_sha256 == sha256_file(package / "cnn.py")


BAD = """
import torch
from torch import nn

NUMBER = 3


def not_a_module():
    return 42


class NeedsArgs(nn.Module):
    def __init__(self, width):
        super().__init__()


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)
"""

ERRORS = [
    ("missing.py:Net", "3x32x32", "error: model file not found: {tmp}/missing.py"),
    ("bad.py:Nope", "3x32x32", "error: 'Nope' is not defined in bad.py (modules defined there: NeedsArgs, Small)"),
    ("bad.py:NUMBER", "3x32x32", "error: 'NUMBER' in bad.py is not an nn.Module class or a function (it is a value of type int)"),
    ("bad.py:not_a_module", "3x32x32", "error: 'not_a_module()' in bad.py gives a value of type int, not an nn.Module"),
    ("bad.py:NeedsArgs", "3x32x32", "error: 'NeedsArgs' in bad.py needs arguments (width): poolkit calls it with none;"),
    ("broken.py:Net", "3x32x32", "error: importing {tmp}/broken.py failed: NameError: name 'undefined_name' is not defined (broken.py line 3)"),
    ("syntax.py:Net", "3x32x32", "error: importing {tmp}/syntax.py failed: SyntaxError: invalid syntax (syntax.py line 2)"),
    ("bad.py:Small", "3x32x32", "error: bad.py:Small cannot run on input 3x32x32: RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    ("bad.py:Small", None, "error: '{tmp}/bad.py:Small' needs an input shape: give 'poolkit export' --input-shape"),
    ("bad.py", "3x32x32", "error: --model '{tmp}/bad.py': name the module class or function in it, like {tmp}/bad.py:Net"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "shape", "message"), ERRORS)
def test_mistakes_are_one_line_naming_the_culprit(tmp_path: Path, model: str, shape: str | None, message: str) -> None:
    (tmp_path / "bad.py").write_text(BAD)
    (tmp_path / "broken.py").write_text("import torch\nx = 1\ny = undefined_name + 1\n")
    (tmp_path / "syntax.py").write_text("import torch\ndef f(:\n")
    args = ["export", "--model", f"{tmp_path}/{model}", "--out", tmp_path / "models"]
    result = invoke(*args, *(["--input-shape", shape] if shape else []))
    assert result.exit_code == 2
    assert result.stderr.startswith(message.format(tmp=tmp_path)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "models" / "manifest.json").exists()


def test_help_says_loading_your_file_runs_it() -> None:
    result = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert "PATH.py:NAME" in result.stdout and "runs its code" in " ".join(result.stdout.split())


def test_two_files_with_the_same_name_are_refused(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "cnn.py").write_text(CNN)
    result = invoke("zoo", "--model", tmp_path / "a/cnn.py:SmallCNN", "--model", tmp_path / "b/cnn.py:SmallCNN")
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("would both be named 'cnn_SmallCNN': export them to different --out folders")


def test_divergence_finder_says_why_it_cannot_split_your_forward(user_dir: Path) -> None:
    from poolkit.verify.failure import first_diverging_layer

    (model,) = open_artifacts(user_dir / "models", ["cnn_SmallCNN"], trust=[f"{user_dir}/cnn.py:SmallCNN"])
    x = np.zeros((2, 3, 32, 32), dtype=np.float32)
    assert first_diverging_layer("onnxruntime", model, x, 1e-5, 1e-5) == (
        "unknown (layer outputs unavailable: PoolkitError: SmallCNN has its own forward(): its layers are not a"
        " chain to run one by one)"
    )


def test_zoo_table_says_which_input_each_row_was_given() -> None:
    result = runner.invoke(app, ["zoo", "--model", "conv", "--input-shape", "3x8x8"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "output shapes for a batch of 64" in result.stdout
    assert "64x3x8x8" in result.stdout and "64x6x6x6" in result.stdout


def test_what_your_file_prints_keeps_json_clean(tmp_path: Path) -> None:
    (tmp_path / "loud.py").write_text("print('hello from loud.py')\n" + CNN)
    result = invoke("zoo", "--model", tmp_path / "loud.py:SmallCNN", "--input-shape", "3x32x32", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["output_shapes"] == [[64, 10]]
    assert "hello from loud.py" in result.stderr


def test_a_scripted_spec_still_gives_layer_outputs(tmp_path: Path) -> None:
    """Refusing your own forward() must not refuse a TorchScript chain (a ScriptModule is no nn.Sequential)."""
    from poolkit.runtimes.registry import runtime_class

    result = invoke("export", "--model", "tudui", "--format", "torchscript", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    x = np.zeros((2, 3, 32, 32), dtype=np.float32)
    layers = runtime_class("torchscript").layer_outputs(tmp_path / "tudui.torchscript.pt", x)
    assert [name for name, _ in layers] == ["conv1", "maxpool1", "relu1", "flatten1", "linear1"]


NOT_SCRIPTABLE = """
import torch
from torch import nn


class Dyn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        outs = {k: v for k, v in zip("ab", (x, x))}
        return self.conv(outs["a"]) * len(outs)
"""


def test_unscriptable_code_is_a_failed_row_that_suggests_trace(tmp_path: Path) -> None:
    (tmp_path / "dyn.py").write_text(NOT_SCRIPTABLE)
    args = ["export", "--model", f"{tmp_path}/dyn.py:Dyn", "--input-shape", "3x32x32", "--format", "torchscript"]
    result = invoke(*args, "--out", tmp_path / "models", "--json")
    assert result.exit_code == 1
    (row,) = json.loads(result.stdout)
    assert row["status"] == "failed" and row["error"].endswith(
        "(torch.jit.script cannot compile this code: try --method trace)"
    )
    assert invoke(*args, "--out", tmp_path / "models", "--method", "trace").exit_code == 0


def test_a_manifest_alone_never_runs_a_models_code(tmp_path: Path) -> None:
    """A models folder is data: a manifest naming a .py file (with its own sha256) must not get it imported."""
    import shutil

    (tmp_path / "cnn.py").write_text(CNN)
    models = tmp_path / "models"
    model = f"{tmp_path}/cnn.py:SmallCNN"
    assert invoke("export", "--model", model, "--input-shape", "3x32x32", "--out", models).exit_code == 0
    marker = tmp_path / "ran"
    (tmp_path / "cnn.py").write_text(CNN + f"\nopen({str(marker)!r}, 'w').close()\n")  # what an attacker ships
    manifest = json.loads((models / "manifest.json").read_text())
    for row in manifest["artifacts"]:
        row["source_sha256"] = sha256_file(tmp_path / "cnn.py")
    (models / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(models, tmp_path / "received")
    result = invoke("verify", "--models", tmp_path / "received", "--batches", "1", "--results", tmp_path / "r")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: 'cnn_SmallCNN' is a model of your own ({model}): rebuilding it runs that code, so poolkit does so"
        f" only when you name it: add --model {model}\n"
    )
    assert not marker.exists()
