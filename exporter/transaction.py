"""Put a re-export in place whole: the folder holds the old export or the new one, never a mix.

New artifacts, weights and the new manifest are written to staging files beside their final
names. Under the folder's lock, a journal (`.export-journal.json`, written atomically) records every
rename still to do, the manifest last; then the files are renamed and the journal is removed. An interrupt (Ctrl-C, SIGTERM) is held off for those few renames; a kill or a crash
there leaves the journal, and the next poolkit to read or lock the folder finishes it (roll forward:
each rename is atomic, so each file is either still staged or already in place). Before the journal
exists, the old export is untouched and staged files are only leftovers, removed once their process
is gone. A journal can be crafted like any file: every name in it must be a plain file of the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from poolkit.common.errors import DataError
from poolkit.common.files import inside, read_regular_text, write_json_atomic
from poolkit.common.signals import signals_held

JOURNAL_NAME = ".export-journal.json"
_STAGED = re.compile(r"\.(?P<final>[^/]+)\.(?P<pid>[0-9]+)\.staged")


def staged_name(final: Path) -> Path:
    """Where `final` is staged by this process: hidden, beside it (one file system, atomic rename)."""
    return final.with_name(f".{final.name}.{os.getpid()}.staged")


def commit(folder: Path, renames: list[tuple[Path, Path]], manifest: Path, data: dict[str, Any]) -> None:
    """Rename every staged file into place and write `data` to the `manifest` file of `folder`, as
    one step. The caller holds the folder's lock.

    The new manifest is staged too and renamed last, so once the journal is written what is left to
    do needs no disk space: a full disk fails before anything changed, never half way.
    """
    folder = Path(folder)
    journal = folder / JOURNAL_NAME
    staged_manifest = staged_name(manifest)
    moves = [*renames, (staged_manifest, manifest)]
    with signals_held():
        try:
            write_json_atomic(staged_manifest, data)
            write_json_atomic(journal, {"renames": [[s.name, f.name] for s, f in moves]})
        except BaseException as exc:  # no journal: the old export stands, the staged files are garbage
            for staged, _ in moves:
                staged.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.filename == str(staged_manifest):
                raise OSError(exc.errno, exc.strerror, str(manifest)) from None  # name the file the user knows
            raise
        # From here on the staged files belong to the journal: whatever stops this, they are
        # renamed by whoever next locks the folder, never deleted.
        _apply(folder, [(s.name, f.name) for s, f in moves])
        journal.unlink()


def recover(folder: Path) -> bool:
    """Finish a commit a killed poolkit left half done, and remove staging files whose process is
    gone. The caller holds the folder's lock. Returns whether a journal was found."""
    folder = Path(folder)
    journal = folder / JOURNAL_NAME
    found = journal.exists()
    if found:
        try:
            entry = json.loads(read_regular_text(journal, "export journal"))
            moves = _checked(folder, entry)
        except (ValueError, TypeError, KeyError, DataError) as exc:
            raise DataError(f"{journal} is not a poolkit export journal ({exc}); remove it and export again") from None
        with signals_held():
            _apply(folder, moves)
            journal.unlink()
    _remove_orphans(folder)
    return found


def _checked(folder: Path, entry: Any) -> list[tuple[str, str]]:
    renames = entry.get("renames") if isinstance(entry, dict) else None
    if not isinstance(renames, list):
        raise TypeError("no renames in it")
    moves = []
    for pair in renames:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise TypeError(f"bad rename {str(pair)[:80]}")
        match = _STAGED.fullmatch(pair[0])
        if match is None or match["final"] != pair[1] or "/" in pair[1]:
            raise TypeError(f"rename {pair[0][:80]!r} -> {pair[1][:80]!r} is not a staged file and its name")
        inside(folder, pair[0], "journal path")
        inside(folder, pair[1], "journal path")
        moves.append((pair[0], pair[1]))
    return moves


def _apply(folder: Path, moves: list[tuple[str, str]]) -> None:
    """The renames, in order (the manifest last); each one done before a kill is simply skipped."""
    for staged, final in moves:
        if (folder / staged).exists():
            os.replace(folder / staged, folder / final)


def _remove_orphans(folder: Path) -> None:
    """Staged files of processes that no longer run (a kill before the journal): the old export is
    whole without them."""
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            match = _STAGED.fullmatch(path.name)
            if match is not None and not _alive(int(match["pid"])):
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True
