"""What `poolkit zoo` shows about each model: built for real, so the numbers are torch's own."""

from __future__ import annotations

from dataclasses import dataclass

from poolkit.common.errors import SpecError
from poolkit.exporter.build import build_model, output_shapes, parameter_count
from poolkit.exporter.models import build_user_model
from poolkit.exporter.options import ExportOptions
from poolkit.exporter.spec import default_input_shape
from poolkit.exporter.user_model import check_forward
from poolkit.exporter.zoo import ModelRef


@dataclass
class ZooRow:
    name: str
    spec: str
    layers: str
    parameters: int
    input_shape: tuple[int, ...]
    output_shapes: list[tuple[int, ...]]


def describe(
    refs: list[ModelRef], batch: int = 64, input_shapes: tuple[tuple[int, ...], ...] | None = None
) -> list[ZooRow]:
    """One row per model, for the spec's default input or `input_shapes` (from --input-shape)."""
    rows = []
    for ref in refs:
        if ref.user is not None:
            rows.append(describe_user_model(ref, batch, input_shapes))
            continue
        assert ref.spec is not None
        if input_shapes and len(input_shapes) > 1:
            raise SpecError("several --input-shape inputs (joined by '+') apply to your own models only")
        shape = input_shapes[0] if input_shapes else default_input_shape(ref.spec)
        model = build_model(ref.spec, shape)
        rows.append(
            ZooRow(
                name=ref.name,
                spec=ref.spec_text,
                layers=ref.spec.torch_calls(),
                parameters=parameter_count(model),
                input_shape=(batch, *shape),
                output_shapes=output_shapes(model, shape, batch),
            )
        )
    return rows


def describe_user_model(ref: ModelRef, batch: int, input_shapes: tuple[tuple[int, ...], ...] | None) -> ZooRow:
    """A user's model, imported and run once: its top-level layers stand in for the spec's torch calls."""
    built = build_user_model(ref, ExportOptions(input_shapes=input_shapes))
    module = built.module
    return ZooRow(
        name=ref.name,
        spec=ref.spec_text,
        layers=" → ".join(type(child).__name__ for child in module.children()) or type(module).__name__,
        parameters=parameter_count(module),
        input_shape=(batch, *built.input_shape),
        output_shapes=check_forward(module, built.shapes, type(module).__name__, batch),
    )
