"""Run sweep cells on an existing dask.distributed cluster (`poolkit sweep --scheduler ADDRESS`).

Each Dask task hands its cell to a child worker process of its own (`sweep.worker`), kept per
Dask worker thread like the local pool's workers, so the same guarantees hold on the cluster: a
per-cell timeout (the child is killed), crash isolation (a cell that kills its child is `crashed`,
the Dask worker lives on), and Ctrl-C in a child is never a result. Results come back to this
process, which journals them exactly as the local pool does, so resume works the same.

Start a cluster (every machine needs the same poolkit, torch, onnx and onnxruntime):

    dask scheduler --host 127.0.0.1 --port 8786
    dask worker tcp://127.0.0.1:8786 --nthreads 1 --nworkers 2
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from poolkit.common.errors import PoolkitError, one_line
from poolkit.common.machine import library_versions
from poolkit.sweep.grid import Cell
from poolkit.sweep.result import INTERRUPTED, CellResult
from poolkit.sweep.worker import run_with_deadline, start_worker

_local = threading.local()


def run_isolated(cell: Cell, timeout_s: float, cell_fn: Callable[[Cell], CellResult]) -> CellResult:
    """The Dask task: run one cell in this thread's child worker, replacing it after a hang or crash."""
    worker = getattr(_local, "worker", None)
    if worker is None or not worker.alive:
        worker = _local.worker = start_worker()
    result = run_with_deadline(worker, cell_fn, cell, timeout_s)
    if result.outcome in ("timeout", "crashed", INTERRUPTED):
        worker.close()
        _local.worker = None
    return result


def worker_versions() -> dict[str, str]:
    return library_versions()


def connect(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise PoolkitError("--scheduler needs dask.distributed: pip install 'poolkit[distributed]'") from None
    try:
        return Client(address, timeout="5s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise PoolkitError(f"cannot reach the Dask scheduler at {address}: {one_line(exc)}") from None


def check_cluster(address: str, versions: dict[str, str] | None) -> None:
    """Fail early, before any progress is drawn: the scheduler answers, has workers, same versions."""
    client = connect(address)
    try:
        _check(client, address, versions)
    finally:
        client.close()


def _check(client: Any, address: str, versions: dict[str, str] | None) -> None:
    try:
        if not client.scheduler_info().get("workers"):
            client.wait_for_workers(1, timeout=30)
    except TimeoutError:
        raise PoolkitError(f"the Dask scheduler at {address} has no workers (waited 30 s)") from None
    if versions:
        for worker, theirs in client.run(worker_versions).items():
            if theirs != versions:
                raise PoolkitError(
                    f"Dask worker {worker} has {theirs}, this is {versions}: every worker must run the same versions"
                )


def run_on_dask(
    cells: list[Cell],
    address: str,
    timeout_s: float,
    on_result: Callable[[CellResult], None],
    cell_fn: Callable[[Cell], CellResult],
    versions: dict[str, str] | None,
) -> None:
    """Submit every cell to the cluster at `address`; call `on_result` as each one finishes."""
    from distributed import as_completed

    client = connect(address)
    try:
        _check(client, address, versions)
        run = uuid.uuid4().hex[:8]
        futures = {
            client.submit(run_isolated, cell, timeout_s, cell_fn, key=f"poolkit-cell-{run}-{cell.id}", pure=False): cell
            for cell in cells
        }
        try:
            for future in as_completed(list(futures)):
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - the Dask worker itself died, or the task was lost
                    result = CellResult(futures[future], "crashed", f"dask task failed: {one_line(exc)[:200]}")
                on_result(result)
        finally:
            client.cancel(list(futures))
    finally:
        client.close()
