"""Cell functions for the sweep's pool tests; module level so spawned workers can import them."""

from __future__ import annotations

import os
import signal
import time

from poolkit.sweep.grid import Cell
from poolkit.sweep.result import CellResult


def hang_crash_or_pass(cell: Cell) -> CellResult:
    if cell.spec == "tanh":
        time.sleep(120)  # hangs: the pool must time it out
    if cell.spec == "sigmoid":
        os._exit(3)  # dies: the pool must record it and replace the worker
    return CellResult(cell, "ok", "ran", 0.0)


def must_not_run(cell: Cell) -> CellResult:
    return CellResult(cell, "crashed", "this cell was run again instead of resumed")


def interrupt_or_pass(cell: Cell) -> CellResult:
    if cell.spec == "tanh":
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C reaching the worker before the parent
        time.sleep(30)
    return CellResult(cell, "ok", "ran", 0.0)
