"""`poolkit sweep`: run every cell of the conformance grid in worker processes and record the outcome.

Each cell (see `cell.py`): build the layer and run it eagerly, export it one way, load and run
the artifact, compare with eager; failures get a blame and a bundle. Workers are long-lived child
processes (`worker.py`, on the worker base in `services/workers.py`) fed one cell at a time,
locally or on a Dask cluster (`cluster.py`); a
cell that hangs past its timeout or kills its worker is recorded and the worker replaced, so one
cell never stops a sweep. Every result is appended to a journal (`journal.py`) as soon as it arrives,
which is how a sweep resumes; a worker stopped by Ctrl-C is not a result and is run again on resume.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from poolkit.common.errors import PoolkitError
from poolkit.common.machine import library_versions, usable_cores
from poolkit.exporter.formats.onnx import check_opset
from poolkit.exporter.formats.registry import sweep_path
from poolkit.services.workers import SubprocessWorker, WorkerDied
from poolkit.sweep.cell import run_cell
from poolkit.sweep.cluster import check_cluster, run_on_dask
from poolkit.sweep.grid import Cell, build_grid
from poolkit.sweep.journal import Journal
from poolkit.sweep.opsets import newest_opsets
from poolkit.sweep.result import INTERRUPTED, CellResult
from poolkit.sweep.worker import CellFn, dead_result, start_worker

# ---------------------------------------------------------------- worker pool


@dataclass
class _Slot:
    worker: SubprocessWorker
    cell: Cell | None = None
    deadline: float = 0.0
    started: float = 0.0


def run_pool(
    cells: list[Cell],
    jobs: int,
    timeout_s: float,
    on_result: Callable[[CellResult], None],
    cell_fn: CellFn = run_cell,
) -> None:
    """Run cells on `jobs` workers; a hang (past `timeout_s`) or a dead worker becomes that cell's outcome."""
    pending = list(reversed(cells))

    def feed(slot: _Slot) -> None:
        if pending:
            slot.cell = pending.pop()
            slot.started = time.monotonic()
            slot.deadline = slot.started + timeout_s
            slot.worker.send((cell_fn, slot.cell))  # a dead worker's pipe reads EOF: handled as a crash
        else:
            slot.cell = None

    slots = [_Slot(start_worker()) for _ in range(max(1, min(jobs, len(cells))))]
    try:
        for slot in slots:
            feed(slot)
        while any(s.cell is not None for s in slots):
            busy = [s for s in slots if s.cell is not None]
            wait_s = max(0.0, min(s.deadline for s in busy) - time.monotonic())
            ready = wait([s.worker.conn for s in busy], timeout=wait_s)
            now = time.monotonic()
            for slot in busy:
                cell = slot.cell
                assert cell is not None
                if slot.worker.conn in ready:
                    try:
                        result = slot.worker.recv()
                    except WorkerDied:
                        on_result(dead_result(slot.worker, cell, now - slot.started))
                    else:
                        on_result(result)
                        feed(slot)
                        continue
                elif now >= slot.deadline:
                    slot.worker.kill()
                    on_result(
                        CellResult(cell, "timeout", f"no answer within {timeout_s:g} s", seconds=now - slot.started)
                    )
                else:
                    continue
                slot.worker.close()
                slot.worker = start_worker()
                feed(slot)
    finally:
        for slot in slots:
            slot.worker.stop()


def run_sweep(
    cells: list[Cell],
    journal: Journal,
    jobs: int,
    timeout_s: float,
    on_result: Callable[[CellResult], None] | None = None,
    cell_fn: CellFn = run_cell,
    versions: dict[str, str] | None = None,
    scheduler: str | None = None,
) -> tuple[list[CellResult], int]:
    """Run the cells the journal lacks (on `jobs` local workers, or on the Dask cluster at
    `scheduler`); returns all results in grid order and how many were resumed. Interrupted cells
    are neither journaled nor returned."""
    done = journal.read()
    todo = [c for c in cells if c.id not in done]

    def record(result: CellResult) -> None:
        if result.outcome == INTERRUPTED:
            return
        if result.failed and not result.blame:
            result.blame = "unclear"  # a timeout or a crash: nothing ran to ask a second opinion of
        result.versions = versions
        journal.append(result)
        done[result.cell.id] = result
        if on_result:
            on_result(result)

    if todo and scheduler:
        run_on_dask(todo, scheduler, timeout_s, record, cell_fn, versions)
    elif todo:
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
    newest: bool = False  # add, per ONNX exporter, the newest opset it and ONNX Runtime accept (measured)
    scheduler: str | None = None  # a dask.distributed scheduler address; None: local worker processes
    bundles: bool = True  # write a failure bundle per failing cell next to the report


@dataclass
class SweepRun:
    results: list[CellResult]
    resumed: int
    json_path: Path
    markdown_path: Path
    newest: dict[str, int] = field(default_factory=dict)
    skipped_lines: int = 0


def run_sweep_command(
    settings: SweepSettings,
    out: Path,
    fresh: bool = False,
    on_total: Callable[[int, int], None] | None = None,
    on_result: Callable[[CellResult], None] | None = None,
) -> SweepRun:
    """What `poolkit sweep` does: build the grid, resume from the journal, run, write JSON and Markdown."""
    # Lazy on purpose: every sweep worker process imports this package on start (`python -m
    # poolkit.sweep.worker`), and must start in a fraction of a second, not pay for torch
    # (environment) and onnx/onnxruntime (report, via blame) before its first cell.
    from poolkit.services.environment import environment
    from poolkit.sweep.report import relative_bundles, write_json, write_markdown

    onnx_exports = tuple(e for e in settings.exports if sweep_path(e)[0].uses_opset)
    if onnx_exports:
        check_opset(settings.opsets, "bad --opsets")
    newest = newest_opsets(onnx_exports, max(settings.opsets, default=0)) if settings.newest else {}
    cells = build_grid(
        settings.groups,
        settings.exports,
        settings.opsets,
        settings.input_sizes,
        settings.runtimes,
        settings.devices,
        extra_opsets={e: n for e, n in newest.items() if n},
    )
    journal = Journal(Path(f"{out}.jsonl"))
    bundles = Path(f"{out}-bundles")
    if fresh:
        journal.path.unlink(missing_ok=True)
        shutil.rmtree(bundles, ignore_errors=True)
    env = environment()
    versions = library_versions()
    done = journal.read()
    stale = [r for r in done.values() if r.versions and r.versions != versions]
    if stale:
        raise PoolkitError(
            f"{journal.path} was written with {stale[0].versions}, this is {versions}: add --fresh to start over"
        )
    if settings.scheduler:
        check_cluster(settings.scheduler, versions)
    if on_total:
        on_total(len(cells), sum(c.id in done for c in cells))
    cell_fn = functools.partial(run_cell, bundles=str(bundles.resolve())) if settings.bundles else run_cell
    results, resumed = run_sweep(
        cells,
        journal,
        settings.jobs or usable_cores(),
        settings.timeout_s,
        on_result,
        cell_fn=cell_fn,
        versions=versions,
        scheduler=settings.scheduler,
    )
    report_settings = {
        "groups": list(settings.groups),
        "exports": list(settings.exports),
        "opsets": list(settings.opsets),
        "newest_opsets": newest,
        "input_sizes": [list(s) for s in settings.input_sizes],
        "runtimes": list(settings.runtimes),
        "devices": list(settings.devices),
        "timeout_s": settings.timeout_s,
        "scheduler": settings.scheduler,
    }
    relative_bundles(results, Path(f"{out}.json").parent)
    json_path = write_json(results, Path(f"{out}.json"), env, report_settings)
    md_path = write_markdown(results, Path(f"{out}.md"), env, report_settings)
    return SweepRun(results, resumed, json_path, md_path, newest, journal.skipped)
