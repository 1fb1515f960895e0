"""Sizes poolkit refuses before allocating anything: a typo must not freeze the machine.

An absurd `--input-shape 1x100000x100000` or `--batch-sizes 1000000` would otherwise ask torch for
tens of gigabytes and die in the allocator (or the OOM killer). The limits are far above any
tutorial model (CIFAR10 is 3x32x32 = 3,072 values a sample) and each error names its limit.
"""

from __future__ import annotations

import math

from poolkit.common.errors import PoolkitError

MAX_BATCH = 65_536  # images in one batch
MAX_SAMPLE_ELEMENTS = 1 << 24  # values in one sample (64 MiB of float32)
MAX_BATCH_ELEMENTS = 1 << 28  # values in one batch (1 GiB of float32)
MAX_PARAMETERS = 1 << 27  # 512 MiB of float32 weights: far beyond any tutorial model
MAX_THREADS = 1024  # torch.set_num_threads(100000) crashes the process
MAX_JOBS = 64  # worker processes; each imports torch (hundreds of MB)
MAX_ITERS = 1_000_000  # timed or warm-up runs of one measurement
MAX_SECONDS = 3600.0  # a time budget (bench --min-time, sweep --timeout) above an hour is a typo


def check_sample(shape: tuple[int, ...], option: str = "--input-shape") -> None:
    shown = "x".join(map(str, shape))
    if len(shape) > 8:
        raise PoolkitError(f"bad {option} '{shown}': at most 8 dimensions")
    if math.prod(shape) > MAX_SAMPLE_ELEMENTS:
        raise PoolkitError(
            f"bad {option} '{shown}': {math.prod(shape):,} values a sample; the limit is {MAX_SAMPLE_ELEMENTS:,}"
        )


def check_parameters(count: int, what: str) -> None:
    if count > MAX_PARAMETERS:
        raise PoolkitError(f"{what} has {count:,} parameters; the limit is {MAX_PARAMETERS:,}")


def check_batch(batch: int, shape: tuple[int, ...] | None = None, option: str = "--batch-size") -> None:
    if batch > MAX_BATCH:
        raise PoolkitError(f"bad {option} {batch:,}: the limit is {MAX_BATCH:,} images a batch")
    if shape is not None and batch * math.prod(shape) > MAX_BATCH_ELEMENTS:
        raise PoolkitError(
            f"bad {option} {batch:,}: {batch * math.prod(shape):,} values in one batch of "
            f"{'x'.join(map(str, shape))}; the limit is {MAX_BATCH_ELEMENTS:,}"
        )
