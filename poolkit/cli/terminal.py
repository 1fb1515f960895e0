"""The terminal's two guards: nothing read from a file reaches it raw, and `--json` stdout is JSON only."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.segment import Segment

from poolkit.common.text import escape_controls


class SafeConsole(Console):
    """A rich Console that never sends a control character it was given to the terminal.

    Tables, notes, progress lines and errors all end here: the text of every segment is escaped
    (rich's own colour and cursor codes are added after, from styles and control segments), so
    no path, name or message read from a file can reach the terminal raw, whichever table shows it.
    """

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            Segment(escape_controls(seg.text), seg.style, seg.control) if seg.control is None else seg for seg in buffer
        )


console = SafeConsole(highlight=False)
err_console = SafeConsole(stderr=True, highlight=False)
if not console.is_terminal and not console.size.width > 80 and "COLUMNS" not in os.environ:
    # Piped into a log (make demo, CI): rich would assume 80 columns and shred the tables (an explicit
    # COLUMNS is the user's choice and stays).
    console.width = 120
    err_console.width = 120

_JSON_STREAM: list[Any] = []  # the real stdout, while a --json command runs with stdout sent to stderr


@contextlib.contextmanager
def stdout_for_json_only(active: bool) -> Iterator[None]:
    """While a `--json` command runs, everything else that writes to stdout (a user's model, a
    TorchScript file's prints, native code, worker processes) goes to stderr; `print_json` alone
    writes to the real stdout, so the JSON stays parseable."""
    if not active:
        yield
        return
    sys.stdout.flush()
    try:
        real_fd = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # a captured stream (tests): Python-level only
        real_fd = False
    saved = os.dup(1) if real_fd else None
    stream = os.fdopen(saved, "w", encoding="utf-8", closefd=False) if saved is not None else sys.stdout
    _JSON_STREAM.append(stream)
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _JSON_STREAM.pop()
        sys.stderr.flush()
        if saved is not None:
            stream.flush()
            os.dup2(saved, 1)
            os.close(saved)


def json_active() -> bool:
    """A `--json` command is running: its stdout is for the JSON alone."""
    return bool(_JSON_STREAM)


def json_stream() -> Any:
    """Where `print_json` writes: the real stdout (kept aside under `--json`), else sys.stdout."""
    return _JSON_STREAM[-1] if _JSON_STREAM else sys.stdout
