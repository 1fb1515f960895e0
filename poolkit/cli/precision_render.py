"""verify's table of precision variants: each variant's error, what its own rounding allows, and its verdict."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from poolkit.verify.variants import PrecisionRow


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    return "0" if value == 0 else f"{value:.{digits}e}"


def precision_table(rows: list[PrecisionRow]) -> Group:
    """One row per variant: its error against fp64, what its own rounding allows, and whether it can ship."""
    table = Table(title="precision variants — each against fp64 eager, judged by its own rounding")
    for col in ("model", "format", "prec", "device"):
        table.add_column(col, no_wrap=col != "model")
    for col in ("rms err", "own", "SQNR dB", "top-1", "worst layer"):  # own: its reference's rms error
        table.add_column(col, justify="right" if col != "worst layer" else "left", no_wrap=col != "worst layer")
    table.add_column("verdict", no_wrap=True)
    table.add_column("ship", no_wrap=True)
    verdicts = {"passed": "[green]passed[/green]", "failed": "[bold red]FAILED[/bold red]",
                "unavailable": "[yellow]unavailable[/yellow]"}  # fmt: skip
    for r in rows:
        table.add_row(
            Text(r.model),
            r.format,
            r.precision,
            r.device,
            _num(r.rms),
            _num(r.budget_rms),
            f"{r.sqnr_db:.1f}" if r.sqnr_db is not None and math.isfinite(r.sqnr_db) else "—",
            f"{r.top1:.1%}" if r.top1 is not None else "—",
            Text(r.worst_layer or "—"),
            verdicts[r.status],
            "[green]yes[/green]" if r.can_ship else "no",  # fmt: skip
        )
    notes = Text()
    for r in rows:
        if r.reason:
            mark, style = ("✗ ", "bold red") if r.status == "failed" else ("- ", "yellow")
            notes.append(mark, style=style).append(f"{r.model} {r.format} {r.precision} {r.device}", style="bold")
            notes.append(f": {r.reason}\n")
    parts: list[Any] = [table]
    if notes:
        parts.append(notes)
    counts = {s: sum(r.status == s for r in rows) for s in ("passed", "failed", "unavailable")}
    parts.append(
        Text(
            f"precision variants: {counts['passed']} passed, {counts['failed']} failed"
            + (f", {counts['unavailable']} unavailable" if counts["unavailable"] else ""),
            style="bold",
        )
    )
    parts.append(Text(ship_summary(rows)))
    return Group(*parts)


def ship_summary(rows: list[PrecisionRow]) -> str:
    """Per model: which precisions a user can ship, and at what cost."""
    lines = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        ok = [f"{r.precision} {r.format} ({r.cost})" for r in mine if r.can_ship]
        no = sorted({f"{r.precision} {r.format}" for r in mine if not r.can_ship})
        lines.append(
            f"{model}: can ship " + ("; ".join(ok) if ok else "no variant")
            + (f" — not: {', '.join(no)}" if no else "")
        )  # fmt: skip
    return "\n".join(lines)
