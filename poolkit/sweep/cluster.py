"""Run sweep cells on an existing dask.distributed cluster (`poolkit sweep --scheduler ADDRESS`).

Each Dask task hands its cell to a child worker process of its own (`sweep.worker`), kept per
Dask worker thread like the local pool's workers, so the same guarantees hold on the cluster: a
per-cell timeout (the child is killed), crash isolation (a cell that kills its child is `crashed`,
the Dask worker lives on), and Ctrl-C in a child is never a result. Results come back to this
process, which journals them exactly as the local pool does, so resume works the same.

Start a cluster (every machine needs the same poolkit, torch, onnx and onnxruntime):

    dask scheduler --host 127.0.0.1 --port 8786
    dask worker tcp://127.0.0.1:8786 --nthreads 1 --nworkers 2

A lost cluster is one line, never a wait forever: an address that accepts but is no Dask scheduler
(an HTTP server, a silent listener) is refused after `CONNECT_S`; a scheduler that goes away
mid-sweep, or a cluster left without workers for `NO_WORKERS_S`, stops the sweep (exit 1) with the
cells in flight unjournaled, so a resume runs them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from poolkit.common.errors import PoolkitError, one_line
from poolkit.common.machine import library_versions
from poolkit.sweep.grid import Cell
from poolkit.sweep.result import INTERRUPTED, CellResult
from poolkit.sweep.worker import run_with_deadline, start_worker

_local = threading.local()
CONNECT_S = 10.0  # the whole handshake: a listener that accepts and never answers is not waited on
NO_WORKERS_S = 30.0  # a cluster without workers this long is lost (Dask would wait for one forever)
POLL_S = 2.0  # how often the sweep looks at the cluster while it waits for results


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
    """A Client of the scheduler at `address`, within CONNECT_S whatever answers there (or nothing does)."""
    try:
        from distributed import Client
    except ImportError:
        raise PoolkitError("--scheduler needs dask.distributed: pip install 'poolkit[distributed]'") from None
    made: list[Any] = []
    failed: list[BaseException] = []

    def attempt() -> None:  # in a daemon thread: Dask's handshake has no deadline of its own
        try:
            made.append(Client(address, timeout=f"{CONNECT_S * 0.7:g}s"))  # its own reason first, if any
        except Exception as exc:  # noqa: BLE001 - reported below, in one line
            failed.append(exc)

    thread = threading.Thread(target=attempt, name="poolkit-dask-connect", daemon=True)
    with quiet_dask():
        thread.start()
        thread.join(CONNECT_S)
    if made:
        return made[0]
    why = one_line(failed[0]) if failed else f"no Dask handshake within {CONNECT_S:g} s (is it a Dask scheduler?)"
    raise PoolkitError(f"cannot reach the Dask scheduler at {address}: {why}")


@contextlib.contextmanager
def quiet_dask() -> Iterator[None]:
    """distributed logs its own tracebacks at ERROR when a connection breaks: poolkit says it in one line."""
    logger = logging.getLogger("distributed")
    saved = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(saved)


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
    client = connect(address)
    try:
        _check(client, address, versions)
        run = uuid.uuid4().hex[:8]
        futures = {
            client.submit(run_isolated, cell, timeout_s, cell_fn, key=f"poolkit-cell-{run}-{cell.id}", pure=False): cell
            for cell in cells
        }
        try:
            with quiet_dask():
                collect(client, futures, address, on_result)
        finally:
            with contextlib.suppress(Exception), quiet_dask():  # the scheduler may be gone
                client.cancel(list(futures))
    finally:
        with contextlib.suppress(Exception), quiet_dask():
            client.close()


def collect(
    client: Any,
    futures: dict[Any, Cell],
    address: str,
    on_result: Callable[[CellResult], None],
    wait: Callable[..., Any] | None = None,
) -> None:
    """Each result as it comes; a lost scheduler or a cluster without workers is one PoolkitError (exit 1),
    and the cells still in flight get no result (they stay unjournaled). `wait`: distributed's (tests fake it)."""
    if wait is None:
        from distributed import wait as dask_wait

        wait = dask_wait

    pending, no_workers_since = set(futures), None
    while pending:
        try:
            done, pending = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - FuturesCancelledError when the scheduler went away
            raise _lost(address, exc) from None
        for future in done:
            on_result(_result(future, futures[future], address))
        if done:
            continue
        if client.status not in ("running", "connecting"):
            raise PoolkitError(f"lost the Dask scheduler at {address} ({client.status})", exit_code=1)
        workers = _workers(client, address)
        no_workers_since = None if workers else (no_workers_since or time.monotonic())
        if no_workers_since is not None and time.monotonic() - no_workers_since > NO_WORKERS_S:
            raise PoolkitError(f"the Dask cluster at {address} has had no workers for {NO_WORKERS_S:g} s", exit_code=1)


def _workers(client: Any, address: str) -> int:
    try:
        return len(client.scheduler_info().get("workers", {}))
    except Exception as exc:  # noqa: BLE001 - the scheduler went away while we asked
        raise _lost(address, exc) from None


def _result(future: Any, cell: Cell, address: str) -> CellResult:
    """The cell's result; a task lost with its scheduler is the cluster's failure, never the cell's."""
    try:
        result: CellResult = future.result()
        return result
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - asyncio's CancelledError is no Exception
        # A broken connection (CommClosedError is an OSError) or a future cancelled with its scheduler is
        # the cluster's failure, never the cell's; any other error is the task's own.
        if isinstance(exc, OSError | TimeoutError) or "Cancelled" in type(exc).__name__:
            raise _lost(address, exc) from None
        return CellResult(cell, "crashed", f"dask task failed: {one_line(exc)[:200]}")


def _lost(address: str, exc: BaseException) -> PoolkitError:
    why = " ".join(one_line(exc).split())[:200]
    return PoolkitError(f"lost the Dask scheduler at {address}: {why}", exit_code=1)
