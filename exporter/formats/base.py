"""What every artifact format declares: the one interface `export`, `sweep` and the CLI ask.

A format is one short file in this folder with an `ArtifactFormat` subclass, and one line in
`registry.py`. It says what its files are called, which export methods it has (and which
`ExportOptions` field picks one), which ways the sweep exports with it, and how one artifact is
written. Runtimes name the format they read (`Runtime.reads` is a format name): runtimes sit above
the exporter, so the format cannot list them; `runtimes.registry.readers` answers that question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from poolkit.exporter.axes import open_axes

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class ExportRequest:
    """How to write one artifact: the format's own method and the shape of what it takes."""

    method: str
    opset: int | None = None  # ONNX only; None: the exporter's default
    dynamic_batch: bool = True
    dynamic_spatial: bool = False  # height and width open (NCHW axes 2 and 3 of the first input)
    dynamic_channels: bool = False  # channels open too (axis 1): pools and activations only (`axes.py`)
    n_outputs: int = 1
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class ArtifactWritten:
    """What a format wrote: the opset really in an ONNX file, how each open axis was declared
    (torch.export: "batch": "Dim", "height": "Dim.AUTO"...), and the warnings the exporter raised."""

    opset: int | None = None
    warnings: list[str] = field(default_factory=list)
    dims: dict[str, str] = field(default_factory=dict)
    compile_seconds: float | None = None


@dataclass(frozen=True)
class SweepPath:
    """One way `poolkit sweep` exports a layer: `--exporters` name, the format's method, matrix label."""

    name: str
    method: str
    label: str


class ArtifactFormat:
    """Base of every format. Subclasses set the class attributes and implement `export`."""

    name: ClassVar[str]
    suffix: ClassVar[str]  # file name = model name + suffix
    methods: ClassVar[tuple[str, ...]]  # the ways it exports; the first is the default
    method_option: ClassVar[str | None] = None  # the ExportOptions field that picks the method (None: methods[0])
    any_batch: ClassVar[bool] = False  # the artifact takes any batch whatever it was exported with
    uses_opset: ClassVar[bool] = False  # --opset applies (and is recorded, and checked)
    open_channels: ClassVar[bool] = False  # leaves channels open where the model takes any number
    onnx_graph: ClassVar[bool] = False  # an ONNX file: declared output shapes, a reference evaluator to vote
    in_all: ClassVar[bool] = True  # part of `--format all`
    sweep_paths: ClassVar[tuple[SweepPath, ...]] = ()
    sweep_default: ClassVar[bool] = True  # its sweep paths run when --exporters is not given
    sweep_runtime: ClassVar[str | None] = None  # runtime the sweep opens it with; None: the sweep's ONNX runtimes
    sweep_dynamic_shapes: ClassVar[bool] = False  # the sweep exports 2-D layers with height and width open too
    # Precision variants `export --precision` writes for it (exporter/precision.py): torch converts the
    # module for fp16/bf16 unless the format has its own converter; int8 needs a quantizer for the format.
    # The "-autocast" ones: the fp32 module under torch.autocast, for formats that capture it (a check
    # at export runs the file and fails it where they do not: exporter/autocast.py).
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "bf16", "bf16-autocast", "fp16-autocast")

    def method_of(self, options: Any) -> str:
        """The method an export run with these `ExportOptions` uses for this format."""
        return str(getattr(options, self.method_option)) if self.method_option else self.methods[0]

    def check(self, opset: int | None) -> None:
        """Refuse what this format cannot honour before anything is built (an opset it cannot write)."""

    def export(
        self, module: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path, request: ExportRequest
    ) -> ArtifactWritten:
        """Write one artifact to `path` (atomically); raises whatever the exporter raises."""
        raise NotImplementedError

    def external_hashes(self, path: Path) -> dict[str, str]:
        """The files the artifact loads beside itself, name -> sha256, recorded at export (ONNX: its external data)."""
        return {}

    def external_problem(self, path: Path, models_dir: Path, recorded: dict[str, str]) -> str | None:
        """Why a file the artifact loads beside itself cannot be trusted (missing, outside, changed), or None."""
        return None

    def failure_hint(self, method: str, user_model: bool) -> str:
        """What to add to an export failure's reason: a way out the user can take, or ''."""
        return ""

    def repro(self, method: str, *, provider: str, export_failed: bool, n_outputs: int, opset: int | None) -> str:
        """A standalone snippet for a failure bundle's repro.py: from `model`, `x`, `here` and
        `n_outputs`, set `actual` (list of arrays) and `declared` (the output shapes the file
        declares, [] each where it declares none); `sys.exit("REPRODUCED: ...")` where it fails."""
        raise NotImplementedError


def dynamic_axes(batch: bool, spatial: bool, channels: bool = False) -> dict[int, str]:
    """Input axis -> name of the axes an artifact leaves open (NCHW: 0 batch, 1 channels, 2 height, 3 width)."""
    return open_axes(batch, spatial, channels)
