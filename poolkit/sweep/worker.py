"""A sweep worker: a child Python (`services.workers.SubprocessWorker`) that imports torch once and
runs the cells it is sent.

Cells and results travel as pickles over the worker's pipes. A cell that hangs is killed with its
worker; a worker that dies is a `crashed` cell, except when it died of Ctrl-C (the worker base's
interrupt codes): that is an `interrupted` cell, which is never journaled, so a resumed sweep runs
it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from poolkit.common.capture import captured_output
from poolkit.services.workers import ServiceSpec, SubprocessWorker, WorkerDied, interrupted
from poolkit.sweep.grid import Cell
from poolkit.sweep.result import INTERRUPTED, CellResult

CellFn = Callable[[Cell], CellResult]


class CellService:
    """The child's side: run `cell_fn(cell)` with its output captured (the parent draws a progress bar)."""

    def __call__(self, message: Any) -> CellResult:
        cell_fn, cell = message
        with captured_output():  # exporters and runtimes talk
            result: CellResult = cell_fn(cell)
        return result

    def close(self) -> None:
        """Nothing is held between cells."""


def start_worker() -> SubprocessWorker:
    return SubprocessWorker(ServiceSpec(CellService), "sweep")


def dead_result(worker: SubprocessWorker, cell: Cell, seconds: float) -> CellResult:
    """What a cell whose worker died becomes: crashed, or interrupted after Ctrl-C."""
    code = worker.exit_code()
    if interrupted(code):
        return CellResult(cell, INTERRUPTED, f"worker interrupted (exit code {code})", seconds=seconds)
    return CellResult(cell, "crashed", f"worker died (exit code {code})", seconds=seconds)


def run_with_deadline(worker: SubprocessWorker, cell_fn: CellFn, cell: Cell, timeout_s: float) -> CellResult:
    """Run one cell with a deadline (the Dask path; the local pool multiplexes `worker.conn` itself)."""
    start = time.monotonic()
    worker.send((cell_fn, cell))
    if not worker.poll(timeout_s):
        worker.kill()
        return CellResult(cell, "timeout", f"no answer within {timeout_s:g} s", seconds=time.monotonic() - start)
    try:
        result: CellResult = worker.recv()
    except WorkerDied:
        return dead_result(worker, cell, time.monotonic() - start)
    return result
