"""`poolkit show`: what a module does to CIFAR10 images, in TensorBoard and as PNG pictures.

The tutorials write `add_images("input", imgs, step)` and `add_images("output", output, step)` for every
batch, and reshape a 6-channel conv output to (-1, 3, 30, 30), which mixes images. Here each
output channel is its own grayscale grid (or the first three are shown as RGB, by option), values
outside [0, 1] are min-max scaled per image for display (and that is said), and outputs that are
not images (classifiers) get bar charts of class probabilities with CIFAR10's class names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolkit.common.capture import captured_output
from poolkit.common.errors import DataError, PoolkitError, one_line
from poolkit.exporter.ensure import ensure_exported
from poolkit.exporter.zoo import resolve_models
from poolkit.runtimes.base import run_batch
from poolkit.runtimes.registry import formats_read
from poolkit.services.artifacts import open_artifacts
from poolkit.services.cifar10 import ImageSet, load_images
from poolkit.services.image_fit import fit_images
from poolkit.show.panels import class_probabilities, describe_panels, image_panels, is_image_output, shown_input
from poolkit.show.picture import bar_figure, write_picture


@dataclass
class ShowResult:
    model: str
    runtime: str
    spec: str
    output_shape: list[int]
    kind: str  # image | classes
    display: str  # what was done to show it
    tensorboard_run: str
    png: str
    tags: list[str] = field(default_factory=list)
    data_fit: str = ""  # how the images were fitted to the model's input ("" as stored)


def output_for(runtime: Any, x: np.ndarray) -> tuple[np.ndarray, int]:
    """The first output as float32 images or rows, and how many NaN/Inf values in it are shown as 0.

    An output that is not a numeric array (a string, a sequence, a dict), a scalar, or one without a
    row per image cannot be drawn: a one-line failure (exit 1) naming it, never a crash in matplotlib.
    """
    try:
        out = run_batch(runtime, x)[0]  # a pool returning indices: show the values
    except PoolkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unusable output, or a runtime that cannot run the file
        raise PoolkitError(f"show: {runtime.name} cannot give an output to draw: {one_line(exc)}", 1) from None
    if out.ndim == 0 or len(out) != len(x):
        raise PoolkitError(
            f"show: {runtime.name} gives an output of shape {list(out.shape)} for {len(x)} images: "
            "no row per image to draw",
            1,
        )
    out = out.astype(np.float32)
    bad = ~np.isfinite(out)
    return (np.where(bad, np.float32(0), out), int(bad.sum())) if bad.any() else (out, 0)


@dataclass
class ShowRun:
    images: ImageSet
    results: list[ShowResult]
    exported: list[str]  # models the manifest lacked, exported first


@dataclass
class ShowOptions:
    runtimes: tuple[str, ...] = ("eager",)
    devices: tuple[str, ...] = ("cpu",)
    batches: int | None = 2
    logdir: Path = Path("logs")
    png_dir: Path = Path("results/show")
    channels: str = "gray"


def show_models(
    models_dir: Path,
    names: list[str] | None,
    options: ShowOptions,
    data: str = "cifar10",
    data_root: Path | None = None,
    download: bool = False,
    on_total: Callable[[int], None] | None = None,
    on_done: Callable[[str], None] | None = None,
) -> ShowRun:
    """What `poolkit show` does: export what the manifest lacks, then one run per model, runtime and device.

    Each runtime reads its own artifact (hash-checked): a model whose ONNX export failed is an
    error for `--runtime onnxruntime`, never silently shown from another file.
    """
    refs = resolve_models(names)
    images = load_images(data, data_root, download)
    exported = ensure_exported(refs, models_dir, formats_read(options.runtimes))
    results = []
    models = open_artifacts(models_dir, [r.name for r in refs], trust=names)
    if on_total:
        on_total(len(models) * len(options.runtimes) * len(options.devices))
    for model in models:
        reference = model.reference
        shape = reference.sample_shape if reference else ()
        model_images = images
        if len(shape) != 3:
            raise DataError(
                f"'{model.name}' takes {'x'.join(map(str, shape))} inputs, not images: show draws CxHxW inputs "
                "(verify and bench take any shape)"
            )
        try:  # resized (and grayscale for one channel) as verify feeds it; said in display and JSON
            batches = options.batches
            model_images = fit_images(images, shape, 64 * batches if batches else None)
        except DataError as exc:
            raise DataError(f"'{model.name}': {exc}") from None
        spec = reference.spec if reference else ""
        for runtime_name in options.runtimes:
            for device in options.devices:
                with model.open(runtime_name, device) as runtime:
                    results.append(
                        show_model(
                            model.name, spec, runtime, model_images, options.logdir, options.png_dir, options.batches,
                            channels=options.channels,
                        )
                    )  # fmt: skip
                if on_done:
                    on_done(f"{model.name} {runtime_name} {device}")
    return ShowRun(images, results, exported)


def show_model(
    name: str,
    spec_text: str,
    runtime: Any,
    images: ImageSet,
    logdir: Path,
    png_dir: Path,
    batches: int | None,
    batch_size: int = 64,
    channels: str = "gray",
    on_batch: Callable[[], None] | None = None,
) -> ShowResult:
    """Write the TensorBoard run and the PNG for one model on one runtime."""
    # Lazy, inside captured_output: tensorboard announces on import that TensorFlow is missing.
    with captured_output():
        from torch.utils.tensorboard import SummaryWriter

    run_name = f"{name}-{runtime.name}" + ("" if runtime.device == "cpu" else f"-{runtime.device}")
    writer = SummaryWriter(str(Path(logdir) / run_name))
    classes = images.source.classes or [str(i) for i in range(10)]
    tags: list[str] = []
    first_batch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    display = ""
    try:
        for step, (_, x, labels) in enumerate(images.batches(batch_size, batches)):
            out, non_finite = output_for(runtime, x)
            if first_batch is None:
                first_batch = (x, out, labels)
            drawn, input_note = shown_input(x)
            writer.add_images("input", drawn, step)
            writer.add_histogram("output_values", out, step)
            if is_image_output(out.shape):
                panels = image_panels(out, channels)
                for panel in panels:
                    writer.add_images(panel.tag, panel.images, step)
                display = describe_panels(panels)
                tags = ["input", *[p.tag for p in panels]]
            else:
                probs, how = class_probabilities(out.reshape(len(out), -1))
                writer.add_figure("class_probabilities", bar_figure(x, probs, labels, classes, how), step)
                display = f"bar charts of class probabilities ({how})"
                tags = ["input", "class_probabilities"]
            if non_finite:
                display += f"; {non_finite:,} NaN/Inf values shown as 0"
            if input_note:
                display += f"; {input_note}"
            if on_batch:
                on_batch()
        writer.add_text("display", f"`{spec_text}` — {display}", 0)
    finally:
        writer.close()
    if first_batch is None:
        raise PoolkitError("no batch to show: the data set is empty")
    x, out, labels = first_batch
    png = Path(png_dir) / f"{run_name}.png"
    write_picture(png, name, spec_text, x, out, labels, classes, channels, runtime.name)
    return ShowResult(
        name,
        runtime.name,
        spec_text,
        list(out.shape),
        "image" if is_image_output(out.shape) else "classes",
        display,
        str(Path(logdir) / run_name),
        str(png),
        tags,
        images.source.fit,
    )
