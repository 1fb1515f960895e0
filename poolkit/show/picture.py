"""The PNG of one model on one runtime: input grid beside output grids, or bar charts of classes.

matplotlib's object API (`Figure`, no pyplot): no global backend to set, nothing to close.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from poolkit.common.files import write_atomic
from poolkit.show.panels import (
    class_probabilities,
    describe_panels,
    grid,
    image_panels,
    is_image_output,
    shown_input,
)

PNG_SIZE_INCHES = (12.0, 5.5)
PNG_DPI = 100  # so every picture is 1200 x 550 pixels
BAR_IMAGES = 4
MAX_CHANNEL_PANELS = 8


def bar_figure(x: np.ndarray, probs: np.ndarray, labels: np.ndarray, classes: list[str], how: str) -> Any:
    """A few input images, each above a bar chart of its class probabilities."""
    n = min(BAR_IMAGES, len(x))
    fig = Figure(figsize=(3 * n, 5))
    axes = fig.subplots(2, n, gridspec_kw={"height_ratios": [1, 1.3]}, squeeze=False)
    _draw_bars(axes, x, probs, labels, classes, n)
    fig.suptitle(how, fontsize=9)
    fig.tight_layout()
    return fig


TOP_CLASSES = 5  # outputs with more classes than CIFAR10's show each image's top 5, by index


def top_classes(probs: np.ndarray) -> list[int]:
    """Every class for up to 10 (in order), else the indices of the 5 most probable, most probable first."""
    if len(probs) <= 10:
        return list(range(len(probs)))
    return [int(k) for k in np.argsort(-probs, kind="stable")[:TOP_CLASSES]]


def bar_axis_end(shown: np.ndarray, classes: int) -> float:
    """Where the probability axis ends: 1 for up to 10 classes (panels comparable at a glance); for
    the top 5 of many, just past the largest shown, so that an untrained 1000-class model's bars
    (about 0.001 each) are seen, with their values written beside them."""
    if classes <= 10:
        return 1.0
    top = float(np.max(shown)) if shown.size else 0.0
    return min(1.0, top * 1.3) if np.isfinite(top) and top > 0 else 1.0


def _draw_bars(axes: Any, x: np.ndarray, probs: np.ndarray, labels: np.ndarray, classes: list[str], n: int) -> None:
    for i in range(n):
        axes[0][i].imshow(
            np.clip(x[i].transpose(1, 2, 0), 0, 1) if x.ndim == 4 and x.shape[1] == 3 else x[i].reshape(-1)[None]
        )
        truth = classes[int(labels[i])] if int(labels[i]) < len(classes) else str(labels[i])
        axes[0][i].set_title(f"image {i}: {truth}", fontsize=8)
        axes[0][i].axis("off")
        shown = top_classes(probs[i])
        names = [classes[k] if probs.shape[1] == len(classes) else f"class {k}" for k in shown]
        bars = axes[1][i].barh(range(len(shown)), probs[i][shown], color="tab:blue")
        axes[1][i].set_yticks(range(len(shown)), names, fontsize=7)
        if len(shown) < probs.shape[1]:
            axes[1][i].set_title(f"top {len(shown)} of {probs.shape[1]:,} classes", fontsize=7)
            axes[1][i].bar_label(bars, fmt="%.2g", fontsize=6, padding=2)
        axes[1][i].invert_yaxis()
        axes[1][i].set_xlim(0, bar_axis_end(probs[i][shown], probs.shape[1]))
        axes[1][i].locator_params(axis="x", nbins=3)  # small probabilities have long tick labels
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
    shape = "x".join(map(str, out.shape))
    fig = Figure(figsize=PNG_SIZE_INCHES, dpi=PNG_DPI)
    if is_image_output(out.shape):
        panels = image_panels(out, channels)
        shown = panels[:MAX_CHANNEL_PANELS]
        rows = 2 if len(shown) > 2 else 1
        cols = -(-len(shown) // rows)
        spec = fig.add_gridspec(rows, cols + 1)
        ax = fig.add_subplot(spec[:, 0])
        drawn, input_note = shown_input(x)
        ax.imshow(grid(drawn, nrow=4))
        ax.set_title(f"input {'x'.join(map(str, x.shape))}" + (" (channel 0)" if input_note else ""), fontsize=9)
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
    return path
