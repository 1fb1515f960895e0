"""Rich tables for the results of each command. Computing never prints; this module only renders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from poolkit.commands.bench import BenchReport
    from poolkit.commands.bench_report import Change
    from poolkit.commands.sweep import CellResult
    from poolkit.commands.verify import VerifyReport
    from poolkit.commands.zoo_info import ZooRow
    from poolkit.exporter.manifest import ExportRecord


def zoo_table(rows: list[ZooRow], batch: int) -> Table:
    table = Table(title=f"poolkit zoo — output shapes for a {batch}x3x32x32 CIFAR10 batch")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("layers")
    table.add_column("params", justify="right")
    table.add_column("output", no_wrap=True)
    for r in rows:
        table.add_row(
            Text(r.name),
            Text(r.layers),
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
            Text(r.name),
            r.format,
            r.method,
            str(r.opset) if r.opset is not None else "—",
            "[green]ok[/green]" if r.ok else "[bold red]failed[/bold red]",
            _size(r.size_bytes),
            f"{r.export_seconds:.2f}",
            (r.sha256 or "")[:12] if r.ok else "[red]see below[/red]",
        )
    return Group(table, failure_lines([(f"{r.name} {r.format}", r.error or "") for r in records if not r.ok]))


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


def verify_table(report: VerifyReport) -> Group:
    src = report.data
    title = (
        f"poolkit verify — {src.images:,} {src.kind} images ({src.origin}), batch {report.batch_size}, "
        f"atol {report.atol:g}, rtol {report.rtol:g}"
    )
    table = Table(title=title)
    table.add_column("model", no_wrap=True, min_width=8)
    table.add_column("runtime")
    table.add_column("device")
    table.add_column("max abs", justify="right", no_wrap=True)
    table.add_column("max rel", justify="right", no_wrap=True)
    table.add_column("worst at")
    table.add_column("verdict", no_wrap=True)
    verdicts = {
        "passed": "[green]passed[/green]",
        "failed": "[bold red]FAILED[/bold red]",
        "unavailable": "[yellow]unavailable[/yellow]",
    }
    for r in report.rows:
        worst = r.worst
        where = "—"
        if worst is not None and worst.worst_location and not r.passed:
            where = "(" + ",".join(map(str, worst.worst_location)) + ")"
        table.add_row(
            Text(r.model),
            r.runtime,
            r.device,
            _sci(worst.max_abs) if worst else "—",
            _sci(worst.max_rel) if worst else "—",
            where,
            verdicts[r.status],
        )
    notes = unavailable_lines(
        [(f"{r.runtime} {r.device}", r.reason or "") for r in report.rows if r.status == "unavailable"]
    )
    for r in report.rows:
        if r.status != "failed":
            continue
        notes.append("✗ ", style="bold red")
        notes.append(f"{r.model} {r.format} {r.runtime} {r.device}", style="bold").append(f": {r.reason}\n")
        worst = r.worst
        if worst is not None and worst.worst_location and r.status == "failed":
            notes.append(
                f"    worst element at {tuple(worst.worst_location)}: eager {worst.worst_expected!r}, "
                f"artifact {worst.worst_actual!r}; cosine {worst.cosine:.6f}"
                + (f"; top-1 agreement {worst.top1_agreement:.1%}" if worst.top1_agreement is not None else "")
                + "\n"
            )
        if r.diverging_layer:
            notes.append(f"    first diverging layer: {r.diverging_layer}\n")
        if r.replay:
            notes.append(f"    reproduce: {r.replay}\n")
    s = report.summary
    summary = Text(
        f"{s['passed']} passed, {s['failed']} failed"
        + (f", {s['unavailable']} unavailable" if s["unavailable"] else ""),
        style="bold green" if report.passed else "bold red",
    )
    return Group(table, notes, summary) if notes else Group(table, summary)


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _si(value: int | None, unit: str = "") -> str:
    """20160640 -> 20.2M: FLOPs and bytes at a glance."""
    if value is None:
        return "—"
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f}{prefix}{unit}"
    return f"{value}{unit}"


def bench_table(report: BenchReport) -> Group:
    env = report.environment
    where = env.get("cpu", "?") + (f" + {env['gpu']}" if env.get("gpu") else "")
    rows = report.measurements
    threads = rows[0].threads if rows else None
    sizes = sorted({m.batch_size for m in rows})
    several_sizes = len(sizes) > 1
    on_gpu = any(m.device == "cuda" and m.latency_ms for m in rows)
    batch_text = "" if several_sizes else f", batch {sizes[0]}" if sizes else ""
    table = Table(title=f"poolkit bench — {where}, {threads} threads{batch_text}; ms per batch, model only")
    table.add_column("model", overflow="fold", min_width=6)
    table.add_column("runtime", no_wrap=True)
    headers = (["batch"] if several_sizes else []) + [
        "p50", "p90", "p99", "img/s", "vs eager", "FLOPs", "bytes", "GFLOP/s", "GB/s",
    ]  # fmt: skip
    for col in headers + (["e2e p50"] if on_gpu else []):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("notes", no_wrap=True)
    last_model = None
    for m in rows:
        if last_model is not None and m.model != last_model:
            table.add_section()
        model_cell = m.model if m.model != last_model else ""
        last_model = m.model
        lead = [Text(model_cell), f"{m.runtime} {m.device}"] + ([str(m.batch_size)] if several_sizes else [])
        s = m.latency_ms
        if s is None:
            status = "[yellow]unavailable[/yellow]" if m.status == "unavailable" else "[red]failed[/red]"
            table.add_row(*lead, status, *[""] * (len(headers) + on_gpu))
            continue
        cells = [
            _ms(s.p50) + ("[yellow]~[/yellow]" if s.unstable else ""),
            _ms(s.p90),
            _ms(s.p99),
            f"{m.images_per_s:,.0f}" if m.images_per_s else "—",
            f"{m.speedup_vs_eager:.2f}x" if m.speedup_vs_eager else "—",
            _si(m.flops),
            _si(m.bytes_moved, "B"),
            f"{m.gflops_per_s:.1f}" if m.gflops_per_s is not None else "—",
            f"{m.gb_per_s:.1f}" if m.gb_per_s is not None else "—",
        ]
        if on_gpu:
            cells.append(_ms(m.end_to_end_ms.p50 if m.end_to_end_ms else None))
        flags = [f.kind for f in m.flags if f.kind != "unstable"]
        table.add_row(*lead, *cells, "[yellow]" + ", ".join(flags) + "[/yellow]" if flags else "")
    notes = unavailable_lines([(f"{m.runtime} {m.device}", m.reason or "") for m in rows if m.status == "unavailable"])
    notes.append_text(
        failure_lines([(f"{m.model} {m.runtime} {m.device}", m.reason or "") for m in rows if m.status == "failed"])
    )
    if any(m.latency_ms and m.latency_ms.unstable for m in rows):
        notes.append("~ unstable: the samples' spread (CV) is above 10 %; the p50 stands, the tail is noisy\n")
    if any(f.kind == "overhead" for m in rows for f in m.flags):
        notes.append(
            "overhead: an Identity model on the same runtime costs half this figure or more (JSON: overhead_ms)\n"
        )
    if any(f.kind == "copies" for m in rows for f in m.flags):
        notes.append(
            "copies: moving the batch in and the outputs out takes as long as the model or longer (JSON: end_to_end_ms)\n"
        )
    return Group(table, notes)


def compare_table(changes: list[Change], old_path: str) -> Table:
    table = Table(title=f"change against {old_path} (p50, ms; flagged only beyond the 95% intervals)")
    for col in ("model", "runtime", "device", "batch", "old", "new", "change", "verdict"):
        table.add_column(col, justify="right" if col in ("old", "new", "change", "batch") else "left", no_wrap=True)
    styles = {"regression": "bold red", "improvement": "green", "within noise": "dim"}
    for c in changes:
        table.add_row(
            Text(c.model),
            c.runtime,
            c.device,
            str(c.batch_size),
            _ms(c.old_p50_ms),
            _ms(c.new_p50_ms),
            f"{c.change_pct:+.1f}%",
            f"[{styles[c.verdict]}]{c.verdict}[/{styles[c.verdict]}]",
        )
    return table


def sweep_table(results: list[CellResult]) -> Group:
    from poolkit.commands.sweep import FAILURES
    from poolkit.commands.sweep_blame import BLAMES
    from poolkit.commands.sweep_report import blame_summary, summary, summary_line

    short = {"declared-shape-mismatch": "declared", "export-failed": "export", "runtime-failed": "runtime"}
    table = Table(title="poolkit sweep — outcomes per layer group (failures, then their blame)")
    table.add_column("layer", no_wrap=True)
    for col in ("cells", "ok", "invalid", *(short.get(o, o.removesuffix("-mismatch")) for o in FAILURES)):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("blame " + "/".join(b[:3] for b in BLAMES), justify="right", no_wrap=True)
    for group in dict.fromkeys(r.cell.group for r in results):
        mine = [r for r in results if r.cell.group == group]
        s = summary(mine)
        counts = [f"[red]{s[k]}[/red]" if s[k] else "0" for k in FAILURES]
        blames = "/".join(str(n) for n in blame_summary(mine).values())
        table.add_row(group, str(s["cells"]), str(s["ok"]), str(s["invalid"]), *counts, blames)
    return Group(table, Text(summary_line(results)))
