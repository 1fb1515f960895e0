"""Rich tables for the results of each command. Computing never prints; this module only renders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from poolkit.exporter.manifest import ExportRecord
    from poolkit.sweep.result import CellResult
    from poolkit.zoo.info import ZooRow


def zoo_table(rows: list[ZooRow], batch: int) -> Table:
    cifar = all(tuple(r.input_shape) == (batch, 3, 32, 32) for r in rows)
    shown = f"a {batch}x3x32x32 CIFAR10 batch" if cifar else f"a batch of {batch}"
    table = Table(title=f"poolkit zoo — output shapes for {shown}")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("layers")
    table.add_column("params", justify="right")
    if not cifar:  # --input-shape, or a model of your own: say what each row was given
        table.add_column("input", no_wrap=True)
    table.add_column("output", no_wrap=True)
    typed = any(r.dtype != "float32" for r in rows)  # a dtype column only when a model is not float32
    if typed:
        table.add_column("dtype", no_wrap=True)
    for r in rows:
        table.add_row(
            Text(r.name),
            Text(r.layers),
            f"{r.parameters:,}",
            *([] if cifar else ["x".join(map(str, r.input_shape))]),
            ", ".join("x".join(map(str, s)) for s in r.output_shapes),
            *([r.dtype] if typed else []),
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
    cached = sum(r.cached for r in records)
    counts = f"{ok - cached} exported, {cached} cached, {len(records) - ok} failed"
    table = Table(title=Text(f"poolkit export → {out_dir}  ({counts})"))
    for col in ("model", "format", "method", "opset", "status", "size", "s"):
        table.add_column(col, no_wrap=col != "model")
    table.add_column("sha256")
    variants = any(r.precision != "fp32" or r.dtype != "float32" for r in records)
    if variants:  # export --precision / --dtype: which precision each row is
        table.add_column("precision", no_wrap=True)
    for r in records:
        table.add_row(
            Text(r.name),
            r.format,
            r.method,
            str(r.opset) if r.opset is not None else "—",
            "[dim]cached[/dim]" if r.cached else "[green]ok[/green]" if r.ok else "[bold red]failed[/bold red]",
            _size(r.size_bytes),
            f"{r.export_seconds:.2f}",
            (r.sha256 or "")[:12] if r.ok else "[red]see below[/red]",
            *([r.precision if r.precision != "fp32" else f"{r.dtype} model" if r.dtype != "float32" else "fp32"]
              if variants else []),
        )  # fmt: skip
    failed = [(f"{r.name} {r.format}" + (f" {r.precision}" if r.precision != "fp32" else ""), r.error or "")
              for r in records if not r.ok]  # fmt: skip
    return Group(table, failure_lines(failed))


def unavailable_lines(rows: list[tuple[str, str]]) -> Text:
    """Each distinct 'cannot run here' reason once, with how many rows it covers."""
    text = Text()
    counts: dict[tuple[str, str], int] = {}
    for key in rows:
        counts[key] = counts.get(key, 0) + 1
    for (what, reason), n in counts.items():
        text.append("• ", style="yellow").append(f"{what} unavailable", style="bold")
        text.append(f" ({n} row{'s' * (n != 1)}): {reason}\n")
    return text


def _sci(value: float | None) -> str:
    if value is None:
        return "—"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return "0" if value == 0 else f"{value:.1e}"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1e6 or (value and abs(value) < 1e-3):  # a crafted file's 1e300 or 1e-300: 3 digits, not 300
        return f"{value:.3g}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _si(value: int | None, unit: str = "") -> str:
    """20160640 -> 20.2M: FLOPs and bytes at a glance."""
    if value is None:
        return "—"
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f}{prefix}{unit}"
    return f"{value}{unit}"


def table_width(headers: list[str], rows: list[list[str]]) -> int:
    """The width a table of no_wrap columns needs: each column's widest cell or header (markup not
    counted), its padding and border, and the closing border. Wider than the terminal, rich crops it."""
    return 1 + sum(max([len(h)] + [Text.from_markup(r[i]).cell_len for r in rows]) + 3 for i, h in enumerate(headers))


def sweep_table(results: list[CellResult], width: int | None = None) -> Group:
    """Outcomes per layer group. Failure kinds no cell has are left out (the summary line names the
    ones there are); where even that table is wider than `width`, one line per group instead: a
    cropped table turned 100 into "1…"."""
    # Lazy: sweep.blame pulls in onnx and onnxruntime, which only the sweep table needs.
    from poolkit.sweep.blame import BLAMES
    from poolkit.sweep.report import blame_summary, summary, summary_line
    from poolkit.sweep.result import FAILURES

    short = {"declared-shape-mismatch": "declared", "export-failed": "export", "runtime-failed": "runtime"}
    by_group: dict[str, list[CellResult]] = {}
    for r in results:
        by_group.setdefault(r.cell.group, []).append(r)
    sums = {g: summary(mine) for g, mine in by_group.items()}
    kinds = [k for k in FAILURES if any(s[k] for s in sums.values())]
    blame_head = "blame " + "/".join(b[:3] for b in BLAMES)
    heads = ["layer", "cells", "ok", "invalid", *(short.get(k, k.removesuffix("-mismatch")) for k in kinds), blame_head]
    rows = []
    for g, mine in by_group.items():
        blames = "/".join(str(n) for n in blame_summary(mine).values())
        rows.append([g, str(sums[g]["cells"]), str(sums[g]["ok"]), str(sums[g]["invalid"]),
                     *(str(sums[g][k]) for k in kinds), blames])  # fmt: skip
    if rows and width is not None and table_width(heads, rows) > width:
        lines = [", ".join(f"{v} {h}" for h, v in zip(heads[1:], row[1:], strict=True)) for row in rows]
        return Group(*(Text(f"{row[0]}: {line}") for row, line in zip(rows, lines, strict=True)),
                     Text(summary_line(results)))  # fmt: skip
    table = Table(title="poolkit sweep — outcomes per layer group (failures, then their blame)")
    for i, head in enumerate(heads):
        table.add_column(head, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        failures = [f"[red]{c}[/red]" if c != "0" else c for c in row[4:-1]]
        table.add_row(*row[:4], *failures, row[-1])
    return Group(table, Text(summary_line(results)))


def runs_table(runs: list[dict[str, Any]], root: str, latest: set[str]) -> Table:
    """`poolkit runs list`: one row per run, oldest first; the latest run of each command starred."""
    table = Table(title=Text(f"poolkit runs in {root}/runs  (* latest of its command)"))
    table.add_column("run", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True)
    table.add_column("machine", overflow="fold")
    table.add_column("files", justify="right", no_wrap=True)
    tone = {"ok": "green", "failed": "red", "error": "red", "interrupted": "yellow", "killed": "yellow"}
    for r in runs:
        star = "*" if r["id"] in latest else " "
        seconds = r["seconds"]
        table.add_row(
            Text(f"{star} {r['id']}"),
            Text(str(r["status"]), style=tone.get(str(r["status"]), "")),
            f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "—",
            Text(str(r["machine"])),
            str(r["files"]),
        )
    return table
