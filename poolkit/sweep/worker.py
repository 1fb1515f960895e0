"""A sweep worker: a child Python that imports torch once and runs the cells it is sent.

The child is a plain `python -m poolkit.sweep.worker` (not a multiprocessing child), so
it can be started from anywhere, a daemonic Dask worker included. Cells and results travel as
pickles over two pipes. A cell that hangs is killed with its worker; a worker that dies is a
`crashed` cell, except when it died of Ctrl-C (SIGINT, or exit 130 after KeyboardInterrupt):
that is an `interrupted` cell, which is never journaled, so a resumed sweep runs it again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from poolkit.sweep.grid import Cell
from poolkit.sweep.result import INTERRUPTED, CellResult

INTERRUPT_CODES = (130, -signal.SIGINT)


class WorkerProcess:
    """One child process; `conn` becomes readable when a result arrives or the child dies."""

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poolkit.sweep.worker", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.outbox = Connection(to_child_w, readable=False)
        self.conn = Connection(from_child_r, writable=False)

    def send(self, cell_fn: Callable[[Cell], CellResult], cell: Cell) -> None:
        self.outbox.send((cell_fn, cell))

    def dead_result(self, cell: Cell, seconds: float) -> CellResult:
        """What a cell whose worker died becomes: crashed, or interrupted after Ctrl-C."""
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if code in INTERRUPT_CODES:
            return CellResult(cell, INTERRUPTED, f"worker interrupted (exit code {code})", seconds=seconds)
        return CellResult(cell, "crashed", f"worker died (exit code {code})", seconds=seconds)

    def run(self, cell_fn: Callable[[Cell], CellResult], cell: Cell, timeout_s: float) -> CellResult:
        """Run one cell with a deadline (the Dask path; the local pool multiplexes `conn` itself)."""
        import time

        start = time.monotonic()
        try:
            self.send(cell_fn, cell)
            ready = self.conn.poll(timeout_s)
        except (OSError, EOFError):
            ready = True
        if not ready:
            self.kill()
            return CellResult(cell, "timeout", f"no answer within {timeout_s:g} s", seconds=time.monotonic() - start)
        try:
            result: CellResult = self.conn.recv()
            return result
        except (EOFError, OSError):
            return self.dead_result(cell, time.monotonic() - start)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        self.close()

    def stop(self) -> None:
        """Ask the child to finish; kill it if it does not within 5 s."""
        with contextlib.suppress(OSError):
            self.outbox.send(None)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.close()

    def close(self) -> None:
        for conn in (self.outbox, self.conn):
            with contextlib.suppress(OSError):
                conn.close()


def main(argv: list[str]) -> int:
    """The child's loop: receive (cell_fn, cell), run it with its output captured, send the result."""
    from poolkit.common.capture import captured_output

    # A process started in the background by a shell inherits SIGINT ignored: Ctrl-C must still stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    inbox = Connection(int(argv[1]), writable=False)
    outbox = Connection(int(argv[2]), readable=False)
    try:
        while True:
            try:
                message: Any = inbox.recv()
            except EOFError:
                return 0
            if message is None:
                return 0
            cell_fn, cell = message
            with captured_output():  # exporters and runtimes talk; the parent draws a progress bar
                result = cell_fn(cell)
            outbox.send(result)
    except KeyboardInterrupt:
        os._exit(130)  # Ctrl-C: the parent must not record this cell as crashed


if __name__ == "__main__":
    sys.exit(main(sys.argv))
