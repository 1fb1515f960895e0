"""The sweep's journal: one JSON line per result, appended as it arrives; what a sweep resumes from."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from poolkit.common.errors import PoolkitError
from poolkit.services.workers import INTERRUPT_CODES
from poolkit.sweep.result import OUTCOMES, CellResult


class Journal:
    """Results as JSON lines, appended and flushed one by one: what an interrupted sweep resumes from.

    Reading skips what it cannot use (a line cut short by an interruption, a stray edit) and counts
    it in `skipped`; results that were not really measured (a worker stopped by Ctrl-C) are left
    out, so a resumed sweep runs those cells again.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.skipped = 0

    def read(self) -> dict[str, CellResult]:
        done: dict[str, CellResult] = {}
        self.skipped = 0
        if not self.path.exists():
            return done
        try:
            text = self.path.read_bytes().decode("utf-8", "replace")
        except OSError as exc:
            raise PoolkitError(f"cannot read the sweep journal {self.path}: {exc.strerror or exc}") from None
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                result = CellResult.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                self.skipped += 1  # cut short by an interruption, or not a result at all (or a stray edit)
                continue
            if measured(result):
                done[result.cell.id] = result
        return done

    def append(self, result: CellResult) -> None:
        """One line per result, always starting on a fresh line (a cut-off last line stays alone)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(result.to_json(), default=str) + "\n").encode("utf-8")
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = b"\n" + line
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def measured(result: CellResult) -> bool:
    """Whether a journaled result is a measurement (else a resumed sweep runs the cell again)."""
    if result.outcome not in OUTCOMES:
        return False
    stopped = tuple(f"worker died (exit code {code})" for code in INTERRUPT_CODES)
    return not (result.outcome == "crashed" and (result.reason or "") in stopped)


def carry_over(old_stem: Path, new_stem: Path) -> bool:
    """Start the journal at `new_stem` from the one at `old_stem` (an interrupted sweep, resumed in a
    run of its own): the old run is left as it was, the new one holds every result and bundle.

    The bundles are hard-linked where the file system allows it (copied elsewhere) and the journal's
    bundle paths moved to them, so the new run does not depend on the old one staying. Returns
    whether there was a journal to carry over."""
    old_journal = Path(f"{old_stem}.jsonl")
    if not old_journal.is_file():
        return False
    old_bundles, new_bundles = Path(f"{old_stem}-bundles").resolve(), Path(f"{new_stem}-bundles").resolve()
    if old_bundles.is_dir():
        shutil.copytree(old_bundles, new_bundles, copy_function=_link_or_copy, dirs_exist_ok=True)
    text = old_journal.read_bytes().decode("utf-8", "replace")
    escaped = json.dumps(str(old_bundles))[1:-1]  # as the journal's JSON writes the path
    Path(f"{new_stem}.jsonl").write_text(text.replace(escaped, json.dumps(str(new_bundles))[1:-1]), encoding="utf-8")
    return True


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
