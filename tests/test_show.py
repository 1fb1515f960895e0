"""show: TensorBoard event files and PNG pictures, channels handled honestly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.show.panels import class_probabilities, image_panels, scale_per_image
from poolkit.show.picture import bar_axis_end, top_classes

runner = CliRunner()


def test_one_and_three_channels_are_shown_as_they_are() -> None:
    gray = np.random.default_rng(0).random((2, 1, 4, 4), dtype=np.float32)
    (panel,) = image_panels(gray)
    assert panel.tag == "output" and panel.images.shape == (2, 1, 4, 4) and not panel.scaled
    assert "grayscale" in panel.note
    (rgb,) = image_panels(np.random.default_rng(0).random((2, 3, 4, 4), dtype=np.float32))
    assert rgb.images.shape == (2, 3, 4, 4) and rgb.note == "3 channels shown as RGB"


def test_six_channels_are_six_grayscale_grids_or_rgb_by_option() -> None:
    out = np.random.default_rng(0).normal(size=(2, 6, 5, 5)).astype(np.float32)
    panels = image_panels(out)
    assert [p.tag for p in panels] == [f"output/channel_{c}" for c in range(6)]
    assert all(p.images.shape == (2, 1, 5, 5) and p.scaled for p in panels)
    (rgb,) = image_panels(out, "rgb")
    assert rgb.tag == "output/rgb_first_3" and rgb.images.shape == (2, 3, 5, 5)
    assert rgb.note == "channels 0-2 of 6 shown as RGB"


def test_unbounded_values_are_min_max_scaled_per_image() -> None:
    x = np.array([[[[-2.0, 0.0], [2.0, 1.0]]], [[[5.0, 5.0], [5.0, 5.0]]]], dtype=np.float32)
    scaled, did = scale_per_image(x)
    assert did and scaled[0, 0].tolist() == [[0.0, 0.5], [1.0, 0.75]] and scaled[1].max() == 0.0


def test_bars_of_a_1000_class_output_are_scaled_to_be_seen() -> None:
    """An untrained 1000-class model's top 5 are about 0.001 each: on a 0..1 axis they were invisible."""
    probs = np.full(1000, 0.5 / 995)
    probs[[7, 3, 999, 500, 42]] = [0.0026, 0.0030, 0.0024, 0.0022, 0.0034]
    assert top_classes(probs) == [42, 3, 7, 999, 500]
    assert bar_axis_end(probs[top_classes(probs)], 1000) == pytest.approx(0.0034 * 1.3)
    assert bar_axis_end(np.array([0.9, 0.05]), 1000) == 1.0  # never past 1
    assert bar_axis_end(np.array([0.01, 0.02]), 10) == 1.0  # CIFAR10's ten classes keep 0..1
    assert bar_axis_end(np.array([np.nan]), 1000) == 1.0


def test_class_probabilities_from_logits_or_as_given() -> None:
    probs, how = class_probabilities(np.array([[0.0, np.log(3.0)]], dtype=np.float32))
    assert np.allclose(probs, [[0.25, 0.75]]) and how == "softmax of the logits"
    given = np.array([[0.2, 0.8]], dtype=np.float32)
    assert class_probabilities(given)[1] == "the model's own probabilities"


@pytest.fixture(scope="module")
def shown(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("show")
    args = ["show", "--models", str(zoo_dir), "-m", "maxpool_ceil", "-m", "conv", "-m", "tudui", "-m", "gap"]
    result = runner.invoke(
        app, [*args, "--batches", "2", "--logdir", str(out / "logs"), "--png", str(out / "png"), "--json"]
    )
    assert result.exit_code == 0, result.output
    return out, {r["model"]: r for r in json.loads(result.stdout)["results"]}


def read_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_event_file_holds_the_expected_image_summaries(shown) -> None:
    out, results = shown
    acc = read_events(Path(results["maxpool_ceil"]["tensorboard_run"]))
    tags = acc.Tags()
    assert set(tags["images"]) == {"input", "output"}
    assert tags["histograms"] == ["output_values"]
    inputs, outputs = acc.Images("input"), acc.Images("output")
    assert [e.step for e in inputs] == [0, 1] and [e.step for e in outputs] == [0, 1]
    # TensorBoard tiles the 64 images of a batch 8 x 8, without padding
    assert (inputs[0].width, inputs[0].height) == (8 * 32, 8 * 32)
    assert (outputs[0].width, outputs[0].height) == (8 * 11, 8 * 11)  # MaxPool2d(3, ceil_mode=True): 11x11
    conv = read_events(Path(results["conv"]["tensorboard_run"])).Tags()["images"]
    assert sorted(conv) == ["input", *[f"output/channel_{c}" for c in range(6)]]


def test_classifier_gets_a_bar_chart_of_class_probabilities(shown) -> None:
    _, results = shown
    tudui = results["tudui"]
    assert tudui["kind"] == "classes" and tudui["output_shape"] == [64, 10]
    assert tudui["display"] == "bar charts of class probabilities (softmax of the logits)"
    acc = read_events(Path(tudui["tensorboard_run"]))
    assert acc.Tags()["images"] == ["input", "class_probabilities"]


def test_pngs_exist_decode_and_have_the_expected_size(shown) -> None:
    _, results = shown
    for name in ("maxpool_ceil", "conv", "tudui", "gap"):
        path = Path(results[name]["png"])
        assert path.name == f"{name}-eager.png"
        with Image.open(path) as img:
            img.load()
            assert img.size == (1200, 550) and img.format == "PNG"
    assert results["conv"]["display"] == "each of 6 channels as its own grayscale grid; values min-max scaled per image"
    assert results["maxpool_ceil"]["output_shape"] == [64, 3, 11, 11]


def test_show_on_other_runtimes_and_bad_options(zoo_dir: Path, tmp_path: Path) -> None:
    args = ["show", "--models", str(zoo_dir), "-m", "sigmoid", "--batches", "1", "--logdir", str(tmp_path), "--json"]
    result = runner.invoke(app, [*args, "--png", str(tmp_path), "--runtime", "onnx"])
    assert result.exit_code == 0 and json.loads(result.stdout)["results"][0]["runtime"] == "onnxruntime"
    result = runner.invoke(app, ["show", "--models", str(zoo_dir), "-m", "relu", "--channels", "rgb", "--batches", "0"])
    assert result.exit_code == 2 and "bad --batches '0'" in result.stderr
