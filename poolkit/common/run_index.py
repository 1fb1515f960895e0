"""The runs under a results root: which is the newest of each command, finding one by name, pruning.

`latest.json` is the index; the run records are the truth it is rebuilt from when it is missing,
unreadable or names a folder that is gone. It changes only under `.runs.lock` (filelock), and an
entry only ever moves to a newer run (by start time), so two commands finishing at once, or a long
run finishing after a shorter one started later, never leave it pointing at the older run.
Pruning takes the same lock, keeps the newest runs of each command, and never removes the latest
run of a command, a run still in progress, or a folder without a readable record (not poolkit's).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from poolkit.common.errors import DataError, PoolkitError
from poolkit.common.files import write_json_atomic
from poolkit.common.run_record import FINISHED, RECORD, RUNS, Run, read_run

INDEX = "latest.json"
LATEST_LINKS = "latest"
LOCK = ".runs.lock"
LOCK_TIMEOUT_S = 60.0


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """The results root's lock: one writer of the index (or pruner) at a time, across processes."""
    Path(root).mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(Path(root) / LOCK), timeout=LOCK_TIMEOUT_S)
    try:
        with lock:
            yield
    except TimeoutError:
        raise PoolkitError(f"{Path(root) / LOCK} stayed locked for {LOCK_TIMEOUT_S:g} s (another poolkit?)") from None


def list_runs(root: Path, command: str | None = None) -> list[Run]:
    """Every run folder under `root`/runs (oldest first), or those of one command."""
    runs_dir = Path(root) / RUNS
    if not runs_dir.is_dir():
        return []
    found = [read_run(p) for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    found = [r for r in found if command is None or r.command == command]
    return sorted(found, key=lambda r: r.sort_key)


def _newer(a: Run, b: Run) -> bool:
    return a.sort_key > b.sort_key


def latest_runs(root: Path) -> dict[str, Run]:
    """The newest finished run of each command: from the index, checked against the records."""
    root = Path(root)
    index = _read_index(root)
    latest: dict[str, Run] = {}
    for command, run_id in index.items():
        run = read_run(root / RUNS / run_id)
        if run.command == command and run.status in FINISHED:
            latest[command] = run
    for run in list_runs(root):  # the records are the truth: a run the index missed still counts
        current = latest.get(run.command)
        if run.status in FINISHED and (current is None or _newer(run, current)):
            latest[run.command] = run
    return latest


def _read_index(root: Path) -> dict[str, str]:
    try:
        data = json.loads((Path(root) / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    latest = data.get("latest") if isinstance(data, dict) else None
    if not isinstance(latest, dict):
        return {}
    return {k: v for k, v in latest.items() if isinstance(k, str) and isinstance(v, str) and "/" not in v and v}


def mark_latest(run: Run) -> None:
    """Point the index (and the `latest/<command>` link) at `run` unless a newer run of its command is there."""
    root = run.folder.parent.parent
    with locked(root):
        latest = latest_runs(root)
        current = latest.get(run.command)
        if current is not None and current.id != run.id and _newer(current, run):
            return
        latest[run.command] = run
        _write_index(root, latest)


def _write_index(root: Path, latest: dict[str, Run]) -> None:
    """latest.json, then the links; called under the lock."""
    index = {"schema": 1, "latest": {c: r.id for c, r in sorted(latest.items())}}
    write_json_atomic(Path(root) / INDEX, index)
    links = Path(root) / LATEST_LINKS
    with contextlib.suppress(OSError, NotImplementedError):  # links are for people; the index is the record
        links.mkdir(exist_ok=True)
        for command, run in latest.items():
            tmp = links / f".{command}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(Path("..") / RUNS / run.id, target_is_directory=True)
            os.replace(tmp, links / command)


def interrupted_run(root: Path, command: str, besides: str = "") -> Run | None:
    """The newest run of `command` (other than `besides`, the one starting) when it did not finish:
    stopped, failed with an error or killed, never one still running. What a sweep resumes from."""
    done = [r for r in list_runs(root, command) if r.id != besides and r.status != "running"]
    return done[-1] if done and done[-1].status not in FINISHED else None


def find_run(root: Path, name: str) -> Run:
    """A run by what a user types: a folder path, an id, a unique start of an id, a command name
    (its latest run) or `command~N` (the Nth run of that command before its latest)."""
    root = Path(root)
    path = Path(name)
    if (path / RECORD).is_file() or (path.is_dir() and (os.sep in name or name.startswith("."))):
        return read_run(path)
    runs = list_runs(root)
    exact = [r for r in runs if r.id == name]
    if exact:
        return exact[0]
    command, _, back = name.partition("~")
    finished = [r for r in runs if r.command == command and r.status in FINISHED]
    if finished and (not back or back.isdigit()):
        steps = int(back or 0)
        if steps >= len(finished):
            raise DataError(f"run '{name}': {command} has {len(finished)} finished run(s) in {root / RUNS}")
        latest = latest_runs(root)[command]
        ordered = [r for r in finished if not _newer(r, latest)]
        return ordered[-1 - steps]
    starts = [r for r in runs if r.id.startswith(name)] if name else []
    if len(starts) == 1:
        return starts[0]
    if len(starts) > 1:
        shown = ", ".join(r.id for r in starts[:4])
        raise DataError(f"run '{name}' is ambiguous in {root / RUNS}: {shown}{', …' if len(starts) > 4 else ''}")
    known = sorted({r.command for r in runs if r.command})
    hint = f" (commands with runs: {', '.join(known)})" if known else " (no runs yet)"
    raise DataError(f"no run '{name}' in {root / RUNS}: give a run id, its start, a command or a folder{hint}")


def prune_runs(root: Path, keep: int, command: str | None = None, dry_run: bool = False) -> list[Run]:
    """Remove all but the `keep` newest runs of each command (or of `command`); returns those removed.

    Never removed: the latest run of a command, a run still in progress (its process alive), a folder
    whose record cannot be read. A folder is renamed aside before it is deleted, so an interrupted
    prune never leaves half a run that looks whole.
    """
    if keep < 1:
        raise PoolkitError(f"bad --keep {keep}: keep at least 1 run of each command")
    root = Path(root)
    removed: list[Run] = []
    if not (root / RUNS).is_dir():  # nothing to prune: no folder is made for the lock
        return removed
    with locked(root):
        latest = {r.id for r in latest_runs(root).values()}
        by_command: dict[str, list[Run]] = {}
        for run in list_runs(root, command):
            if run.status not in ("unreadable", "running"):
                by_command.setdefault(run.command, []).append(run)
        for runs in by_command.values():
            for run in runs[: max(len(runs) - keep, 0)]:
                if run.id not in latest:
                    removed.append(run)
        if not dry_run:
            for run in removed:
                trash = run.folder.with_name(f".pruned-{run.id}")
                os.replace(run.folder, trash)
                shutil.rmtree(trash, ignore_errors=True)
    return removed


def describe(run: Run) -> dict[str, Any]:
    """A run as `poolkit runs list --json` shows it."""
    record = run.record
    return {
        "id": run.id,
        "command": run.command,
        "status": run.status,
        "exit_code": record.get("exit_code"),
        "started": record.get("started"),
        "seconds": record.get("seconds"),
        "machine": run.machine_name,
        "host": record.get("host"),
        "folder": str(run.folder),
        "files": len(record.get("files") or []),
        "argv": record.get("argv"),
    }
