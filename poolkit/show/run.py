"""`poolkit show`: what a module does to CIFAR10 images, in TensorBoard and as PNG pictures.

The seeds write `add_images("input", imgs, step)` and `add_images("output", output, step)` for every
batch, and reshape a 6-channel conv output to (-1, 3, 30, 30), which mixes images. Here each
output channel is its own grayscale grid (or the first three are shown as RGB, by option), values
outside [0, 1] are min-max scaled per image for display (and that is said), and outputs that are
not images (classifiers) get bar charts of class probabilities with CIFAR10's class names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poolkit.common.errors import DataError, PoolkitError, one_line
from poolkit.common.files import write_atomic

if TYPE_CHECKING:
    from poolkit.services.cifar10 import ImageSet

PNG_SIZE_INCHES = (12.0, 5.5)
PNG_DPI = 100  # so every picture is 1200 x 550 pixels
GRID_IMAGES = 16
BAR_IMAGES = 4
MAX_CHANNEL_PANELS = 8


@dataclass
class Panel:
    """Images ready for display: (N, C, H, W) floats in [0, 1], C = 1 or 3."""

    tag: str
    images: np.ndarray
    scaled: bool  # min-max scaled per image because the raw values leave [0, 1]
    note: str


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


def is_image_output(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4


def scale_per_image(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Leave [0, 1] outputs alone; min-max scale each image otherwise (a flat image becomes 0)."""
    if x.min() >= 0.0 and x.max() <= 1.0:
        return x.astype(np.float32), False
    flat = x.reshape(len(x), -1)
    low = flat.min(axis=1).reshape(-1, *([1] * (x.ndim - 1)))
    high = flat.max(axis=1).reshape(-1, *([1] * (x.ndim - 1)))
    span = np.where(high > low, high - low, 1.0)
    return ((x - low) / span).astype(np.float32), True


def image_panels(output: np.ndarray, channels: str = "gray") -> list[Panel]:
    """How a (N, C, H, W) output is shown: 1 or 3 channels as they are, other counts per channel or as RGB."""
    n_channels = output.shape[1]
    if n_channels in (1, 3):
        images, scaled = scale_per_image(output)
        kind = "grayscale" if n_channels == 1 else "RGB"
        return [Panel("output", images, scaled, f"{n_channels} channel{'s' * (n_channels > 1)} shown as {kind}")]
    if channels == "rgb":
        if n_channels < 3:
            raise PoolkitError(f"--channels rgb needs at least 3 output channels, this output has {n_channels}")
        images, scaled = scale_per_image(output[:, :3])
        return [Panel("output/rgb_first_3", images, scaled, f"channels 0-2 of {n_channels} shown as RGB")]
    if channels != "gray":
        raise PoolkitError(f"unknown --channels '{channels}' (gray or rgb)")
    panels = []
    for c in range(n_channels):
        images, scaled = scale_per_image(output[:, c : c + 1])
        panels.append(Panel(f"output/channel_{c}", images, scaled, f"channel {c} of {n_channels} as grayscale"))
    return panels


def describe_panels(panels: list[Panel]) -> str:
    how = panels[0].note if len(panels) == 1 else f"each of {len(panels)} channels as its own grayscale grid"
    return how + ("; values min-max scaled per image" if any(p.scaled for p in panels) else "")


def class_probabilities(output: np.ndarray) -> tuple[np.ndarray, str]:
    """(N, classes) probabilities: as they are when they already are, else softmax of the logits."""
    rows_sum_to_one = np.allclose(output.sum(axis=1), 1.0, atol=1e-4) and output.min() >= 0
    if rows_sum_to_one:
        return output, "the model's own probabilities"
    shifted = output - output.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    label = "softmax of the model's outputs (log-probabilities)" if output.max() <= 0 else "softmax of the logits"
    return e / e.sum(axis=1, keepdims=True), label


def grid(images: np.ndarray, nrow: int = 8) -> np.ndarray:
    """(N, C, H, W) -> an (H', W', 3) picture, via torchvision's make_grid."""
    import torch
    from torchvision.utils import make_grid

    g = make_grid(torch.from_numpy(images[:GRID_IMAGES]), nrow=nrow, padding=2, pad_value=1.0)
    return g.permute(1, 2, 0).numpy()


def output_for(runtime: Any, x: np.ndarray) -> tuple[np.ndarray, int]:
    """The first output as float32 images or rows, and how many NaN/Inf values in it are shown as 0.

    An output that is not a numeric array (a string, a sequence, a dict), a scalar, or one without a
    row per image cannot be drawn: a one-line failure (exit 1) naming it, never a crash in matplotlib.
    """
    from poolkit.runtimes.base import run_batch

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
) -> ShowRun:
    """What `poolkit show` does: export what the manifest lacks, then one run per model, runtime and device.

    Each runtime reads its own artifact (hash-checked): a model whose ONNX export failed is an
    error for `--runtime onnxruntime`, never silently shown from another file.
    """
    from poolkit.exporter.export import ensure_exported
    from poolkit.exporter.zoo import resolve_models
    from poolkit.services.artifacts import open_artifacts
    from poolkit.services.cifar10 import load_images, synthetic_images

    refs = resolve_models(names)
    images = load_images(data, data_root, download)
    exported = ensure_exported(refs, models_dir)
    results = []
    for model in open_artifacts(models_dir, [r.name for r in refs], trust=names):
        reference = model.reference
        shape = reference.sample_shape if reference else ()
        model_images = images
        if len(shape) != 3:
            raise DataError(
                f"'{model.name}' takes {'x'.join(map(str, shape))} inputs, not images: show draws CxHxW inputs "
                "(verify and bench take any shape)"
            )
        if shape != tuple(images.images.shape[1:]):
            if images.source.kind != "synthetic":
                raise DataError(
                    f"'{model.name}' takes {'x'.join(map(str, shape))} inputs, not CIFAR10 images (use --data synthetic)"
                )
            model_images = synthetic_images(len(images.images), shape)  # the hint above must work
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
    from poolkit.common.capture import captured_output

    with captured_output():  # tensorboard announces missing TensorFlow on import
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
            writer.add_images("input", x, step)
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
    )


def bar_figure(x: np.ndarray, probs: np.ndarray, labels: np.ndarray, classes: list[str], how: str) -> Any:
    """A few input images, each above a bar chart of its class probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(BAR_IMAGES, len(x))
    fig, axes = plt.subplots(2, n, figsize=(3 * n, 5), gridspec_kw={"height_ratios": [1, 1.3]}, squeeze=False)
    _draw_bars(axes, x, probs, labels, classes, n)
    fig.suptitle(how, fontsize=9)
    fig.tight_layout()
    return fig


def _draw_bars(axes: Any, x: np.ndarray, probs: np.ndarray, labels: np.ndarray, classes: list[str], n: int) -> None:
    for i in range(n):
        axes[0][i].imshow(
            np.clip(x[i].transpose(1, 2, 0), 0, 1) if x.ndim == 4 and x.shape[1] == 3 else x[i].reshape(-1)[None]
        )
        truth = classes[int(labels[i])] if int(labels[i]) < len(classes) else str(labels[i])
        axes[0][i].set_title(f"image {i}: {truth}", fontsize=8)
        axes[0][i].axis("off")
        names = classes[: probs.shape[1]] + [str(k) for k in range(len(classes), probs.shape[1])]
        axes[1][i].barh(range(probs.shape[1]), probs[i], color="tab:blue")
        axes[1][i].set_yticks(range(probs.shape[1]), names, fontsize=7)
        axes[1][i].invert_yaxis()
        axes[1][i].set_xlim(0, 1)
        axes[1][i].tick_params(axis="x", labelsize=7)


def write_picture(
    path: Path,
    name: str,
    spec_text: str,
    x: np.ndarray,
    out: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    channels: str,
    runtime: str,
) -> Path:
    """Input grid and output grid (or bar charts) side by side, titled with spec and output shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = "x".join(map(str, out.shape))
    fig = plt.figure(figsize=PNG_SIZE_INCHES, dpi=PNG_DPI)
    if is_image_output(out.shape):
        panels = image_panels(out, channels)
        shown = panels[:MAX_CHANNEL_PANELS]
        rows = 2 if len(shown) > 2 else 1
        cols = -(-len(shown) // rows)
        spec = fig.add_gridspec(rows, cols + 1)
        ax = fig.add_subplot(spec[:, 0])
        ax.imshow(grid(x, nrow=4))
        ax.set_title(f"input {'x'.join(map(str, x.shape))}", fontsize=9)
        ax.axis("off")
        for k, panel in enumerate(shown):
            ax = fig.add_subplot(spec[k // cols, 1 + k % cols])
            ax.imshow(grid(panel.images, nrow=4))
            ax.set_title(
                panel.tag.removeprefix("output/").replace("_", " ") if len(shown) > 1 else "output", fontsize=9
            )
            ax.axis("off")
        more = f"; first {len(shown)} of {len(panels)} channels" if len(panels) > len(shown) else ""
        caption = f"{name} [{runtime}]: {spec_text} → output {shape}\n{describe_panels(panels)}{more}"
    else:
        probs, how = class_probabilities(out.reshape(len(out), -1))
        n = min(BAR_IMAGES, len(x))
        axes = fig.subplots(2, n, gridspec_kw={"height_ratios": [1, 1.3]}, squeeze=False)
        _draw_bars(axes, x, probs, labels, classes, n)
        caption = f"{name} [{runtime}]: {spec_text} → output {shape}\nbars: {how}"
    fig.suptitle(caption, fontsize=10)
    fig.text(0.5, 0.01, "weights: seeded, untrained (as in the tutorials)", ha="center", fontsize=8, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 0.92))
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=PNG_DPI))
    plt.close(fig)
    return path
