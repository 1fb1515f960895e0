"""What one sweep cell can end as: its outcomes and the `CellResult` every part of the sweep passes around.

Kept apart from `cell` (which runs a cell) so the bundle writer, the journal, the worker pool and
the report can all name a result without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from poolkit.sweep.grid import Cell

OUTCOMES = (
    "ok",
    "invalid",
    "export-failed",
    "runtime-failed",
    "shape-mismatch",
    "value-mismatch",
    "declared-shape-mismatch",
    "timeout",
    "crashed",
)
FAILURES = OUTCOMES[2:]
INTERRUPTED = "interrupted"  # a worker stopped by Ctrl-C: not a measurement, never journaled
SWEEP_ATOL = 1e-5
SWEEP_RTOL = 1e-5
SWEEP_BATCH = 3  # not the export example's batch of 2: the dynamic batch axis is exercised too


@dataclass
class CellResult:
    cell: Cell
    outcome: str
    reason: str | None = None
    max_abs: float | None = None
    seconds: float = 0.0
    versions: dict[str, str] | None = None
    opset_used: int | None = None  # the opset in the file (the dynamo exporter may convert)
    blame: str | None = None  # exporter | runtime | optimiser | unclear (failures only)
    votes: dict[str, str] | None = None  # what each second opinion said
    bundle: str | None = None  # folder with model.onnx, test data and repro.py
    export_dims: dict[str, str] | None = None  # torch.export paths: how each open axis was declared

    @property
    def failed(self) -> bool:
        return self.outcome in FAILURES

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["id"] = self.cell.id
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> CellResult:
        """A journaled result; a TypeError or ValueError for a record whose fields have the wrong types
        (a stray edit must not reach the report, or crash it, as a measurement)."""
        result = CellResult(
            Cell(**data["cell"]),
            data["outcome"],
            data.get("reason"),
            data.get("max_abs"),
            data.get("seconds", 0.0),
            data.get("versions"),
            data.get("opset_used"),
            data.get("blame"),
            data.get("votes"),
            data.get("bundle"),
            data.get("export_dims"),
        )
        result.check_types()
        return result

    def check_types(self) -> None:
        def number(value: object, kinds: tuple[type, ...] = (int, float)) -> bool:
            return type(value) in kinds

        def texts(value: object) -> bool:
            return value is None or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))

        c = self.cell
        fields_ok = (
            all(isinstance(v, str) for v in (c.group, c.spec, c.export, c.runtime, c.device, self.outcome))
            and all(number(v, (int,)) for v in (c.height, c.width, c.depth))
            and (c.opset is None or number(c.opset, (int,)))
            and all(v is None or isinstance(v, str) for v in (self.reason, self.blame, self.bundle))
            and (self.max_abs is None or number(self.max_abs))
            and number(self.seconds)
            and (self.opset_used is None or number(self.opset_used, (int,)))
            and texts(self.versions)
            and texts(self.votes)
            and texts(self.export_dims)
        )
        if not fields_ok:
            raise TypeError("a journal record with fields of the wrong type")
