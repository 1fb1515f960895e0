"""One output switch for every command: a rich table for people, `--json` for machines."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def to_plain(obj: Any) -> Any:
    """Dataclasses (and lists of them) as JSON-ready dicts."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def print_json(data: Any) -> None:
    """Machine output on stdout, nothing else mixed in."""
    sys.stdout.write(json.dumps(to_plain(data), indent=2, default=str) + "\n")
    sys.stdout.flush()


def note(message: str) -> None:
    """A one-line remark on stderr, so it never pollutes `--json` on stdout."""
    err_console.print(f"[dim]note:[/dim] {message}")


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/bold red] {message}", soft_wrap=True)
