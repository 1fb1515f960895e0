"""The input sets verify feeds every artifact: data that exercises every layer, at every size it takes.

CIFAR10 through `ToTensor()` lies in [0, 1], where ReLU, LeakyReLU, PReLU and ELU are the identity:
an artifact that dropped its activation passes on it. So besides the raw images verify feeds

- `normalized`: the same images normalised with CIFAR10's per-channel mean and std, as training
  pipelines do (values on both sides of zero);
- `edge`: a small seeded batch of zeros, negatives, large magnitudes, ties for max pooling and
  values right at the activations' kinks;
- for artifacts that take any image size: `odd`, normalised images cropped to an odd, non-square
  31x27, and `tutorial`, the tutorials' own small worked examples (5x5, 4x4, 2x2).

Each set is a list of same-size arrays (a batch has one size); `batches()` slices them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from poolkit.common.errors import DataError
from poolkit.services.cifar10 import ImageSet

# CIFAR10 training-set statistics, as torchvision recipes write them.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
INPUT_SETS = ("raw", "normalized", "edge", "odd", "tutorial")
OLD_NAMES = {"seeds": "tutorial"}
DEFAULT_INPUT_SETS = INPUT_SETS
EDGE_SEED = 13
EDGE_IMAGES = 16
ODD_SIZE = (31, 27)  # odd and non-square: a swapped height and width shows too
ODD_IMAGES = 256
LARGE = 16.0  # large against CIFAR's [0, 1], small enough that fp32 sums of a 3x3 conv stay within 1e-5

# The tutorials' worked examples (single-channel): the inputs they draw by hand.
FIVE_BY_FIVE: list[list[float]] = [[1, 2, 0, 3, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0], [5, 2, 3, 1, 1], [2, 1, 0, 1, 1]]
TWO_BY_TWO: list[list[float]] = [[1, -0.5], [-1, 3]]
FOUR_BY_FOUR: list[list[float]] = [[1, 3, 2, 4], [5, 6, 1, 2], [7, 2, 8, 3], [4, 5, 9, 0]]
TUTORIAL_INPUTS = (FIVE_BY_FIVE, FOUR_BY_FOUR, TWO_BY_TWO)


@dataclass
class InputSet:
    """One named input set: same-size arrays (N, *sample) of float32, and what they are."""

    name: str
    about: str
    arrays: list[np.ndarray]
    limited: bool = True  # --batches applies (the CIFAR-sized sets); edge and tutorial always run whole

    @property
    def sizes(self) -> list[str]:
        return ["x".join(map(str, a.shape[2:] or a.shape[1:])) for a in self.arrays]

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first image index within the set, batch) for every batch of every size."""
        offset, done = 0, 0
        for array in self.arrays:
            for start in range(0, len(array), batch_size):
                if self.limited and limit is not None and done >= limit:
                    return
                yield offset + start, array[start : start + batch_size]
                done += 1
            offset += len(array)

    def count_batches(self, batch_size: int, limit: int | None = None) -> int:
        n = sum(-(-len(a) // batch_size) for a in self.arrays)
        return min(n, limit) if self.limited and limit is not None else n


def parse_input_sets(text: str | None) -> tuple[str, ...]:
    """`--inputs raw,edge` (or `all`) -> the set names, checked."""
    if text is None or text.strip() == "all":  # "" is not "all": an empty value is refused below
        return DEFAULT_INPUT_SETS
    # `seeds`, the set's old name, is still read (one more release), like `--runtime onnx`.
    names = tuple(dict.fromkeys(OLD_NAMES.get(n.strip(), n.strip()) for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in INPUT_SETS]
    if unknown or not names:
        raise DataError(f"unknown --inputs '{','.join(unknown) or text}' (choose from {', '.join(INPUT_SETS)}, or all)")
    return names


def normalize(images: np.ndarray) -> np.ndarray:
    """(x - mean) / std per channel with CIFAR10's statistics (3 channels), else around 0.5 by 0.25."""
    mean: Any
    std: Any
    if images.ndim == 4 and images.shape[1] == 3:
        mean = np.asarray(CIFAR10_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(CIFAR10_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    else:
        mean, std = np.float32(0.5), np.float32(0.25)
    return ((images - mean) / std).astype(np.float32)


def edge_batch(sample_shape: tuple[int, ...], count: int = EDGE_IMAGES, seed: int = EDGE_SEED) -> np.ndarray:
    """Seeded inputs aimed at the places where wrong artifacts hide.

    zeros; all negative; large positive and negative magnitudes; small integers (ties for max
    pooling, exact in fp32); values within 1e-3 of zero (the kink of ReLU, LeakyReLU, ELU, PReLU);
    sign checkerboards; standard normal. The same numbers on every machine.
    """
    rng = np.random.default_rng(seed)
    shape = (count, *sample_shape)
    out = np.empty(shape, dtype=np.float32)
    kinds: list[Callable[[tuple[int, ...]], Any]] = [
        lambda s: np.zeros(s),
        lambda s: -rng.random(s) - 0.5,
        lambda s: rng.uniform(-LARGE, LARGE, s),
        lambda s: -rng.uniform(LARGE / 2, LARGE, s),
        lambda s: rng.integers(0, 3, s).astype(np.float64),
        lambda s: rng.uniform(-1e-3, 1e-3, s),
        lambda s: np.where(np.indices(s).sum(axis=0) % 2 == 0, 0.5, -0.5),
        lambda s: rng.standard_normal(s),
    ]
    for i in range(count):
        out[i] = kinds[i % len(kinds)](sample_shape)
    return out


def tutorial_examples(channels: int) -> list[np.ndarray]:
    """The tutorials' worked examples, one batch per size: the drawing copied to every channel, its
    negation, and a seeded normal draw of the same size."""
    rng = np.random.default_rng(EDGE_SEED)
    batches = []
    for drawing in TUTORIAL_INPUTS:
        x = np.asarray(drawing, dtype=np.float32)
        base = np.broadcast_to(x, (channels, *x.shape))
        noise = rng.standard_normal((channels, *x.shape)).astype(np.float32)
        batches.append(np.stack([base, -base, noise]).astype(np.float32))
    return batches


def build_input_sets(
    images: ImageSet, sample_shape: tuple[int, ...], dynamic_spatial: bool, wanted: tuple[str, ...]
) -> list[InputSet]:
    """The sets for one model: the image sets need `images` at the model's size (the caller checks);
    `odd` and `tutorial` only for artifacts that take any size."""
    raw = images.images
    kind = images.source.kind
    sets: list[InputSet] = []
    for name in wanted:
        if name == "raw":
            sets.append(InputSet("raw", f"{kind} as ToTensor() gives it, in [0, 1]", [raw]))
        elif name == "normalized":
            sets.append(
                InputSet("normalized", "the same, normalised with CIFAR10's per-channel mean/std", [normalize(raw)])
            )
        elif name == "edge":
            about = f"{EDGE_IMAGES} seeded edge inputs: zeros, negatives, ±{LARGE:g}, ties, kinks"
            sets.append(InputSet("edge", about, [edge_batch(sample_shape)], limited=False))
        elif name == "odd" and dynamic_spatial:
            h, w = ODD_SIZE
            sets.append(
                InputSet("odd", f"normalised {kind} cropped to {h}x{w}", [normalize(raw[:ODD_IMAGES, :, :h, :w])])
            )
        elif name == "tutorial" and dynamic_spatial:
            about = "the tutorials' 5x5, 4x4 and 2x2 examples, negated, and normal draws"
            sets.append(InputSet("tutorial", about, tutorial_examples(sample_shape[0]), limited=False))
    return sets
