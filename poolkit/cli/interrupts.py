"""Ctrl-C and SIGTERM stop poolkit within a couple of seconds, even inside a runtime call that never returns.

Python runs a signal handler only between bytecodes of the main thread; a runtime inside one long C
call (an ONNX `Loop` with a huge trip count, a TorchScript `while True`) defers it forever. So the
CLI also watches: the signal's number arrives on a pipe (`signal.set_wakeup_fd`, written by the C
handler at once), and a daemon thread gives the main thread `GRACE_S` to unwind as usual (staged
files removed, workers stopped, its own error line). If it has not finished by then, the watchdog
kills poolkit's child processes, writes the one error line (unless the main thread already did) and
ends the process with 130 (SIGTERM: 143). It never cuts a commit: it first takes
`common.signals.COMMIT`, which the main thread holds through every `signals_held` block, and gives
the main thread a fresh grace after each block it waited for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from poolkit.common.signals import COMMIT, HELD

GRACE_S = 1.5


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first), read from /proc; empty where there is no /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def kill_descendants() -> None:
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def watch(line_for: Callable[[int], tuple[str | None, int]]) -> Callable[[], None]:
    """Start the watchdog (main thread only); returns the function that stops it.

    `line_for(signum)` is the error line still to print (None when the main thread printed its own)
    and the exit code."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except ValueError:  # not allowed here (an embedding host): Python's own handling only
        os.close(read_end)
        os.close(write_end)
        return lambda: None
    finished = threading.Event()
    thread = threading.Thread(
        target=_watch, args=(read_end, finished, line_for), name="poolkit-interrupt-watchdog", daemon=True
    )
    thread.start()

    def stop() -> None:
        finished.set()
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(previous)
        os.close(write_end)  # the watchdog reads end-of-file and returns

    return stop


def _watch(read_end: int, finished: threading.Event, line_for: Callable[[int], tuple[str | None, int]]) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD)  # the signals go to the main thread, which handles them
    try:
        signum = _first_stop_signal(read_end)
        if signum is None or finished.is_set():
            return
        deadline = time.monotonic() + GRACE_S
        while not finished.wait(max(0.0, deadline - time.monotonic())):
            if COMMIT.acquire(blocking=False):  # kept until the end: the main thread starts no commit now
                _stop_now(signum, line_for)
            with COMMIT:  # a commit is under way: let it finish, then give the main thread its grace again
                pass
            deadline = time.monotonic() + GRACE_S
    finally:
        os.close(read_end)


def _first_stop_signal(read_end: int) -> int | None:
    """The first SIGINT or SIGTERM written to the wakeup pipe; None when the pipe closes first."""
    while True:
        data = os.read(read_end, 512)
        if not data:
            return None
        got = [b for b in data if b in HELD]
        if got:
            return signal.SIGTERM if signal.SIGTERM in got else signal.SIGINT


def _stop_now(signum: int, line_for: Callable[[int], tuple[str | None, int]]) -> None:
    kill_descendants()
    line, code = line_for(signum)
    if line is not None:
        with contextlib.suppress(OSError):
            os.write(2, f"error: {line}\n".encode(errors="backslashreplace"))
    os._exit(code)
