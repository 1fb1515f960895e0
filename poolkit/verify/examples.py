"""`poolkit verify --examples`: the tutorials' worked examples, with their exact numbers, through every artifact.

The tutorials draw a 5x5 single-channel input through `MaxPool2d(3, ceil_mode=True)` ([[2,3],[5,1]])
and `ceil_mode=False` ([[2]]), a 2x2 input through ReLU and Sigmoid, and a 4x4 one through
`MaxPool2d(2, 2)` ([[6,4],[7,9]]), which MaxUnpool2d(2, 2) puts back in place. Every model of the manifest whose spec is one of these layers
runs its example on every runtime and device asked for (eager included: it proves the module
itself). The drawing is copied to every channel the artifact has; every channel must give the
tutorials' numbers exactly (Sigmoid to the tutorials' 4 decimals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolkit.common.errors import DataError, PoolkitError, one_line
from poolkit.exporter.spec import parse_spec
from poolkit.runtimes.base import run_batch
from poolkit.runtimes.registry import DEFAULT_RUNTIMES, cuda_problem, require_cuda, runtime_class
from poolkit.services.artifacts import open_artifacts
from poolkit.verify.inputs import FIVE_BY_FIVE, FOUR_BY_FOUR, TWO_BY_TWO


@dataclass(frozen=True)
class WorkedExample:
    title: str
    spec: str
    drawing: Sequence[Sequence[float]]
    expected: Sequence[Sequence[float]]
    decimals: int | None = None  # compare after rounding, as the tutorial prints it

    @property
    def canonical_spec(self) -> str:
        return str(parse_spec(self.spec))


WORKED_EXAMPLES = (
    WorkedExample("5x5 through MaxPool2d(3, ceil_mode=True)", "maxpool(k=3,ceil=true)", FIVE_BY_FIVE, [[2, 3], [5, 1]]),
    WorkedExample("5x5 through MaxPool2d(3, ceil_mode=False)", "maxpool(k=3)", FIVE_BY_FIVE, [[2]]),
    WorkedExample("2x2 through ReLU", "relu", TWO_BY_TWO, [[1, 0], [0, 3]]),
    WorkedExample("2x2 through Sigmoid", "sigmoid", TWO_BY_TWO, [[0.7311, 0.3775], [0.2689, 0.9526]], decimals=4),
    WorkedExample("4x4 through MaxPool2d(2, 2)", "maxpool(k=2,s=2)", FOUR_BY_FOUR, [[6, 4], [7, 9]]),
    # The MaxPool2d post: return_indices is "useful for torch.nn.MaxUnpool2d later". 6, 4, 7 and 9 go
    # back where the pool found them, zeros elsewhere.
    WorkedExample(
        "4x4 through MaxPool2d(2, 2, return_indices=True) → MaxUnpool2d(2, 2)",
        "maxpool(k=2,s=2,indices=true) | maxunpool(k=2,s=2)",
        FOUR_BY_FOUR,
        [[0, 0, 0, 4], [0, 6, 0, 0], [7, 0, 0, 0], [0, 0, 9, 0]],
    ),
)


@dataclass
class ExampleRow:
    example: str
    model: str
    format: str
    runtime: str
    device: str
    status: str  # passed | failed | unavailable
    expected: Sequence[Sequence[float]]
    got: list[list[float | int]] | None = None  # channel 0; every channel is checked
    reason: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class ExamplesReport:
    models_dir: str
    rows: list[ExampleRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed or r.status == "unavailable" for r in self.rows)


def run_examples(
    models_dir: Path, names: list[str] | None, runtimes: tuple[str, ...], devices: tuple[str, ...]
) -> ExamplesReport:
    """Every worked example through every matching model's artifacts; a DataError when none matches."""
    if devices == ("cuda",):  # only CUDA was asked for: refuse, as verify does, rather than report it unavailable
        require_cuda(list(runtimes or DEFAULT_RUNTIMES))
    report = ExamplesReport(str(models_dir))
    for model in open_artifacts(Path(models_dir), names):
        reference = model.reference
        if reference is None:
            continue
        asked = runtimes or model.readers()  # none named: the runtimes that read the artifacts it has
        plan = [("eager", "cpu"), *[(r, d) for r in asked for d in devices if (r, d) != ("eager", "cpu")]]
        for example in (e for e in WORKED_EXAMPLES if e.canonical_spec == reference.spec):
            for runtime, device in plan:
                report.rows.append(_run_one(model, example, runtime, device, np))
    if not report.rows:
        known = "; ".join(f"{e.spec} ({e.title})" for e in WORKED_EXAMPLES)
        raise DataError(f"no model in {models_dir}/manifest.json is one of the tutorials' worked examples: {known}")
    return report


def _plain(value: float, decimals: int | None) -> float | int:
    """2.0 -> 2 and float32's 0.7311000227 -> 0.7311: the numbers as the tutorials print them."""
    value = round(value, decimals) if decimals is not None else value
    return int(value) if float(value).is_integer() else value


def _run_one(model: Any, example: WorkedExample, runtime: str, device: str, np: Any) -> ExampleRow:
    cls = runtime_class(runtime)
    record = model.record_for(runtime)
    row = ExampleRow(example.title, model.name, record.format if record and cls.reads != "module" else cls.reads,
                     cls.name, device, "failed", example.expected)  # fmt: skip
    if device == "cuda":
        problem = cuda_problem([runtime])
        if problem:
            row.status, row.reason = "unavailable", problem
            return row
    row.reason = model.problem(runtime)
    if row.reason or record is None:
        return row
    drawing = np.asarray(example.drawing, dtype=np.float32)
    channels = record.sample_shape[0] if len(record.sample_shape) == 3 else 1
    if cls.reads == "onnx" and not record.dynamic_spatial and tuple(record.sample_shape[1:]) != drawing.shape:
        shape = "x".join(map(str, record.sample_shape))
        row.reason = (
            f"the ONNX file is fixed to {shape}: re-export it with --dynamic-shape to run the tutorials' examples"
        )
        return row
    x = np.ascontiguousarray(np.broadcast_to(drawing, (1, channels, *drawing.shape)))
    try:
        with model.open(runtime, device) as rt:
            (out,) = run_batch(rt, x)[:1]
    except PoolkitError as exc:
        row.reason = str(exc)
        return row
    except Exception as exc:  # noqa: BLE001 - a runtime that cannot run the file is a failed row
        row.reason = f"{runtime} failed to run: {one_line(exc)}"
        return row
    got = np.round(out, example.decimals) if example.decimals is not None else out
    want = np.asarray(example.expected, dtype=np.float32)
    first = got[0, 0] if got.ndim == 4 else got
    row.got = [[_plain(v, example.decimals) for v in line] for line in np.atleast_2d(first).tolist()]
    if got.shape != (1, channels, *want.shape):
        row.reason = f"output shape {tuple(got.shape)}, the tutorials give {(1, channels, *want.shape)}"
    elif not all(np.array_equal(got[0, c], want) for c in range(channels)):
        row.reason = f"got {row.got}, the tutorials give {example.expected}"
    else:
        row.status, row.reason = "passed", None
    return row
