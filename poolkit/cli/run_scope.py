"""The run a command writes its results into: opened when the command asks for its output folder,
closed by the error boundary with the command's exit code, whatever ended it.

A folder the user names (`--out`, `--results`, `--png`) is used as given, and no run is made: the
user chose where the files go. Every folder left to its default is a new run under the results
root (`poolkit.common.runs`), so a command never writes over another's results.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from poolkit.cli.options import writable_folder

if TYPE_CHECKING:
    from poolkit.common.runs import Run

# poolkit.common.runs (filelock, the run records) is imported when a run opens: `poolkit --help` stays instant.
_OPEN: list[Run] = []  # the run this command opened (at most one per command)
_CLOSING = threading.Lock()  # the main thread and the interrupt watchdog may both close it


def results_folder(command: str, given: Path | None, option: str, inside: str = "") -> Path:
    """`given` (checked writable) when the user named a folder, else the command's run folder (or
    `inside` it), the run made on first use."""
    if given is not None:
        return writable_folder(given, option)
    folder = open_run(command).folder
    return folder / inside if inside else folder


def open_run(command: str) -> Run:
    """This command's run, made on first use (a command asking twice gets the same run)."""
    from poolkit.common.runs import RESULTS_ENV, results_root, start_run

    if _OPEN:
        return _OPEN[-1]
    root = results_root()
    writable_folder(root, f"results folder (${RESULTS_ENV} or ./results)")
    run = start_run(command, root)
    _OPEN.append(run)
    return run


def current_run() -> Run | None:
    return _OPEN[-1] if _OPEN else None


def close_run(exit_code: int, message: str | None = None) -> Run | None:
    """Write the open run's end; the run closed (None when the command opened none).

    Never raises: a record that cannot be written (disk full) must not hide the command's own
    outcome; it is said in one note instead."""
    with _CLOSING:
        run = _OPEN.pop() if _OPEN else None
    if run is None:
        return None
    from poolkit.common.runs import finish_run

    try:
        finish_run(run, exit_code, message)
    except Exception as exc:  # noqa: BLE001 - the command's outcome comes first
        from poolkit.cli.output import note

        note(f"the run record {run.folder / 'run.json'} could not be completed: {exc}")
    return run
