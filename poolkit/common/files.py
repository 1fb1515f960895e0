"""Atomic writes: a report or manifest is either the old file or the new one, never half of each."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any


def write_atomic(path: Path, writer: Callable[[Path], None]) -> Path:
    """Let `writer` fill a temp file in the same folder, then rename it over `path`.

    Same folder so the rename stays on one file system and is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file 0600; a report or artifact should get the mode any other file would.
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None or str(exc.filename) == str(tmp):  # "No space left on device": say where
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """`data` into `path` atomically. torch's own file writers abort the whole process (SIGABRT) when
    the disk fills: serialise to memory first, then write here, where a full disk is an OSError."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return write_atomic(path, write)


def inside(folder: Path, name: str, what: str = "manifest path") -> Path:
    """`folder / name`, refusing absolute paths, `..` and drive tricks: a manifest or replay file never
    points outside its folder. Checked before anything is read, so a crafted entry reads nothing."""
    from poolkit.common.errors import DataError

    candidate = Path(name) if isinstance(name, str) else None
    if candidate is None or "\x00" in name or candidate.is_absolute() or ".." in candidate.parts or not candidate.parts:
        raise DataError(f"{what} {name!r} leaves the folder {folder}: refused before reading it")
    path = Path(folder) / candidate
    try:
        leaves = not path.resolve().is_relative_to(Path(folder).resolve())
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
        raise DataError(f"{what} {name!r} in {folder} is a symlink loop: refused before reading it") from None
    if leaves:  # a symlink pointing out
        raise DataError(f"{what} {name!r} is a link leaving the folder {folder}: refused before reading it")
    return path


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> Path:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return write_atomic(path, write)


def to_plain(obj: Any) -> Any:
    """Dataclasses (and lists of them) as JSON-ready values; inf and NaN as strings, so the JSON stays strict.

    An object with a `__json__()` method (a dataclass with derived figures) says itself what it holds.
    """
    if hasattr(obj, "__json__") and not isinstance(obj, type):
        return to_plain(obj.__json__())
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def write_json_atomic(path: Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(to_plain(data), indent=2, default=str) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path, "file") as fh:  # a FIFO put in place of an artifact would block the hash
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_regular(path: Path, what: str = "file") -> Any:
    """Open `path` for reading in binary, refusing anything but a regular file (a FIFO, a device, a
    folder) with a one-line DataError: opening a FIFO would block until a writer comes, forever.

    The file is opened without blocking and checked on its descriptor, so a FIFO swapped in after a
    check cannot block either; the returned object reads normally.
    """
    import stat

    from poolkit.common.errors import DataError

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise DataError(f"{what} {path} is {kind}: poolkit reads regular files only")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular_text(path: Path, what: str = "file") -> str:
    with open_regular(path, what) as fh:
        return fh.read().decode("utf-8")
