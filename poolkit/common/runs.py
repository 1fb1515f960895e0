"""Runs: every command that writes results writes them into a folder of its own, never over another's.

    results/                               the results root ($POOLKIT_RESULTS, else ./results)
      README.md                            tracked; everything else here is ignored by git
      runs/<UTC start>-<command>-<host>/   one run: its JSON, CSV, pictures, and run.json
      latest.json                          {command: run id}, the newest finished run of each command
      latest/<command>                     a link to that run's folder, for people (best effort)
      .runs.lock                           taken while latest.json, latest/ or runs/ change
      report.html                          `poolkit report`'s page (a view, rebuilt each time)

A run's folder is made with `mkdir` (atomic: two commands started in the same second get two
folders, the second with a `-2` suffix). Its record, `run.json` (`run_record.py`), is written when
it starts (status `running`) and again when it ends, with the exit code, whatever the end (a failed
check, an error, Ctrl-C, SIGTERM); each write is atomic, so a reader sees one whole record or the
other. A run killed outright (SIGKILL, power) keeps `running`; readers on the same host see its
process gone and call it `killed`. Only a run that finished (exit 0 or 1: its results written)
becomes its command's latest (`run_index.py`). Anchors: pytest-benchmark's autosave folders,
asv's results per machine.

The public API, for every command's CLI: `start_run(command)` -> `Run` (write into `run.folder`),
then `finish_run(run, exit_code, message)`; `find_run`, `list_runs`, `latest_runs`, `prune_runs`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from poolkit.common.run_index import find_run, interrupted_run, latest_runs, list_runs, mark_latest, prune_runs
from poolkit.common.run_record import (
    FINISHED,
    RECORD_SCHEMA,
    RUNS,
    STATUS_OF_EXIT,
    Run,
    files_of,
    host_name,
    iso,
    machine,
    now,
    parse_iso,
    slug,
    versions,
)

RESULTS_ENV = "POOLKIT_RESULTS"  # the results root; tests point it at a temporary folder
__all__ = [
    "Run", "find_run", "finish_run", "interrupted_run", "latest_runs", "list_runs", "prune_runs", "results_root",
    "start_run",
]  # fmt: skip


def results_root(default: Path = Path("results")) -> Path:
    """Where runs go: $POOLKIT_RESULTS when set (and not empty), else `default` (./results)."""
    value = os.environ.get(RESULTS_ENV, "").strip()
    return Path(value) if value else Path(default)


def start_run(command: str, root: Path | None = None, argv: list[str] | None = None) -> Run:
    """Make a new run folder under `root`/runs and write its record (status `running`).

    The folder is new, always: `mkdir` refuses one that exists, and the next suffix is tried.
    """
    root = Path(root) if root is not None else results_root()
    started = now()
    base = f"{started:%Y%m%dT%H%M%SZ}-{slug(command, 30)}-{host_name()}"
    runs = root / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = runs / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - a thousand runs of one command in one second
        raise FileExistsError(f"{runs}/{base}: too many runs started in one second")
    where = machine()
    run = Run(
        folder,
        {
            "schema": RECORD_SCHEMA,
            "id": folder.name,
            "command": command,
            "argv": list(sys.argv if argv is None else argv),
            "cwd": os.getcwd(),
            "host": where["host"],
            "pid": os.getpid(),
            "machine": where,
            "versions": versions(),
            "started": iso(started),
            "ended": None,
            "seconds": None,
            "exit_code": None,
            "status": "running",
            "message": None,
            "files": [],
        },
    )
    run.write()
    return run


def finish_run(run: Run, exit_code: int, message: str | None = None) -> Run:
    """Write the run's end (exit code, status, the files it wrote) and, when it finished (exit 0 or
    1), point the latest index at it. Called once, whatever ended the command."""
    ended = now()
    started = parse_iso(run.started) or ended
    run.record.update(
        ended=iso(ended),
        seconds=round((ended - started).total_seconds(), 3),
        exit_code=exit_code,
        status=STATUS_OF_EXIT.get(exit_code, "error"),
        message=message,
        files=files_of(run.folder),
    )
    run.write()
    if run.record["status"] in FINISHED:
        mark_latest(run)
    return run
