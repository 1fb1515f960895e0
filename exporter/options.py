"""What `poolkit export` was asked for, and the refusals that come before anything is built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from poolkit.common.errors import PoolkitError
from poolkit.common.limits import check_batch, check_sample
from poolkit.exporter.build import DEFAULT_SEED
from poolkit.exporter.formats.registry import ALL_FORMATS, format_named

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed


@dataclass
class ExportOptions:
    formats: tuple[str, ...] = ALL_FORMATS
    opset: int | None = None  # None: the exporter's default, recorded as it really is
    exporter: str = "dynamo"
    method: str = "script"
    dynamic_batch: bool = True
    # Height and width open in the artifact: None = wherever the model's layers take any size.
    dynamic_shape: bool | None = None
    static_batch_size: int = 64  # the batch a static-batch artifact is fixed to (CIFAR10 batches of 64)
    input_shape: tuple[int, ...] | None = None  # per sample; None: inferred from the spec
    seed: int = DEFAULT_SEED
    # A user's model with several inputs: every input's per-sample shape (input_shape is the first).
    input_shapes: tuple[tuple[int, ...], ...] | None = None
    weights: Path | None = None  # a state dict for a user's model (loaded with weights_only=True)
    force: bool = False  # export again even when the artifact on disk is current


def check_options(options: ExportOptions) -> None:
    """Refuse what the exporter cannot honour before anything is built or written."""
    for name in options.formats:
        format_named(name).check(options.opset)
    if options.seed < 0 or options.seed > MAX_SEED:
        raise PoolkitError(f"--seed {options.seed}: seeds run from 0 to {MAX_SEED}")
    for sample in options.input_shapes or ([options.input_shape] if options.input_shape is not None else []):
        check_sample(sample)
        if not options.dynamic_batch:
            check_batch(options.static_batch_size, sample)
