"""What `poolkit zoo` shows about each model: built for real, so the numbers are torch's own."""

from __future__ import annotations

from dataclasses import dataclass

from poolkit.exporter.build import build_model, output_shapes, parameter_count
from poolkit.exporter.spec import default_input_shape
from poolkit.exporter.zoo import ModelRef


@dataclass
class ZooRow:
    name: str
    spec: str
    layers: str
    parameters: int
    input_shape: tuple[int, ...]
    output_shapes: list[tuple[int, ...]]


def describe(refs: list[ModelRef], batch: int = 64) -> list[ZooRow]:
    rows = []
    for ref in refs:
        shape = default_input_shape(ref.spec)
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
