"""The modules an export run writes: zoo and spec models built (seeded), a user's own imported.

Every model is built before anything is written, so a bad `--model` fails fast (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from poolkit.common.errors import SpecError
from poolkit.exporter.axes import channel_agnostic, runs_at_another_size
from poolkit.exporter.build import build_model, output_shapes
from poolkit.exporter.options import ExportOptions
from poolkit.exporter.spec import ModelSpec, default_input_shape
from poolkit.exporter.state_dict import load_weights
from poolkit.exporter.user_model import (
    check_forward,
    construct,
    example_shapes,
    import_user_module,
    source_sha256,
)
from poolkit.exporter.zoo import ModelRef

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class BuiltModel:
    ref: ModelRef
    module: nn.Module
    input_shape: tuple[int, ...]
    n_outputs: int
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)  # several inputs: each one's shape
    source_sha256: str | None = None  # a user's model: its file at the moment it was imported
    dynamic_spatial: bool = False
    dynamic_channels: bool = False  # `axes.channel_agnostic`: pools and activations take any channel count
    probed: bool = False  # a user's module: height/width opened because eager ran at another size
    dtype: str = "float32"  # what its parameters hold (the spec's dtype= or --dtype)

    @property
    def exported(self) -> nn.Module:
        """What the exporters see: a model of your own not in float32 gets its inputs cast first."""
        from poolkit.exporter.layers import with_input_cast  # imports torch: only once a model is exported

        return with_input_cast(self.module, self.dtype) if self.ref.user is not None else self.module

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return self.input_shapes or [self.input_shape]


def shape_agnostic(spec: ModelSpec, input_shape: tuple[int, ...]) -> bool:
    """Whether every layer takes any image size: 4-d images, and no Linear unless an adaptive pool
    before it fixes the size it sees (convs, pools and activations work on any height and width)."""
    if len(input_shape) != 3:
        return False
    sized = False
    for layer in spec.layers:
        if layer.kind.startswith("adaptive"):
            sized = True
        if layer.kind == "linear" and not sized:
            return False
    return True


def build_all(refs: list[ModelRef], options: ExportOptions) -> list[BuiltModel]:
    """Build every model first: a spec whose layers do not chain stops the run before any file."""
    users = [r for r in refs if r.user is not None]
    if options.weights is not None and (len(refs) != 1 or not users):
        raise SpecError("--weights loads a state dict into one model of your own: give one --model PATH.py:NAME")
    if options.input_shapes and len(options.input_shapes) > 1 and len(users) != len(refs):
        raise SpecError("several --input-shape inputs (joined by '+') apply to your own models only")
    built = []
    for ref in refs:
        if ref.user is not None:
            built.append(build_user_model(ref, options))
            continue
        assert ref.spec is not None
        shape = options.input_shape or default_input_shape(ref.spec)
        module = build_model(ref.spec, shape, seed=options.seed, dtype=options.dtype)
        agnostic = shape_agnostic(ref.spec, shape)
        if options.dynamic_shape and not agnostic:
            what = "its input is not an image" if len(shape) != 3 else "a Linear layer fixes its input size"
            raise SpecError(
                f"--dynamic-shape: '{ref.name}' cannot take any image size ({what}); "
                "export it with --static-shape, or leave the option out"
            )
        dynamic = agnostic if options.dynamic_shape is None else options.dynamic_shape
        n_outputs = len(output_shapes(module, shape, batch=1))
        channels = dynamic and channel_agnostic(ref.spec, shape)
        dtype = options.dtype or ref.spec.dtype
        built.append(
            BuiltModel(ref, module, shape, n_outputs, dynamic_spatial=dynamic, dynamic_channels=channels, dtype=dtype)
        )
    return built


def build_user_model(ref: ModelRef, options: ExportOptions) -> BuiltModel:
    """A user's module as it is (eval mode, its own or `--weights` weights), checked on its input shape."""
    user = ref.user
    assert user is not None
    digest = source_sha256(user)  # before running it: what was hashed is what was imported
    module = import_user_module(user)
    model = construct(user, module)
    if options.weights is not None:
        load_weights(model, options.weights, user.object_name)
    given = list(options.input_shapes or ()) or ([options.input_shape] if options.input_shape else [])
    shapes = given or example_shapes(user, module)
    if not shapes:
        raise SpecError(
            f"'{ref.spec_text}' needs an input shape: give 'poolkit export' --input-shape (like 3x32x32; several"
            f" inputs: 3x32x32+10), or define example_input() beside {user.object_name}"
        )
    if options.dtype is not None:
        from poolkit.exporter.layers import convert_user_model  # imports torch, as the user's module did

        model = convert_user_model(model, options.dtype)
    built = BuiltModel(
        ref, model, shapes[0], 0, shapes if len(shapes) > 1 else [], digest, dtype=options.dtype or "float32"
    )
    outputs = check_forward(built.exported, shapes, f"{Path(user.import_path).name}:{user.object_name}")
    built.n_outputs = len(outputs)
    dynamic = options.dynamic_shape is not False and runs_at_another_size(built.exported, shapes)
    if options.dynamic_shape and not dynamic:
        raise SpecError(
            f"--dynamic-shape: '{ref.spec_text}' does not run at another image size than {shapes[0]} "
            "(tried three quarters of each side); export it with --static-shape, or leave the option out"
        )
    built.dynamic_spatial = built.probed = dynamic
    return built


def example_input(shape: tuple[int, ...], batch: int, seed: int) -> torch.Tensor:
    import torch  # lazily: the CLI imports this module to parse options, and `poolkit --help` must stay instant

    gen = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *shape), generator=gen)


def example_batch(item: BuiltModel, batch: int, seed: int) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """One seeded example per input (a tuple for a model with several), batch axis first."""
    if len(item.shapes) == 1:
        return example_input(item.input_shape, batch, seed)
    return tuple(example_input(s, batch, seed + i) for i, s in enumerate(item.shapes))
