"""The conformance grid: which layer configurations `poolkit sweep` tries, built from parameter tables.

Nothing here knows which cells fail. Each layer has a base configuration and a list of values per
parameter (the seeds' tables); the grid is the base, every single change, and every pair of
changes (pairwise coverage: the interactions users ask about, like ceil_mode with padding, or
padding='same' with dilation). Combinations PyTorch itself rejects are kept in the grid and
reported as `invalid`, not counted as failures.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import asdict, dataclass
from typing import Any

from poolkit.exporter.spec import LayerSpec, ModelSpec, parse_spec

LAYER_GROUPS = ("conv", "maxpool", "avgpool", "adaptive", "activation")
EXPORT_PATHS = ("torchscript-script", "torchscript-trace", "onnx-dynamo", "onnx-legacy")
DEFAULT_OPSETS = (17, 20)
DEFAULT_SIZES = ((32, 32), (31, 31))  # even and odd

# (layer kind, base arguments, {parameter: values other than the base})
TABLES: dict[str, list[tuple[str, dict[str, Any], dict[str, list[Any]]]]] = {
    "conv": [
        (
            "conv",
            {"in_channels": 3, "out_channels": 6, "kernel_size": 3},
            {
                "kernel_size": [1, (3, 5)],
                "stride": [2],
                "padding": [1, "same", (1, 2)],
                "dilation": [2],
                "groups": [3],
                "bias": [False],
                "padding_mode": ["reflect", "replicate", "circular"],
            },
        ),
    ],
    "maxpool": [
        (
            "maxpool",
            {"kernel_size": 3},
            {
                "kernel_size": [2],
                "stride": [1, 2],
                "padding": [1],
                "dilation": [2],
                "ceil_mode": [True],
                "return_indices": [True],
            },
        ),
    ],
    "avgpool": [
        (
            "avgpool",
            {"kernel_size": 3},
            {
                "kernel_size": [2],
                "stride": [1, 2],
                "padding": [1],
                "ceil_mode": [True],
                "count_include_pad": [False],
                "divisor_override": [2],
            },
        ),
    ],
    "adaptive": [
        ("adaptiveavgpool", {"output_size": 1}, {"output_size": [4, 5, (3, 7)]}),
        ("adaptivemaxpool", {"output_size": 1}, {"output_size": [4, 5, (3, 7)], "return_indices": [True]}),
    ],
    "activation": [
        ("relu", {}, {}),
        ("sigmoid", {}, {}),
        ("tanh", {}, {}),
        ("leaky_relu", {}, {"negative_slope": [0.2]}),
        ("prelu", {}, {"num_parameters": [3]}),
        ("elu", {}, {"alpha": [0.5]}),
        ("softmax", {"dim": 1}, {"dim": [-1]}),
        ("log_softmax", {"dim": 1}, {"dim": [-1]}),
    ],
}


def layer_variants(kind: str, base: dict[str, Any], values: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Base, each single change, each pair of changes to different parameters."""
    singles = [(p, v) for p, vs in values.items() for v in vs]
    variants = [dict(base)]
    variants += [{**base, p: v} for p, v in singles]
    for (p1, v1), (p2, v2) in itertools.combinations(singles, 2):
        if p1 != p2:
            variants.append({**base, p1: v1, p2: v2})
    unique: dict[str, dict[str, Any]] = {}
    for args in variants:
        unique.setdefault(layer_text(kind, args), args)
    return list(unique.values())


def layer_text(kind: str, args: dict[str, Any]) -> str:
    """The canonical spec of one layer (via the spec parser, so the grid speaks the CLI's language)."""
    spec = LayerSpec(kind, tuple(args.items()))
    return str(parse_spec(str(spec)))


@dataclass(frozen=True)
class Cell:
    """One layer configuration, input size, export path and runtime."""

    group: str
    spec: str
    height: int
    width: int
    export: str  # torchscript-script | torchscript-trace | onnx-dynamo | onnx-legacy
    opset: int | None
    runtime: str  # a registry name: torchscript, onnxruntime, ...
    device: str = "cpu"

    @property
    def id(self) -> str:
        return hashlib.sha1(repr(sorted(asdict(self).items())).encode()).hexdigest()[:16]

    @property
    def path_label(self) -> str:
        """Matrix column: `ts-script`, `dynamo-17 ort-cpu`, ..."""
        if self.export.startswith("torchscript"):
            return self.export.replace("torchscript", "ts")
        return f"{self.export.removeprefix('onnx-')}-{self.opset} {self.runtime.replace('onnxruntime', 'ort')}-{self.device}"


def build_grid(
    groups: tuple[str, ...] = LAYER_GROUPS,
    exports: tuple[str, ...] = EXPORT_PATHS,
    opsets: tuple[int, ...] = DEFAULT_OPSETS,
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES,
    onnx_runtimes: tuple[str, ...] = ("onnxruntime",),
    devices: tuple[str, ...] = ("cpu",),
) -> list[Cell]:
    """Every layer variant x input size x export path (x opset x ONNX runtime x device for ONNX)."""
    cells = []
    for group in groups:
        for kind, base, values in TABLES[group]:
            for args in layer_variants(kind, base, values):
                text = layer_text(kind, args)
                for h, w in sizes:
                    for export in exports:
                        if export.startswith("torchscript"):
                            cells.append(Cell(group, text, h, w, export, None, "torchscript", "cpu"))
                            continue
                        for opset in opsets:
                            for rt in onnx_runtimes:
                                cells += [Cell(group, text, h, w, export, opset, rt, device) for device in devices]
    return cells


def cell_spec(cell: Cell) -> ModelSpec:
    return parse_spec(cell.spec)
