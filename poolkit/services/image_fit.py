"""CIFAR10 images fitted to a model's input: resized to its height and width, converted to its channels.

A model that takes 3x224x224 (a torchvision classifier) or 1x28x28 gets the same real images,
resized with torchvision's `transforms.v2.Resize` (bilinear, antialiased, as torchvision's own
classification presets resize) and, for one channel, converted with `transforms.v2.Grayscale`
(ITU-R 601-2 luma). Other channel counts and inputs that are not images are refused with a hint:
`--data synthetic` is for those. What was done is recorded in the images' `DataSource.fit`, which
every report prints in its header and JSON.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from poolkit.common.errors import DataError
from poolkit.services.cifar10 import ImageSet, synthetic_images


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def fit_images(images: ImageSet, sample_shape: tuple[int, ...], count: int | None = None) -> ImageSet:
    """`images` as a model of input `sample_shape` takes them (the first `count` only, when given:
    a 224x224 copy of 1,000 images is 600 MB, and `--batches 2` needs 128).

    Synthetic data is drawn at the model's shape instead; a DataError (one line, with a hint) when
    real images cannot be fitted."""
    stored = tuple(images.images.shape[1:])
    sample_shape = tuple(sample_shape)
    if sample_shape == stored:
        return images
    if images.source.kind == "synthetic":
        return synthetic_images(len(images.images), sample_shape)
    shape = shape_text(sample_shape)
    if len(sample_shape) != 3:
        raise DataError(f"input {shape} is not an image (CxHxW): use --data synthetic for inputs that are not images")
    channels, height, width = sample_shape
    if channels not in (1, 3) or height < 1 or width < 1:
        raise DataError(
            f"input {shape} has {channels} channels: CIFAR10 images have 3 (or 1, as grayscale); "
            "use --data synthetic for other channel counts"
        )
    fitted, steps = fit_array(images.images[:count] if count else images.images, sample_shape)
    labels = images.labels[: len(fitted)]
    source = dataclasses.replace(images.source, images=len(fitted), fit="; ".join(steps))
    return ImageSet(source, fitted, labels)


def fit_array(images: np.ndarray, sample_shape: tuple[int, ...]) -> tuple[np.ndarray, list[str]]:
    """NCHW float images resized to `sample_shape`'s height and width and, for one channel, made
    grayscale; with the steps taken, in words. The caller has checked that `sample_shape` is an image
    of 1 or 3 channels (bench's data uses this too, so every command feeds the same fitted images)."""
    from torchvision.transforms import v2  # lazily: torchvision takes seconds to import; most inputs need no fitting

    channels, height, width = sample_shape
    stored = tuple(images.shape[1:])
    x = torch.from_numpy(np.ascontiguousarray(images))
    steps = []
    if (height, width) != stored[1:]:
        x = v2.Resize((height, width), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)(x)
        steps.append(
            f"resized {shape_text(stored[1:])} → {height}x{width} (torchvision transforms.v2.Resize, bilinear, antialias)"
        )
    if channels == 1 and stored[0] != 1:
        x = v2.Grayscale(num_output_channels=1)(x)
        steps.append("converted to grayscale (transforms.v2.Grayscale, ITU-R 601-2 luma)")
    return np.ascontiguousarray(x.numpy(), dtype=np.float32), steps
