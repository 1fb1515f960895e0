"""What `poolkit verify` reports: a row per artifact, runtime and device, folded over every input set.

Plain dataclasses (derived figures are properties), written to JSON as they are; the table view
in `poolkit.cli.render` reads the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from poolkit.common.errors import DataError
from poolkit.services.cifar10 import DataSource
from poolkit.services.comparator import DEFAULT_ATOL, DEFAULT_RTOL, Comparison
from poolkit.verify.inputs import DEFAULT_INPUT_SETS
from poolkit.verify.precision import RoundingDecision
from poolkit.verify.sensitivity import MODES, SensitivityResult
from poolkit.verify.tolerance import Guidance
from poolkit.verify.variants import PrecisionRow

# No runtime named: each model is checked on the runtimes that read the artifacts it has
# (`ModelArtifacts.readers`): a model exported only to ONNX is checked on ONNX Runtime alone.
DEFAULT_VERIFY_RUNTIMES: tuple[str, ...] = ()


@dataclass
class InputRun:
    """One input set through one row: which sizes ran, and how the outputs compared on it."""

    name: str
    sizes: list[str] = field(default_factory=list)
    images: int = 0
    batches: int = 0
    skipped: list[str] = field(default_factory=list)  # sizes or batches this row could not take, and why
    outputs: list[Comparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(self.outputs)

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.outputs), default=0.0)


@dataclass
class VerifyRow:
    """One artifact on one runtime and device, over every input set."""

    model: str
    format: str
    runtime: str
    device: str
    spec: str
    status: str  # passed | failed | unavailable
    reason: str | None = None
    provider: str | None = None
    precision: str = "fp32"  # what the runtime really computed in; reduced ones are judged by their rounding
    outputs: list[Comparison] = field(default_factory=list)  # on `worst_input`: the failing set, else the worst
    batches: int = 0
    images: int = 0
    skipped_images: int = 0
    diverging_layer: str | None = None
    failing_batch: str | None = None
    replay: str | None = None
    seconds: float = 0.0
    inputs: list[InputRun] = field(default_factory=list)
    worst_input: str | None = None
    guidance: Guidance | None = None
    heatmap: str | None = None
    tensorboard: str | None = None
    rounding: RoundingDecision | None = None  # the fp64 decision, where the strict check failed

    @property
    def verdict(self) -> str:
        """The status as the table says it: a pass decided against fp64 eager says so."""
        if self.status == "passed" and self.rounding is not None and self.rounding.within:
            return f"passed (within {self.rounding.reference} rounding)"  # bf16 / fp16 rows: their own
        return self.status

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def worst(self) -> Comparison | None:
        return max(self.outputs, key=lambda c: c.max_abs, default=None)

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs if i.batches]


@dataclass
class VerifyReport:
    data: DataSource
    atol: float
    rtol: float
    batch_size: int
    batches_limit: int | None
    devices: list[str]
    environment: dict[str, Any]
    rows: list[VerifyRow]
    input_sets: dict[str, str] = field(default_factory=dict)  # name -> what it is
    sensitivity: list[SensitivityResult] = field(default_factory=list)
    data_fits: dict[str, str] = field(default_factory=dict)  # model -> how the images were fitted to its input
    precisions: list[PrecisionRow] = field(default_factory=list)  # fp16/bf16/int8 variants, each on its own rounding
    exported: list[str] = field(default_factory=list)  # models whose missing formats this run exported first

    @property
    def passed(self) -> bool:
        statuses = [r.status for r in self.rows] + [p.status for p in self.precisions]
        return bool(self.rows) and all(s in ("passed", "unavailable") for s in statuses)

    @property
    def summary(self) -> dict[str, int]:
        counts = {"rows": len(self.rows), "passed": 0, "failed": 0, "unavailable": 0}
        for r in self.rows:
            counts[r.status] += 1
        return counts

    @property
    def warnings(self) -> list[str]:
        """Sensitivity gaps and tolerance warnings, each once, named by model."""
        out = [f"{s.model}: {s.warning}" for s in self.sensitivity if s.warning]
        for r in self.rows:
            for w in r.guidance.warnings if r.guidance else []:
                out.append(f"{r.model} {r.format} {r.runtime} {r.device}: {w}")
        return out

    def __json__(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**plain, "passed": self.passed, "summary": self.summary, "warnings": self.warnings}


@dataclass
class VerifyOptions:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    batch_size: int = 64
    batches: int | None = None  # None: all
    devices: tuple[str, ...] = ("cpu",)
    results_dir: Path = Path("results")
    runtimes: tuple[str, ...] = DEFAULT_VERIFY_RUNTIMES
    inputs: tuple[str, ...] = DEFAULT_INPUT_SETS
    sensitivity: str = "quick"  # off | quick | full (see sensitivity.py); True/False read as quick/off

    def __post_init__(self) -> None:
        if isinstance(self.sensitivity, bool):
            self.sensitivity = "quick" if self.sensitivity else "off"
        if self.sensitivity not in MODES:
            raise DataError(f"unknown --sensitivity '{self.sensitivity}' (off, quick or full)")

    heatmaps: bool = True
