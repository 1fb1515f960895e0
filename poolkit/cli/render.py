"""Rich tables for the results of each command. Computing never prints; this module only renders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markup import escape
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


# Columns of the bench table, most important first: at a narrow width the last ones are left out
# (they stay in bench.json/csv); the model and runtime columns never shrink.
BENCH_PRIORITY = (
    "model", "runtime", "batch", "p50", "vs eager", "p90", "p99", "n", "flags", "img/s", "first", "load",
    "dev p50", "e2e p50", "GB/s", "% peak", "GFLOP/s", "FLOPs", "bytes",
)  # fmt: skip
BENCH_ORDER = (
    "model", "runtime", "batch", "load", "first", "p50", "p90", "p99", "n", "dev p50", "e2e p50", "img/s",
    "vs eager", "FLOPs", "bytes", "GFLOP/s", "GB/s", "% peak", "flags",
)  # fmt: skip
LEFT = {"model", "runtime", "flags"}


def _bench_cells(m: Any, several_sizes: bool) -> dict[str, str]:
    """Every column's cell for one row (rich markup), before any is left out for width."""
    cells = {"model": escape(m.model), "runtime": f"{m.runtime} {m.device}"}
    if several_sizes:
        cells["batch"] = str(m.batch_size)
    s = m.latency_ms
    if s is None:
        cells["p50"] = "[yellow]unavailable[/yellow]" if m.status == "unavailable" else "[red]failed[/red]"
        return cells
    flags = [f.kind for f in m.flags if f.kind != "unstable"] + (["profiled"] if m.notes else [])
    cells.update(
        {
            "load": _ms(m.load_ms),
            "first": _ms(m.first_run_ms),
            "p50": _ms(s.p50) + ("[yellow]~[/yellow]" if s.unstable else ""),
            "p90": _ms(s.p90) + ("" if s.p90_reliable else "*"),
            "p99": _ms(s.p99) + ("" if s.p99_reliable else "*"),
            "n": str(s.n),
            "img/s": f"{m.images_per_s:,.0f}" if m.images_per_s else "—",
            "vs eager": f"{m.speedup_vs_eager:.2f}x" if m.speedup_vs_eager else "—",
            "FLOPs": _si(m.flops),
            "bytes": _si(m.bytes_moved, "B"),
            "GFLOP/s": f"{m.gflops_per_s:.1f}" if m.gflops_per_s is not None else "—",
            "GB/s": f"{m.gb_per_s:.1f}" if m.gb_per_s is not None else "—",
            "flags": "[yellow]" + ", ".join(flags) + "[/yellow]" if flags else "",
        }
    )
    if m.device == "cuda":
        cells["dev p50"] = _ms(m.device_ms.p50 if m.device_ms else None)
        cells["e2e p50"] = _ms(m.end_to_end_ms.p50 if m.end_to_end_ms else None)
        cells["% peak"] = f"{m.bandwidth_share:.0%}" if m.bandwidth_share is not None else "—"
    return cells


def _fit_columns(rows: list[dict[str, str]], width: int | None) -> tuple[list[str], list[str]]:
    """(shown, left out): columns that have a value somewhere, dropped by priority until the table fits.

    A column costs its widest cell (or header) plus padding and a border; every cell is no_wrap, so
    whatever is shown is shown whole: never a model name squeezed away or a number cut mid-digit.
    """
    used = [c for c in BENCH_ORDER if any(r.get(c) not in (None, "", "—") for r in rows)]
    need = {c: max([len(c)] + [Text.from_markup(r.get(c, "")).cell_len for r in rows]) + 3 for c in used}
    shown = list(used)
    if width is not None:
        for column in reversed(BENCH_PRIORITY):
            if sum(need[c] for c in shown) + 1 <= width or column in ("model", "runtime", "p50"):
                continue
            if column in shown:
                shown.remove(column)
    return shown, [c for c in used if c not in shown]


def bench_table(report: BenchReport, width: int | None = None) -> Group:
    """The bench table at `width` columns (None: all columns), then the notes that explain it."""
    env = report.environment
    where = env.get("cpu", "?") + (f" + {env['gpu']}" if env.get("gpu") else "")
    rows = report.measurements
    threads = rows[0].threads if rows else None
    sizes = sorted({m.batch_size for m in rows})
    several_sizes = len(sizes) > 1
    batch_text = "" if several_sizes else f", batch {sizes[0]}" if sizes else ""
    process = rows[0].process if rows else "isolated"
    spinning = next((m.ort_spinning for m in rows if m.ort_spinning is not None), None)
    spin_text = "" if spinning is None else f", ORT spinning {'on' if spinning else 'off'}"
    cells = [_bench_cells(m, several_sizes) for m in rows]
    shown, left_out = _fit_columns(cells, width)
    table = Table(
        title=f"poolkit bench — {where}, {threads} threads{batch_text}, {process}{spin_text}; ms per batch, model only"
    )
    for col in shown:
        table.add_column(col, justify="left" if col in LEFT else "right", no_wrap=True)
    last_model = None
    for m, row in zip(rows, cells, strict=True):
        if last_model is not None and m.model != last_model:
            table.add_section()
        last_model = m.model
        table.add_row(*[Text.from_markup(row.get(c, "")) for c in shown])
    return Group(table, bench_notes(report, left_out))


def bench_notes(report: BenchReport, left_out: list[str]) -> Text:
    """What the marks mean, why rows failed, what the profiles found, and the machine's warning."""
    rows = report.measurements
    notes = unavailable_lines([(f"{m.runtime} {m.device}", m.reason or "") for m in rows if m.status == "unavailable"])
    notes.append_text(
        failure_lines([(f"{m.model} {m.runtime} {m.device}", m.reason or "") for m in rows if m.status == "failed"])
    )
    for m in rows:
        for line in m.notes:
            notes.append("profiled ", style="yellow").append(f"{m.model} {m.runtime} {m.device}", style="bold")
            notes.append(f": {line}\n")
    stats = [m.latency_ms for m in rows if m.latency_ms]
    if any(not s.p90_reliable or not s.p99_reliable for s in stats):
        fewest = min(s.n for s in stats)
        notes.append(
            f"* tail from too few samples (MLPerf: 64 for a p90, 662 for a p99; fewest here: {fewest}): indicative only\n"
        )
    if any(s.unstable for s in stats):
        notes.append("~ unstable: the samples' spread (CV) is above 10 %; the p50 stands, the tail is noisy\n")
    kinds = {f.kind for m in rows for f in m.flags}
    if "overhead" in kinds:
        notes.append(
            "overhead: an Identity model on the same runtime costs half this figure or more (JSON: overhead_ms)\n"
        )
    if "copies" in kinds:
        notes.append(
            "copies: moving the batch in and the outputs out takes as long as the model or longer (JSON: end_to_end_ms)\n"
        )
    if "imprecise" in kinds:
        notes.append("imprecise: the median's 95 % interval stayed wider than --ci-target until --max-time\n")
    for line in report.notes:
        notes.append("warning: ", style="bold yellow").append(f"{line}\n")
    if left_out:
        notes.append(f"left out at this width: {', '.join(left_out)} (all in bench.json and bench.csv)\n", style="dim")
    return notes


def compare_table(changes: list[Change], old_path: str) -> Table:
    table = Table(title=f"change against {old_path} (p50, ms; Mann-Whitney U on the raw samples, 5 % level)")
    columns = ("model", "runtime", "device", "batch", "old", "new", "change", "shift [95% CI]", "p", "verdict")
    for col in columns:
        table.add_column(
            col, justify="left" if col in ("model", "runtime", "device", "verdict") else "right", no_wrap=True
        )
    styles = {"regression": "bold red", "improvement": "green", "within noise": "dim"}
    for c in changes:
        shift = f"{c.shift_ms:+.3f} [{c.shift_low_ms:+.3f}, {c.shift_high_ms:+.3f}]" if c.shift_ms is not None else "—"
        table.add_row(
            Text(c.model),
            c.runtime,
            c.device,
            str(c.batch_size),
            _ms(c.old_p50_ms),
            _ms(c.new_p50_ms),
            f"{c.change_pct:+.1f}%",
            shift,
            f"{c.p_value:.2g}" if c.p_value is not None else "—",
            f"[{styles[c.verdict]}]{c.verdict}[/{styles[c.verdict]}]",
        )
    return table


def sweep_table(results: list[CellResult]) -> Group:
    from poolkit.commands.sweep import OUTCOMES
    from poolkit.commands.sweep_report import summary, summary_line

    table = Table(title="poolkit sweep — outcomes per layer group")
    table.add_column("layer", no_wrap=True)
    for outcome in ("cells", *OUTCOMES):
        table.add_column(outcome, justify="right", no_wrap=True)
    groups = list(dict.fromkeys(r.cell.group for r in results))
    for group in groups:
        s = summary([r for r in results if r.cell.group == group])
        table.add_row(
            group,
            *[
                (f"[red]{s[k]}[/red]" if s[k] and k not in ("cells", "ok", "invalid") else str(s[k]))
                for k in ("cells", *OUTCOMES)
            ],
        )
    return Group(table, Text(summary_line(results)))
