"""verify tells a wrong artifact from a right one: normalised and edge inputs, sensitivity, guidance, heatmaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnx import helper
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.common.errors import DataError
from poolkit.common.files import sha256_file
from poolkit.exporter.build import build_model
from poolkit.exporter.manifest import load_manifest, save_manifest
from poolkit.exporter.spec import parse_spec
from poolkit.services.cifar10 import load_cifar10
from poolkit.services.comparator import compare
from poolkit.verify import VerifyOptions, verify
from poolkit.verify.inputs import edge_batch, normalize, parse_input_sets, tutorial_examples
from poolkit.verify.sensitivity import wrong_variants
from poolkit.verify.tolerance import guidance
from tests.helpers import copy_model

runner = CliRunner()


@pytest.fixture(scope="module")
def cifar():
    return load_cifar10()


def activation_removed(zoo_dir: Path, dest: Path, model: str, op_type: str) -> Path:
    """A copy of one model whose ONNX activation node became an Identity, manifest hash updated:
    the file is 'valid', only the numbers can tell."""
    records = copy_model(zoo_dir, dest, model)
    onnx_rec = next(r for r in records if r.format == "onnx")
    proto = onnx.load(str(dest / onnx_rec.path))
    (index,) = [i for i, n in enumerate(proto.graph.node) if n.op_type == op_type]
    node = proto.graph.node[index]
    proto.graph.node[index].CopyFrom(helper.make_node("Identity", list(node.input), list(node.output), name=node.name))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dest / onnx_rec.path))
    onnx_rec.sha256 = sha256_file(dest / onnx_rec.path)
    save_manifest(dest, records)
    return dest


@pytest.mark.parametrize(("model", "op_type"), [("leaky_relu", "LeakyRelu"), ("relu", "Relu")])
def test_an_artifact_without_its_activation_fails_by_default(zoo_dir, cifar, tmp_path, model, op_type) -> None:
    models = activation_removed(zoo_dir, tmp_path / "models", model, op_type)
    results = tmp_path / "results"
    report = verify(models, cifar, VerifyOptions(results_dir=results))  # the default settings
    rows = {r.format: r for r in report.rows}
    assert rows["torchscript"].passed and not report.passed
    bad = rows["onnx"]
    assert bad.status == "failed" and bad.worst_input == "normalized"
    assert "out of tolerance on normalized (and on edge, odd, tutorial); beyond fp32 rounding: " in bad.reason
    runs = {i.name: i for i in bad.inputs}
    assert runs["raw"].passed and runs["raw"].images == 1000  # raw CIFAR10 alone would have passed it
    assert not runs["normalized"].passed and not runs["edge"].passed
    worst = bad.worst
    if model == "relu":
        assert worst.worst_expected == 0 and worst.worst_actual < 0
    else:  # LeakyReLU's slope is 0.01: the artifact gives the input itself
        assert worst.worst_actual == pytest.approx(worst.worst_expected / 0.01, rel=1e-4)
    assert bad.diverging_layer == f"{model}1 (layer 1: {model}): no node of the artifact computes it" + (
        " (dropped, or folded into another layer)"
    )
    # the picture of where it differs, beside the .npz
    assert Path(bad.failing_batch).is_file() and Path(bad.heatmap).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(Path(bad.tensorboard).glob("events.out.tfevents.*"))
    result = runner.invoke(app, ["verify", "--models", str(models), "--results", str(results)], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "error heatmap:" in result.stdout and "first diverging layer:" in result.stdout
    onnx_line = next(line for line in result.stdout.splitlines() if "onnxruntime" in line and "FAILED" in line)
    assert onnx_line.split("│")[5].strip() == "2.0e+00"  # max abs on the normalised set, not a dash
    # and what raw CIFAR10 alone would have missed is said in the table and the JSON
    result = runner.invoke(app, ["verify", "--models", str(models), "--inputs", "raw", "--results", str(results)])
    assert result.exit_code == 0, result.output
    saved = json.loads((results / "verify.json").read_text())
    assert (
        f"{model}: undetectable: {model}1→identity on every input set (raw): a pass says nothing about it"
        in saved["warnings"]
    )
    assert "undetectable" in result.stdout and "sensitivity" in result.stdout


def test_examples_run_through_every_exported_file(zoo_dir, tmp_path) -> None:
    args = ["verify", "--models", str(zoo_dir), "--examples", "--results", str(tmp_path), "--json"]
    result = runner.invoke(app, args)
    rows = json.loads(result.stdout)["rows"]
    got = {(r["model"], r["runtime"]): r["got"] for r in rows if r["status"] == "passed"}
    failed = {(r["model"], r["runtime"]): r["reason"] for r in rows if r["status"] != "passed"}
    assert len(rows) == 5 * 4  # five examples, eager + every format `--format all` wrote (TorchScript, ONNX, .pt2)
    # the .pt2 file takes the 5x5 example although MaxPool2d(3)'s output is 1x1 there (no 0/1 specialisation)
    assert not failed, failed
    assert result.exit_code == 0 and len(got) == 20
    assert got[("maxpool_floor", "export")] == [[2]]
    assert got[("maxpool_ceil", "export")] == [[2, 3], [5, 1]]
    assert got[("maxpool_ceil", "onnxruntime")] == [[2, 3], [5, 1]]
    assert got[("maxpool_floor", "torchscript")] == [[2]]
    assert got[("maxpool_2x2", "onnxruntime")] == [[6, 4], [7, 9]]
    assert got[("relu", "onnxruntime")] == [[1, 0], [0, 3]]
    assert got[("sigmoid", "onnxruntime")] == [[0.7311, 0.3775], [0.2689, 0.9526]]
    assert (tmp_path / "verify_examples.json").is_file()


def test_examples_refuse_a_static_shape_file(tmp_path) -> None:
    out = tmp_path / "models"
    result = runner.invoke(app, ["export", "-m", "relu", "--static-shape", "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["verify", "--models", str(out), "--examples", "--results", str(tmp_path)])
    assert result.exit_code == 1
    rows = json.loads((tmp_path / "verify_examples.json").read_text())["rows"]
    onnx_row = next(r for r in rows if r["runtime"] == "onnxruntime")
    assert (
        onnx_row["status"] == "failed" and "fixed to 3x32x32: re-export it with --dynamic-shape" in onnx_row["reason"]
    )
    result = runner.invoke(
        app, ["verify", "--models", str(out), "--examples", "--runtime", "torchscript", "--results", str(tmp_path)]
    )
    assert result.exit_code == 0  # TorchScript runs the module's code: any size


def test_manifest_records_dynamic_axes(zoo_dir, tmp_path) -> None:
    axes = {(r.name, r.format): r.dynamic_axes for r in load_manifest(zoo_dir)}
    assert axes[("relu", "onnx")] == ["batch", "channels", "height", "width"]  # pools, activations: any channels
    assert axes[("gap", "onnx")] == ["batch", "channels", "height", "width"]
    assert axes[("tudui", "onnx")] == axes[("mlp_head", "torchscript")] == ["batch"]
    dims = onnx.load(str(zoo_dir / "maxpool_ceil.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "channels", "height", "width"]
    result = runner.invoke(app, ["export", "-m", "tudui", "--dynamic-shape", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "error: --dynamic-shape: 'tudui' cannot take any image size (a Linear layer fixes its input size)" in (
        result.stderr
    )
    assert not (tmp_path / "manifest.json").exists()  # refused before any file


def test_spec_with_linear_after_adaptive_pool_takes_any_size(tmp_path) -> None:
    from poolkit.exporter.models import shape_agnostic

    assert shape_agnostic(parse_spec("conv(3,4,k=3) | adaptiveavgpool(2) | flatten | linear(16,10)"), (3, 32, 32))
    assert not shape_agnostic(parse_spec("conv(3,4,k=3) | flatten | linear(3600,10)"), (3, 32, 32))
    assert not shape_agnostic(parse_spec("relu"), (3072,))


def test_edge_batch_has_what_it_promises() -> None:
    x = edge_batch((3, 8, 8))
    assert x.shape == (16, 3, 8, 8) and x.dtype == np.float32
    assert (x[0] == 0).all() and (x[1] < 0).all() and np.abs(x[2]).max() > 10 and (x[3] < -7).all()
    assert set(np.unique(x[4])) <= {0.0, 1.0, 2.0}  # ties for max pooling
    assert np.abs(x[5]).max() <= 1e-3 and (x[5] < 0).any() and (x[5] > 0).any()  # at the kinks
    np.testing.assert_array_equal(x, edge_batch((3, 8, 8)))  # seeded
    five, four, two = tutorial_examples(3)
    assert five.shape == (3, 3, 5, 5) and (five[0, 2] == five[0, 0]).all() and (five[1] == -five[0]).all()
    assert two[0, 0].tolist() == [[1, -0.5], [-1, 3]]
    norm = normalize(np.full((1, 3, 2, 2), 0.4914, np.float32))
    assert abs(norm[0, 0, 0, 0]) < 1e-6 and norm[0, 2, 0, 0] > 0


def test_input_set_option() -> None:
    assert parse_input_sets("raw, edge") == ("raw", "edge")
    assert parse_input_sets("all")[:3] == ("raw", "normalized", "edge")
    assert parse_input_sets("seeds,tutorial") == ("tutorial",)  # the old name, one more release
    with pytest.raises(DataError, match="unknown --inputs 'bogus'"):
        parse_input_sets("raw,bogus")
    result = runner.invoke(app, ["verify", "--inputs", "nope"])
    assert result.exit_code == 2 and result.stderr.startswith("error: unknown --inputs 'nope'")


def test_wrong_variants_of_a_classifier() -> None:
    spec = parse_spec("conv(3,6,k=3) | maxpool(k=3,ceil=true) | relu | flatten | linear(600,10)")
    module = build_model(spec, (3, 32, 32))
    labels = [v.label for v in wrong_variants(module)]
    assert labels[1:3] == ["maxpool1 ceil_mode True→False", "relu1→identity"]
    assert labels[0].startswith("conv1.weight[") and labels[3].startswith("linear1.weight[")
    assert module[1].ceil_mode and isinstance(module[2], type(module[2]))  # the real module is untouched
    conv = wrong_variants(module)[0].module
    assert (conv[0].weight != module[0].weight).sum() == 1


def test_quick_sensitivity_samples_every_kind_across_the_network() -> None:
    from poolkit.verify.sensitivity import sample

    spec = parse_spec(" | ".join(["conv(3,3,k=1) | relu"] * 5) + " | maxpool(k=2)")
    variants = wrong_variants(build_model(spec, (3, 8, 8)))
    picked = [v.label for v in sample(variants)]
    assert [v for v in picked if "identity" in v] == ["relu1→identity", "relu3→identity", "relu5→identity"]
    assert [v.split(".")[0] for v in picked if "weight" in v] == ["conv1", "conv3", "conv5"]
    assert [v for v in picked if "ceil_mode" in v] == ["maxpool1 ceil_mode False→True"]  # every kind, once at least


def test_tolerance_guidance() -> None:
    exact = compare(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), 1e-5, 1e-5)
    off = compare(np.array([1.0, 0.0], np.float32), np.array([1.0 + 3e-5, 2e-5], np.float32), 1e-5, 1e-5)
    assert not off and off.min_atol == pytest.approx(3e-5 - 1e-5, rel=1e-2)  # at rtol 1e-5, |e| = 1
    assert off.min_rtol == float("inf")  # 2e-5 off an expected 0: no rtol makes it pass at atol 1e-5
    g = guidance([exact], 1e-2, 1e-5, None)
    assert g.exact and g.warnings == [
        "atol 0.01 is loose: this row is bit-exact; a wrong artifact could hide in the gap"
    ]
    assert guidance([exact], 1e-5, 1e-5, None).warnings == []

    class Noise:
        batches, max_abs, min_atol = 1, 3e-5, 2e-5

    g = guidance([exact], 1e-5, 1e-5, Noise())  # type: ignore[arg-type]
    assert g.noise_floor == 3e-5 and "tighter than the noise floor" in g.warnings[0]


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float32, (3, 4), elements=st.floats(-1e3, 1e3, width=32)),
    arrays(np.float32, (3, 4), elements=st.floats(-0.0009765625, 0.0009765625, width=32)),
)
def test_the_fast_comparison_agrees_with_numpy_and_the_general_path(e: np.ndarray, noise: np.ndarray) -> None:
    a = (e + noise).astype(np.float32)
    fast = compare(e, a, 1e-5, 1e-5)
    e64, a64 = e.astype(np.float64), a.astype(np.float64)
    assert fast.mismatched == int((~np.isclose(a64, e64, rtol=1e-5, atol=1e-5)).sum())
    assert fast.max_abs == float(np.abs(a64 - e64).max())
    # a shared infinity beside the same numbers takes the NaN/Inf-aware path: the same figures
    inf = np.full((3, 1), np.inf, np.float32)
    general = compare(np.hstack([e, inf]), np.hstack([a, inf]), 1e-5, 1e-5)
    for name in ("mismatched", "max_abs", "min_atol", "min_rtol", "worst_location"):
        assert getattr(general, name) == pytest.approx(getattr(fast, name)), name
    assert general.max_rel == pytest.approx(fast.max_rel) and general.mean_abs * 15 == pytest.approx(fast.mean_abs * 12)


@pytest.mark.cuda
def test_input_sets_and_examples_on_cuda(zoo_dir, cifar, tmp_path) -> None:
    """The same checks with --device cuda: every set through the CUDA rows, the examples exact on the GPU."""
    options = VerifyOptions(devices=("cuda",), batches=2, results_dir=tmp_path)
    report = verify(zoo_dir, cifar, options, names=["relu", "maxpool_ceil"])
    assert report.passed and {r.device for r in report.rows} == {"cuda"}
    for r in report.rows:
        assert r.input_names == ["raw", "normalized", "edge", "odd", "tutorial"] and r.guidance is not None
    args = ["verify", "--models", str(zoo_dir), "--examples", "--device", "cuda", "--results", str(tmp_path), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert {r["device"] for r in rows if r["runtime"] != "eager"} == {"cuda"} and all(
        r["status"] == "passed" for r in rows
    )


def test_equal_outputs_take_the_short_path_with_the_same_figures() -> None:
    e = np.random.default_rng(1).standard_normal((4, 3, 5, 5)).astype(np.float32)
    equal = compare(e, e.copy())
    nudged = e.copy()
    nudged[0, 0, 0, 0] = np.nextafter(nudged[0, 0, 0, 0], np.float32(np.inf))  # one ulp: the full pass
    near = compare(e, nudged)
    assert equal and near and equal.elements == near.elements == e.size
    assert equal.max_abs == 0 and equal.worst_location == [0, 0, 0, 0] and equal.cosine == pytest.approx(1.0)
    assert near.worst_location == [0, 0, 0, 0] and near.cosine == pytest.approx(1.0)
