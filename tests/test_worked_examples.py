"""The seeds' worked examples, with their exact numbers, through eager, TorchScript and ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poolkit.exporter.export import ExportOptions, export_models
from poolkit.exporter.zoo import resolve_model
from poolkit.runtimes.base import run_batch
from poolkit.services.artifacts import open_artifacts

FIVE_BY_FIVE = np.array(
    [[1, 2, 0, 3, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0], [5, 2, 3, 1, 1], [2, 1, 0, 1, 1]], dtype=np.float32
).reshape(1, 1, 5, 5)
TWO_BY_TWO = np.array([[1, -0.5], [-1, 3]], dtype=np.float32).reshape(1, 1, 2, 2)
FOUR_BY_FOUR = np.array([[1, 3, 2, 4], [5, 6, 1, 2], [7, 2, 8, 3], [4, 5, 9, 0]], dtype=np.float32).reshape(1, 1, 4, 4)

EXAMPLES = [
    ("maxpool_ceil", FIVE_BY_FIVE, [[2, 3], [5, 1]], 0),
    ("maxpool_floor", FIVE_BY_FIVE, [[2]], 0),
    ("relu", TWO_BY_TWO, [[1, 0], [0, 3]], 0),
    ("sigmoid", TWO_BY_TWO, [[0.7311, 0.3775], [0.2689, 0.9526]], 4),
    ("maxpool_2x2", FOUR_BY_FOUR, [[6, 4], [7, 9]], 0),
]
RUNTIMES = [("eager", "onnx"), ("torchscript", "torchscript"), ("onnxruntime", "onnx")]


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zoo models exported for the seeds' small single-channel inputs."""
    out = tmp_path_factory.mktemp("worked")
    for name, x, _, _ in EXAMPLES:
        # The formats these examples run through; torch.export's Dim.AUTO program of maxpool_ceil refuses
        # the tutorials' tiny inputs (README, pt2 section), which is the sweep's finding, not these tests'.
        options = ExportOptions(input_shape=tuple(x.shape[1:]), formats=("torchscript", "onnx"))
        run = export_models([resolve_model(name)], out, options)
        assert not run.failed
    return out


@pytest.mark.parametrize(("runtime", "fmt"), RUNTIMES)
@pytest.mark.parametrize(("name", "x", "expected", "decimals"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_worked_example(examples_dir, name, x, expected, decimals, runtime, fmt) -> None:
    (model,) = open_artifacts(examples_dir, [name])
    assert model.record_for(runtime).format == fmt
    with model.open(runtime, "cpu") as rt:
        (out,) = run_batch(rt, x)
    assert out.shape == (1, 1, len(expected), len(expected[0]))
    got = np.round(out[0, 0], decimals) if decimals else out[0, 0]
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))


def test_conv_on_a_cifar_sized_batch(zoo_dir) -> None:
    """Conv2d(3, 6, 3) on 64x3x32x32 gives 64x6x30x30, in all three runtimes, with equal numbers."""
    (model,) = open_artifacts(zoo_dir, ["conv"])
    x = np.random.default_rng(0).random((64, 3, 32, 32), dtype=np.float32)
    outs = {}
    for runtime, _ in RUNTIMES:
        with model.open(runtime, "cpu") as rt:
            (outs[runtime],) = run_batch(rt, x)
        assert outs[runtime].shape == (64, 6, 30, 30)
    np.testing.assert_allclose(outs["torchscript"], outs["eager"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs["onnxruntime"], outs["eager"], rtol=1e-5, atol=1e-5)


def test_the_tutorials_one_channel_tensor_runs_through_the_exported_maxpool_ceil(tmp_path: Path) -> None:
    """Pools and activations export with a dynamic channel axis: the tutorial's
    torch.reshape(input, (-1, 1, 5, 5)) runs through maxpool_ceil.onnx, read by ONNX Runtime itself."""
    import onnxruntime as ort

    from poolkit.exporter.manifest import load_manifest

    export_models([resolve_model("maxpool_ceil"), resolve_model("conv")], tmp_path, ExportOptions(formats=("onnx",)))
    axes = {r.name: r.dynamic_axes for r in load_manifest(tmp_path)}
    assert axes == {"maxpool_ceil": ["batch", "channels", "height", "width"], "conv": ["batch", "height", "width"]}
    session = ort.InferenceSession(str(tmp_path / "maxpool_ceil.onnx"), providers=["CPUExecutionProvider"])
    five = np.array(FIVE_BY_FIVE, dtype=np.float32).reshape(-1, 1, 5, 5)
    (out,) = session.run(None, {session.get_inputs()[0].name: five})
    np.testing.assert_array_equal(out, [[[[2, 3], [5, 1]]]])


USER_MODELS = '''
import torch
from torch import nn


class Pooled(nn.Module):
    """Any image size: an adaptive pool before the Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


class Flat(nn.Module):
    """32x32 only: a Linear on the flattened pixels."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 2)

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))
'''


def test_a_users_module_that_runs_at_another_size_exports_with_open_height_and_width(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from poolkit.exporter import export
    from poolkit.exporter.manifest import load_manifest

    (tmp_path / "nets.py").write_text(USER_MODELS)
    refs = [resolve_model(f"{tmp_path / 'nets.py'}:{n}") for n in ("Pooled", "Flat")]
    options = ExportOptions(input_shape=(3, 32, 32), formats=("onnx",))
    export_models(refs, tmp_path / "m", options)
    axes = {r.name: r.dynamic_axes for r in load_manifest(tmp_path / "m")}
    assert axes == {"nets_Pooled": ["batch", "height", "width"], "nets_Flat": ["batch"]}
    static = export_models(refs[:1], tmp_path / "s", ExportOptions(input_shape=(3, 32, 32), dynamic_shape=False))
    assert all(r.dynamic_axes == ["batch"] for r in static.records)

    real = export.export_artifact

    def refuses_open_sizes(module, example, path, fmt, request):  # an exporter that cannot leave them open
        if request.dynamic_spatial:
            raise ValueError("Constraints violated (height)!\n  the rest of a long message")
        return real(module, example, path, fmt, request)

    monkeypatch.setattr(export, "export_artifact", refuses_open_sizes)
    run = export_models(refs[:1], tmp_path / "f", options)
    assert [r.dynamic_axes for r in run.records] == [["batch"]] and run.records[0].ok
    (said,) = [w for w in run.warnings if "static height and width" in w]
    assert (
        said
        == "nets_Pooled onnx: static height and width (the exporter refused them open: ValueError: Constraints violated (height)!)"
    )
