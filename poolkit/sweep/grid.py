"""The conformance grid: which layer configurations `poolkit sweep` tries, built from parameter tables.

Nothing here knows which cells fail. Each layer has a base configuration and a list of values per
parameter (the tutorials' tables); the grid is the base, every single change, and every pair of
changes (pairwise coverage: the interactions users ask about, like ceil_mode with padding, or
padding='same' with dilation). Combinations PyTorch itself rejects are kept in the grid and
reported as `invalid`, not counted as failures.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import asdict, dataclass
from typing import Any

from poolkit.exporter.formats.registry import DEFAULT_SWEEP_PATHS, SWEEP_PATHS, sweep_path
from poolkit.exporter.spec import LayerSpec, parse_spec

LAYER_GROUPS = ("conv", "maxpool", "avgpool", "pool1d", "pool3d", "boundary", "adaptive", "activation")
EXPORT_PATHS = tuple(SWEEP_PATHS)  # every format's sweep paths, from the format registry
DEFAULT_EXPORT_PATHS = DEFAULT_SWEEP_PATHS  # what runs without --exporters
DEFAULT_OPSETS = (17, 20)  # plus the newest opset each exporter and ONNX Runtime accept, measured per run
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
    # 1-D and 3-D pools: fewer values than the 2-D tables (their grid is 2 x (1+n+pairs) layers).
    "pool1d": [
        (
            "maxpool1d",
            {"kernel_size": 3},
            {"stride": [2], "padding": [1], "dilation": [2], "ceil_mode": [True], "return_indices": [True]},
        ),
        (
            "avgpool1d",
            {"kernel_size": 3},
            {"stride": [2], "padding": [1], "ceil_mode": [True], "count_include_pad": [False]},
        ),
    ],
    "pool3d": [
        (
            "maxpool3d",
            {"kernel_size": 3},
            {"stride": [2], "padding": [1], "dilation": [2], "ceil_mode": [True], "return_indices": [True]},
        ),
        (
            "avgpool3d",
            {"kernel_size": 3},
            {"stride": [2], "padding": [1], "ceil_mode": [True], "count_include_pad": [False]},
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
    depth: int = 0  # 3-D pools only: (channels, depth, height, width)

    @property
    def id(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k != "depth" or v}  # 2-D ids as before
        return hashlib.sha1(repr(sorted(fields.items())).encode()).hexdigest()[:16]

    @property
    def dims(self) -> int:
        """Spatial dimensions of the cell's layer: 1, 2 or 3."""
        kind = self.spec.split("(", 1)[0]
        return 1 if kind.endswith("1d") else 3 if kind.endswith("3d") else 2

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One input sample: 3 channels, then length, height x width, or depth x height x width."""
        if self.dims == 1:
            return (3, self.width)
        if self.dims == 3:
            return (3, self.depth, self.height, self.width)
        return (3, self.height, self.width)

    @property
    def input_label(self) -> str:
        return "x".join(str(d) for d in self.sample_shape[1:])

    @property
    def path_label(self) -> str:
        """Matrix column: `ts-script`, `pt2-export`, `dynamo-17 ort-cpu`, ..."""
        fmt, path = sweep_path(self.export)
        if not fmt.uses_opset:
            return path.label
        return f"{path.label}-{self.opset} {self.runtime.replace('onnxruntime', 'ort')}-{self.device}"


def build_grid(
    groups: tuple[str, ...] = LAYER_GROUPS,
    exports: tuple[str, ...] = EXPORT_PATHS,
    opsets: tuple[int, ...] = DEFAULT_OPSETS,
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES,
    onnx_runtimes: tuple[str, ...] = ("onnxruntime",),
    devices: tuple[str, ...] = ("cpu",),
    extra_opsets: dict[str, int] | None = None,
) -> list[Cell]:
    """Every layer variant x input size x export path (x opset x ONNX runtime x device for ONNX).

    `extra_opsets` adds one opset per ONNX exporter (the newest it was measured to accept). The
    `boundary` group brings its own input sizes (see `boundary_layers`); 1-D and 3-D pools run at
    the last size only (the odd one by default): 1-D takes its width, 3-D a depth of 7 (or the height, if smaller).
    """
    cells = []
    for group in groups:
        layers: list[tuple[str, tuple[tuple[int, int], ...]]]
        if group == "boundary":
            layers = [(text, ((n, n),)) for text, n in boundary_layers()]
        else:
            own = sizes[-1:] if group in ("pool1d", "pool3d") else sizes  # the odd size: where ceil_mode bites
            layers = [(layer_text(k, a), own) for k, base, vals in TABLES[group] for a in layer_variants(k, base, vals)]
        for text, layer_sizes in layers:
            for h, w in layer_sizes:
                depth = min(h, 7) if text.split("(", 1)[0].endswith("3d") else 0
                for export in exports:
                    fmt, _ = sweep_path(export)
                    if fmt.sweep_runtime is not None:  # its own runtime, on the CPU
                        cells.append(Cell(group, text, h, w, export, None, fmt.sweep_runtime, "cpu", depth))
                        continue
                    extra = (extra_opsets or {}).get(export)
                    for opset in dict.fromkeys((*opsets, *([extra] if extra else []))):
                        for rt in onnx_runtimes:
                            cells += [Cell(group, text, h, w, export, opset, rt, d, depth) for d in devices]
    return cells


# ---------------------------------------------------------------- boundary cases

BOUNDARY_SIZES = (1, 2, 3, 4, 5, 6, 7, 9, 11)  # small, odd and even: where windows stop tiling


def window_conditions(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> frozenset[str] | None:
    """Which pooling edge conditions one spatial dimension meets (None: PyTorch has no output).

    Only PyTorch's documented output-size rule is used (pooling_output_shape in ATen): with
    ceil_mode the last window is dropped when it would start inside the right padding. Which of
    these conditions any exporter or runtime gets wrong is left to the measurement.
    """
    span = d * (k - 1) + 1
    if n + 2 * p < span:
        return None
    floor_out = (n + 2 * p - span) // s + 1
    raw = -(-(n + 2 * p - span) // s) + 1
    ceil_out = raw - 1 if (raw - 1) * s >= n + p else raw
    flags = set()
    if (n + 2 * p - span) % s:
        flags.add("windows-do-not-tile")
    if n <= span:
        flags.add("input<=kernel")
    if s != k:
        flags.add("stride!=kernel")
    if n % 2:
        flags.add("odd-input")
    if p:
        flags.add("padding")
    if ceil:
        if raw != ceil_out:
            flags.add("ceil-window-starts-in-padding")
        if ceil_out > floor_out:
            flags.add("ceil-adds-partial-window")
        if d > 1:
            flags.add("dilation+ceil")
    return frozenset(flags)


def boundary_layers() -> list[tuple[str, int]]:
    """2-D pools at small square inputs, one per distinct set of edge conditions (plus divisor flags).

    Pairwise grids cannot reach cells that need three changes at once; this enumerates kernel,
    stride, padding, dilation, ceil_mode and count_include_pad over small inputs, and keeps the
    first configuration of each distinct combination of the conditions in `window_conditions`.
    Common values come first (kernel 3, stride 2, padding 1), so the kept ones look like real
    networks' pools.
    """
    kept: dict[tuple[object, ...], tuple[str, int]] = {}
    for kind in ("avgpool", "maxpool"):
        for k, s, p, d, ceil, include in itertools.product(
            (3, 2), (2, 1, 3), (1, 0), (1, 2), (True, False), (True, False)
        ):
            if p > k // 2 or (kind == "avgpool" and d > 1) or (kind == "maxpool" and not include):
                continue  # PyTorch's own limits; AvgPool2d has no dilation, MaxPool2d no count_include_pad
            for n in BOUNDARY_SIZES:
                flags = window_conditions(n, k, s, p, d, ceil)
                if flags is None:
                    continue
                key = (kind, include, ceil, flags - {"odd-input"})
                if key in kept:
                    continue
                args: dict[str, Any] = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil}
                if kind == "maxpool":
                    args["dilation"] = d
                else:
                    args["count_include_pad"] = include
                kept[key] = (layer_text(kind, args), n)
    return list(dict.fromkeys(kept.values()))
