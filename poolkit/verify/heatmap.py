"""Where a failing artifact differs, as a picture: |artifact - eager| per output channel.

For the image of the first failing batch whose error is largest, one heatmap per channel of the
first image-shaped output, written as a PNG (matplotlib, with a colour bar in the output's units)
and as TensorBoard images (each channel scaled to its own maximum), beside the `.npz`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poolkit.common.files import write_atomic

MAX_CHANNELS = 16


def error_maps(expected: list[np.ndarray], actual: list[np.ndarray]) -> tuple[int, int, np.ndarray] | None:
    """(output index, image index, |diff| of shape (C, H, W)) for the worst image, or None when no
    output is image-shaped and the same shape on both sides."""
    for index, (e, a) in enumerate(zip(expected, actual, strict=False)):
        if e.ndim != 4 or e.shape != a.shape or not np.issubdtype(e.dtype, np.floating):
            continue
        with np.errstate(invalid="ignore"):
            diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
        diff = np.where(np.isfinite(diff), diff, np.nanmax(np.where(np.isfinite(diff), diff, 0)) * 2 or 1.0)
        image = int(diff.reshape(len(diff), -1).max(axis=1).argmax())
        return index, image, diff[image]
    return None


def write_heatmaps(
    stem: Path, title: str, expected: list[np.ndarray], actual: list[np.ndarray], first_image: int
) -> tuple[str | None, str | None]:
    """Write `<stem>.heatmap.png` and a TensorBoard run `<stem>.tb/`; returns their paths (None: no image output)."""
    found = error_maps(expected, actual)
    if found is None:
        return None, None
    output, image, maps = found
    channels = maps[:MAX_CHANNELS]
    png = stem.with_name(stem.name + ".heatmap.png")
    _write_png(png, f"{title}: |artifact - eager|, output {output}, image {first_image + image}", channels)
    tb = stem.with_name(stem.name + ".tb")
    _write_tensorboard(tb, channels)
    return str(png), str(tb)


def _write_png(path: Path, title: str, channels: np.ndarray) -> None:
    # Lazy: only a failing row draws, so a passing verify never pays matplotlib's import (1-3 s measured here).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(channels)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.8 * rows + 0.6), squeeze=False)
    vmax = float(channels.max()) or 1.0
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            im = ax.imshow(channels[i], cmap="magma", vmin=0, vmax=vmax)
            ax.set_title(f"channel {i}: max {channels[i].max():.3g}", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=9)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def _write_tensorboard(logdir: Path, channels: np.ndarray) -> None:
    # Lazy: only a failing row writes a run, so a passing verify never pays TensorBoard's import (0.2 s).
    from torch.utils.tensorboard import SummaryWriter

    scale = channels.reshape(len(channels), -1).max(axis=1).reshape(-1, 1, 1, 1)
    images = (channels[:, None] / np.where(scale > 0, scale, 1.0)).astype(np.float32)
    with SummaryWriter(str(logdir)) as writer:
        writer.add_images("verify/error_per_channel", images, 0, dataformats="NCHW")
