"""How an output is shown: image-shaped outputs as grayscale or RGB grids (scaled per image when
their values leave [0, 1], and that is said), others as class probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.utils import make_grid

from poolkit.common.errors import PoolkitError

GRID_IMAGES = 16
MAX_PANELS = 16  # a wide feature map (64, 512 channels) shows its first 16 channels, and says so


@dataclass
class Panel:
    """Images ready for display: (N, C, H, W) floats in [0, 1], C = 1 or 3."""

    tag: str
    images: np.ndarray
    scaled: bool  # min-max scaled per image because the raw values leave [0, 1]
    note: str
    total: int = 1  # channels of the output this panel is one of


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
    for c in range(min(n_channels, MAX_PANELS)):
        images, scaled = scale_per_image(output[:, c : c + 1])
        note = f"channel {c} of {n_channels} as grayscale"
        panels.append(Panel(f"output/channel_{c}", images, scaled, note, n_channels))
    return panels


def shown_input(x: np.ndarray) -> tuple[np.ndarray, str]:
    """The input as TensorBoard and the PNG can draw it: 1 or 3 channels as they are, any other count
    (a 2-channel model's input) by its first channel as grayscale, and a note saying so."""
    if x.ndim != 4 or x.shape[1] in (1, 3):
        return x, ""
    return x[:, :1], f"input: channel 0 of {x.shape[1]} shown as grayscale"


def describe_panels(panels: list[Panel]) -> str:
    total, n = panels[0].total, len(panels)
    each = f"the first {n} of {total} channels, each" if total > n else f"each of {n} channels"
    how = panels[0].note if n == 1 else f"{each} as its own grayscale grid"
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
    g = make_grid(torch.from_numpy(images[:GRID_IMAGES]), nrow=nrow, padding=2, pad_value=1.0)
    return g.permute(1, 2, 0).numpy()
