"""`poolkit sweep`: run every cell of the conformance grid in worker processes and record the outcome.

Each cell: build the layer and run it eagerly (PyTorch refusing it makes the cell `invalid`),
export it one way, load and run the artifact, compare with eager. Outcomes: ok, invalid,
export-failed, runtime-failed, shape-mismatch, value-mismatch, and, from the pool itself, timeout
and crashed. Workers are long-lived processes fed one cell at a time; a cell that hangs past its
timeout or kills its worker is recorded and the worker replaced, so one cell never stops a sweep.
Every result is appended to a journal as soon as it arrives, which is how a sweep resumes.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from poolkit.commands.sweep_grid import Cell

OUTCOMES = (
    "ok",
    "invalid",
    "export-failed",
    "runtime-failed",
    "shape-mismatch",
    "value-mismatch",
    "timeout",
    "crashed",
)
FAILURES = OUTCOMES[2:]
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

    @property
    def failed(self) -> bool:
        return self.outcome in FAILURES

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["id"] = self.cell.id
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> CellResult:
        return CellResult(
            Cell(**data["cell"]),
            data["outcome"],
            data.get("reason"),
            data.get("max_abs"),
            data.get("seconds", 0.0),
            data.get("versions"),
        )


def run_cell(cell: Cell) -> CellResult:
    """Run one cell in this process. Never raises: every problem is an outcome with its reason."""
    start = time.perf_counter()
    result = _run_cell(cell)
    result.seconds = round(time.perf_counter() - start, 3)
    return result


def _run_cell(cell: Cell) -> CellResult:
    import numpy as np

    from poolkit.commands.compare import Accumulator, fold_batch, mismatch_reason
    from poolkit.common.errors import one_line
    from poolkit.exporter.build import build_model
    from poolkit.exporter.export import example_input, export_artifact
    from poolkit.exporter.spec import parse_spec
    from poolkit.runtimes.base import run_batch
    from poolkit.runtimes.registry import open_runtime

    shape = (3, cell.height, cell.width)
    try:
        model = build_model(parse_spec(cell.spec), shape)
    except Exception as exc:  # noqa: BLE001 - PyTorch refusing the combination is data, not a crash
        return CellResult(cell, "invalid", one_line(exc).split(": ", 1)[-1])
    x = np.random.default_rng(0).random((SWEEP_BATCH, *shape), dtype=np.float32)
    with open_runtime("eager", model, "cpu") as eager:
        expected = run_batch(eager, x)

    with tempfile.TemporaryDirectory(prefix="poolkit-sweep-") as tmp:
        fmt, how = cell.export.split("-", 1)
        path = Path(tmp) / ("model.pt" if fmt == "torchscript" else "model.onnx")
        try:
            export_artifact(
                model,
                example_input(shape, 2, 0),
                path,
                fmt,
                method=how,
                exporter=how,
                opset=cell.opset,
                n_outputs=len(expected),
                metadata={"poolkit.spec": cell.spec},
            )
        except Exception as exc:  # noqa: BLE001
            return CellResult(cell, "export-failed", one_line(exc))
        try:
            with open_runtime(cell.runtime, path, cell.device, threads=1) as runtime:
                actual = run_batch(runtime, x)
        except Exception as exc:  # noqa: BLE001
            return CellResult(cell, "runtime-failed", one_line(exc))
    accumulators = [Accumulator(SWEEP_ATOL, SWEEP_RTOL)]
    structure = fold_batch(expected, actual, accumulators)
    if structure:
        return CellResult(cell, "shape-mismatch", structure)
    results = [acc.result for acc in accumulators]
    worst = max(c.max_abs for c in results)
    if all(results):
        return CellResult(cell, "ok", None, worst)
    kind, reason = mismatch_reason(results)
    return CellResult(cell, f"{kind}-mismatch", reason, worst if kind == "value" else None)


# ---------------------------------------------------------------- worker pool


def _worker(conn: Connection, cell_fn: Callable[[Cell], CellResult]) -> None:
    """A long-lived worker: imports torch once, then runs the cells it is sent."""
    from poolkit.common.capture import captured_output

    while True:
        try:
            cell = conn.recv()
        except EOFError:
            return
        if cell is None:
            return
        with captured_output():  # exporters and runtimes talk; the parent draws a progress bar
            result = cell_fn(cell)
        conn.send(result)


@dataclass
class _Slot:
    process: Any
    conn: Connection
    cell: Cell | None = None
    deadline: float = 0.0
    started: float = 0.0


def run_pool(
    cells: list[Cell],
    jobs: int,
    timeout_s: float,
    on_result: Callable[[CellResult], None],
    cell_fn: Callable[[Cell], CellResult] = run_cell,
) -> None:
    """Run cells on `jobs` workers; a hang (past `timeout_s`) or a dead worker becomes that cell's outcome."""
    ctx = mp.get_context("spawn")  # no fork after torch's threads have started
    pending = list(reversed(cells))

    def start() -> _Slot:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, cell_fn), daemon=True)
        proc.start()
        child.close()
        return _Slot(proc, parent)

    def feed(slot: _Slot) -> None:
        if pending:
            slot.cell = pending.pop()
            slot.started = time.monotonic()
            slot.deadline = slot.started + timeout_s
            slot.conn.send(slot.cell)
        else:
            slot.cell = None

    slots = [start() for _ in range(max(1, min(jobs, len(cells))))]
    try:
        for slot in slots:
            feed(slot)
        while any(s.cell is not None for s in slots):
            busy = [s for s in slots if s.cell is not None]
            wait_s = max(0.0, min(s.deadline for s in busy) - time.monotonic())
            ready = wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout=wait_s)
            now = time.monotonic()
            for i, slot in enumerate(slots):
                if slot.cell is None:
                    continue
                cell = slot.cell
                if slot.conn in ready:
                    try:
                        on_result(slot.conn.recv())
                        feed(slot)
                        continue
                    except (EOFError, OSError):
                        pass  # the worker died while answering: handled as a crash below
                if slot.conn in ready or slot.process.sentinel in ready or not slot.process.is_alive():
                    slot.process.join(1)
                    code = slot.process.exitcode
                    on_result(
                        CellResult(cell, "crashed", f"worker died (exit code {code})", seconds=now - slot.started)
                    )
                elif now >= slot.deadline:
                    slot.process.kill()
                    slot.process.join(5)
                    on_result(
                        CellResult(cell, "timeout", f"no answer within {timeout_s:g} s", seconds=now - slot.started)
                    )
                else:
                    continue
                slot.conn.close()
                slots[i] = start()
                feed(slots[i])
    finally:
        for slot in slots:
            with contextlib.suppress(OSError):  # a dead worker's pipe is already closed
                slot.conn.send(None)
        for slot in slots:
            slot.process.join(5)
            if slot.process.is_alive():
                slot.process.kill()


# ---------------------------------------------------------------- journal (resume)


class Journal:
    """Results as JSON lines, appended and flushed one by one: what an interrupted sweep resumes from."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, CellResult]:
        done: dict[str, CellResult] = {}
        if not self.path.exists():
            return done
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                result = CellResult.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interruption
            done[result.cell.id] = result
        return done

    def append(self, result: CellResult) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result.to_json(), default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def run_sweep(
    cells: list[Cell],
    journal: Journal,
    jobs: int,
    timeout_s: float,
    on_result: Callable[[CellResult], None] | None = None,
    cell_fn: Callable[[Cell], CellResult] = run_cell,
    versions: dict[str, str] | None = None,
) -> tuple[list[CellResult], int]:
    """Run the cells the journal lacks; returns all results in grid order and how many were resumed."""
    done = journal.read()
    todo = [c for c in cells if c.id not in done]

    def record(result: CellResult) -> None:
        result.versions = versions
        journal.append(result)
        done[result.cell.id] = result
        if on_result:
            on_result(result)

    if todo:
        run_pool(todo, jobs, timeout_s, record, cell_fn)
    return [done[c.id] for c in cells if c.id in done], len(cells) - len(todo)


@dataclass
class SweepSettings:
    """What `poolkit sweep` was asked for; recorded in the JSON report."""

    groups: tuple[str, ...]
    exports: tuple[str, ...]
    opsets: tuple[int, ...]
    input_sizes: tuple[tuple[int, int], ...]
    runtimes: tuple[str, ...]  # ONNX-reading runtimes (registry names)
    devices: tuple[str, ...]
    timeout_s: float = 120.0
    jobs: int | None = None


@dataclass
class SweepRun:
    results: list[CellResult]
    resumed: int
    json_path: Path
    markdown_path: Path


def run_sweep_command(
    settings: SweepSettings,
    out: Path,
    fresh: bool = False,
    on_total: Callable[[int, int], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
) -> SweepRun:
    """What `poolkit sweep` does: build the grid, resume from the journal, run, write JSON and Markdown."""
    from poolkit.commands.bench import usable_cores
    from poolkit.commands.envinfo import environment
    from poolkit.commands.sweep_grid import build_grid
    from poolkit.commands.sweep_report import write_json, write_markdown
    from poolkit.common.errors import PoolkitError

    cells = build_grid(
        settings.groups, settings.exports, settings.opsets, settings.input_sizes, settings.runtimes, settings.devices
    )
    journal = Journal(Path(f"{out}.jsonl"))
    if fresh and journal.path.exists():
        journal.path.unlink()
    env = environment()
    versions = {k: env[k] for k in ("torch", "onnx", "onnxruntime")}
    done = journal.read()
    stale = [r for r in done.values() if r.versions and r.versions != versions]
    if stale:
        raise PoolkitError(
            f"{journal.path} was written with {stale[0].versions}, this is {versions}: add --fresh to start over"
        )
    if on_total:
        on_total(len(cells), sum(c.id in done for c in cells))
    results, resumed = run_sweep(
        cells, journal, settings.jobs or usable_cores(), settings.timeout_s, on_result, versions=versions
    )
    report_settings = {
        "groups": list(settings.groups),
        "exports": list(settings.exports),
        "opsets": list(settings.opsets),
        "input_sizes": [list(s) for s in settings.input_sizes],
        "runtimes": list(settings.runtimes),
        "devices": list(settings.devices),
        "timeout_s": settings.timeout_s,
    }
    json_path = write_json(results, Path(f"{out}.json"), env, report_settings)
    return SweepRun(results, resumed, json_path, write_markdown(results, Path(f"{out}.md"), env))
