"""Hold Ctrl-C and SIGTERM off a few lines that must not be cut in half.

An interrupt arrives between any two bytecodes: inside the `finally` that puts file descriptors back
(leaving poolkit's own error line written into a deleted temp file), or between two renames of a
commit. Blocking the signals for those lines delays them by microseconds; they are delivered (and
raised) as soon as the block ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

HELD = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (main thread only: only it runs handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a pending signal is raised here, after the block
