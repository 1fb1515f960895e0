"""Hold Ctrl-C and SIGTERM off a few lines that must not be cut in half; children that die with us.

An interrupt arrives between any two bytecodes: inside the `finally` that puts file descriptors back
(leaving poolkit's own error line written into a deleted temp file), or between two renames of a
commit. Blocking the signals for those lines delays them by microseconds; they are delivered (and
raised) as soon as the block ends.

Blocking alone is not enough in a process with threads (ONNX Runtime's, torch's): the kernel then
hands the signal to another thread, and Python still runs its handler in the main thread, inside
the block. So a block is also marked: a handler wrapped in `deferred` notes a signal that arrives
while one is open and raises it again when the block ends. The CLI's interrupt watchdog
(`poolkit.cli.interrupts`) takes `COMMIT` before it stops the process, so it never cuts a block.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

HELD = {signal.SIGINT, signal.SIGTERM}
COMMIT = threading.RLock()  # held by the main thread through every signals_held block
_depth = [0]
_pending: list[int] = []
PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (main thread only: only it runs handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with COMMIT:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
        _depth[0] += 1
        try:
            yield
        finally:
            _depth[0] -= 1
            signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a pending signal is raised here, after the block
            if not _depth[0] and _pending:
                signum = _pending.pop()
                _pending.clear()
                signal.raise_signal(signum)  # the handler runs now, outside the block


def deferred(handler: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
    """`handler`, postponed to the end of the signals_held block it arrives in (if any)."""

    def handle(signum: int, frame: Any) -> Any:
        if _depth[0]:
            _pending.append(signum)
            return None
        return handler(signum, frame)

    return handle


def die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills this process when its parent dies (a Ctrl-C'd or killed poolkit
    leaves no worker behind). Elsewhere a worker still ends when its pipe from the parent closes."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above: nobody would kill us
        os._exit(1)
