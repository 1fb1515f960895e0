"""One output switch for every command: a rich table for people, `--json` for machines."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from poolkit.files import to_plain

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
if not console.is_terminal and not console.size.width > 80:
    # Piped into a log (make demo, CI): rich would assume 80 columns and shred the tables.
    console.width = 120
    err_console.width = 120


def print_json(data: Any) -> None:
    """Machine output on stdout, nothing else mixed in."""
    sys.stdout.write(json.dumps(to_plain(data), indent=2, default=str) + "\n")
    sys.stdout.flush()


def note(message: str) -> None:
    """A one-line remark on stderr, so it never pollutes `--json` on stdout."""
    err_console.print(f"[dim]note:[/dim] {message}")


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/bold red] {message}", soft_wrap=True)


def progress_bar():  # -> rich.progress.Progress
    """The one progress bar every long command shows: on stderr, gone when done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=err_console, transient=True)
