"""Rich tables for the results of each command. Computing never prints; this module only renders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from exporter.manifest import ExportRecord
    from poolkit.zoo_info import ZooRow


def zoo_table(rows: list[ZooRow], batch: int) -> Table:
    table = Table(title=f"poolkit zoo — output shapes for a {batch}x3x32x32 CIFAR10 batch")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("layers")
    table.add_column("params", justify="right")
    table.add_column("output", no_wrap=True)
    for r in rows:
        table.add_row(
            r.name,
            r.layers,
            f"{r.parameters:,}",
            ", ".join("x".join(map(str, s)) for s in r.output_shapes),
        )
    return table


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def failure_lines(rows: list[tuple[str, str]]) -> Text:
    """Reasons get whole lines under a table: a narrow column would shred them."""
    text = Text()
    for label, reason in rows:
        text.append("✗ ", style="bold red").append(label, style="bold").append(f": {reason}\n")
    return text


def export_table(records: list[ExportRecord], out_dir: str) -> Group:
    ok = sum(r.ok for r in records)
    table = Table(title=f"poolkit export → {out_dir}  ({ok} ok, {len(records) - ok} failed)")
    for col in ("model", "format", "method", "opset", "status", "size", "s"):
        table.add_column(col, no_wrap=col != "model")
    table.add_column("sha256")
    for r in records:
        table.add_row(
            r.name,
            r.format,
            r.method,
            str(r.opset) if r.opset is not None else "—",
            "[green]ok[/green]" if r.ok else "[bold red]failed[/bold red]",
            _size(r.size_bytes),
            f"{r.export_seconds:.2f}",
            (r.sha256 or "")[:12] if r.ok else "[red]see below[/red]",
        )
    return Group(table, failure_lines([(f"{r.name} {r.format}", r.error or "") for r in records if not r.ok]))
