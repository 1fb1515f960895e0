"""The bench and --baseline tables: every row names its model, no cell is ever cut, notes explain the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from poolkit.cli.render import _ms, _si, failure_lines, table_width, unavailable_lines

if TYPE_CHECKING:
    from poolkit.bench.measurement import BenchReport
    from poolkit.bench.report import Change

# Columns of the bench table, most important first: at a narrow width the last ones are left out
# (they stay in bench.json/csv); the model and runtime columns never shrink.
BENCH_PRIORITY = (
    "model", "runtime", "batch", "threads", "p50", "vs eager", "vs fp32", "p90", "p99", "n", "flags", "img/s",
    "e2e p50", "first", "load", "dev p50", "% BW", "% GEMM", "GB/s", "GFLOP/s", "FLOPs", "bytes",
)  # fmt: skip
BENCH_ORDER = (
    "model", "runtime", "batch", "threads", "load", "first", "p50", "p90", "p99", "n", "dev p50", "e2e p50",
    "img/s", "vs eager", "vs fp32", "FLOPs", "bytes", "GFLOP/s", "GB/s", "% BW", "% GEMM", "flags",
)  # fmt: skip
LEFT = {"model", "runtime", "flags"}


def row_name(m: Any) -> str:
    """The row's runtime, device and precision: the variant timed (int8), or, for an fp32 file, what the
    runtime really computed in where its provider says (OpenVINO picks bf16 on its own on some CPUs)."""
    computed = next((p for p in ("bf16", "fp16", "fp32") if (m.provider or "").endswith(f"-{p}")), "")
    precision = m.precision if m.precision != "fp32" else computed
    return f"{m.runtime} {m.device}" + (f" {precision}" if precision else "")


def _bench_cells(m: Any, report: BenchReport, several_sizes: bool, several_counts: bool = False) -> dict[str, str]:
    """Every column's cell for one row (rich markup), before any is left out for width."""
    cells = {"model": escape(m.model), "runtime": row_name(m)}
    if several_sizes:
        cells["batch"] = str(m.batch_size)
    if several_counts:
        cells["threads"] = str(m.threads)
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
            "vs fp32": f"{m.speedup_vs_fp32:.2f}x" if m.speedup_vs_fp32 else "—",
            "FLOPs": _si(m.flops),
            "bytes": _si(m.bytes_moved, "B"),
            "GFLOP/s": f"{m.gflops_per_s:.1f}" if m.gflops_per_s is not None else "—",
            "GB/s": f"{m.gb_per_s:.1f}" if m.gb_per_s is not None else "—",
            "flags": "[yellow]" + ", ".join(flags) + "[/yellow]" if flags else "",
            "e2e p50": _ms(m.end_to_end_ms.p50 if m.end_to_end_ms else None),
            "% BW": _share(report.bandwidth_share(m)),
            "% GEMM": _share(report.compute_share(m)),
        }
    )
    if m.device == "cuda":
        cells["dev p50"] = _ms(m.device_ms.p50 if m.device_ms else None)
    return cells


def _share(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "—"


def _fit_columns(rows: list[dict[str, str]], width: int | None) -> tuple[list[str], list[str]]:
    """(shown, left out): columns that have a value somewhere, dropped by priority until the table fits.

    A column costs its widest cell (or header) plus padding and a border; every cell is no_wrap, so
    whatever is shown is shown whole: never a model name squeezed away or a number cut mid-digit.
    """
    used = [c for c in BENCH_ORDER if any(r.get(c) not in (None, "", "—") for r in rows)]
    shown = list(used)
    if width is not None:
        for column in reversed(BENCH_PRIORITY):
            if _table_width(rows, shown) <= width or column in ("model", "runtime", "p50"):
                continue
            if column in shown:
                shown.remove(column)
    return shown, [c for c in used if c not in shown]


def _table_width(rows: list[dict[str, str]], columns: list[str]) -> int:
    return table_width(columns, [[r.get(c, "") for c in columns] for r in rows])


def _row_lines(cells: list[dict[str, str]], shown: list[str]) -> Text:
    """Rows as lines, for a terminal narrower than even the model, runtime and p50 columns (COLUMNS=20):
    the console wraps them between words, so no name or number is ever cut (a table would cut them)."""
    lines = Text()
    for row in cells:
        parts = [row["model"], row["runtime"], *(f"{c} {row[c]}" for c in shown if c not in LEFT and row.get(c))]
        lines.append_text(Text.from_markup("• " + "  ".join(parts) + "\n"))
    return lines


def bench_table(report: BenchReport, width: int | None = None) -> Group:
    """The bench table at `width` columns (None: all columns), then the notes that explain it."""
    env = report.environment
    where = env.get("cpu", "?") + (f" + {env['gpu']}" if env.get("gpu") else "")
    rows = report.measurements
    counts = sorted({m.threads for m in rows if m.threads is not None})
    several_counts = len(counts) > 1
    threads = counts[0] if counts else None
    thread_text = (
        f"{'/'.join(map(str, counts))} threads" if several_counts else f"{threads} thread{'s' * (threads != 1)}"
    )
    sizes = sorted({m.batch_size for m in rows})
    several_sizes = len(sizes) > 1
    batch_text = "" if several_sizes else f", batch {sizes[0]}" if sizes else ""
    spinning = next((m.mode["spinning"] for m in rows if "spinning" in m.mode), None)
    spin_text = "" if spinning is None else f", ORT spinning {'on' if spinning else 'off'}"
    cells = [_bench_cells(m, report, several_sizes, several_counts) for m in rows]
    shown, left_out = _fit_columns(cells, width)
    process = report.settings.process
    title = f"poolkit bench — {where}, {thread_text}{batch_text}, {process}{spin_text}; ms per batch, model only"
    if width is not None and _table_width(cells, shown) > width:
        return Group(Text(title, style="italic"), _row_lines(cells, shown), bench_notes(report, left_out))
    table = Table(title=title)
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
    notes = unavailable_lines([(row_name(m), m.reason or "") for m in rows if m.status == "unavailable"])
    notes.append_text(
        failure_lines([(f"{m.model} {row_name(m)}", m.reason or "") for m in rows if m.status == "failed"])
    )
    modes = {m.runtime: m.mode for m in rows if m.mode and m.status == "ok"}
    for (
        runtime,
        mode,
    ) in modes.items():  # each runtime's own settings, read back from it (every row has them in the JSON)
        notes.append(f"mode of {runtime}: " + ", ".join(f"{k} {v}" for k, v in mode.items()) + "\n", style="dim")
    for m in rows:
        for line in m.notes:
            notes.append("profiled ", style="yellow").append(f"{m.model} {row_name(m)}", style="bold")
            notes.append(f": {line}\n")
    stats = [m.latency_ms for m in rows if m.latency_ms]
    if any(not s.p90_reliable or not s.p99_reliable for s in stats):
        fewest = min(s.n for s in stats)
        notes.append(
            f"* tail from too few samples (MLPerf: 64 for a p90, 662 for a p99; fewest here: {fewest}): indicative only\n"
        )
    if any(s.unstable for s in stats):
        notes.append("~ unstable: the middle half of the samples spans 10 % of the median or more (IQR/median)\n")
    kinds = {f.kind for m in rows for f in m.flags}
    if "overhead" in kinds:
        notes.append(
            "overhead: an Identity model on the same runtime costs half this figure or more (JSON: overhead_ms)\n"
        )
    if "copies" in kinds:
        notes.append(
            "copies: moving the batch in and the outputs out takes as long as the model or longer (JSON: end_to_end_ms)\n"
        )
    roofs = report.host_roofs
    if roofs is not None and any(report.bandwidth_share(m) is not None for m in rows if m.device == "cpu"):
        bw, gemm = roofs["gb_per_s"], roofs["gflops_per_s"]
        notes.append(f"% BW, % GEMM (CPU rows): of this host's triad {bw:.1f} GB/s and fp32 GEMM {gemm:.0f} GFLOP/s\n")
    if "imprecise" in kinds:
        notes.append("imprecise: the median's 95 % interval stayed wider than --ci-target until --max-time\n")
    for line in report.notes:
        notes.append("warning: ", style="bold yellow").append(f"{line}\n")
    if left_out:
        notes.append(f"left out at this width: {', '.join(left_out)} (all in bench.json and bench.csv)\n", style="dim")
    return notes


def _change(pct: float) -> str:
    """+12.3%; a change beyond ±10,000 % (a baseline of 1e-300 ms samples) in 3 digits, never 300."""
    return f"{pct:+.1f}%" if abs(pct) < 1e4 else f"{pct:+.3g}%"


def changes_table(changes: list[Change], old_path: str) -> Table:
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
            c.runtime + (f" {c.precision}" if c.precision != "fp32" else ""),
            c.device,
            str(c.batch_size),
            _ms(c.old_p50_ms),
            _ms(c.new_p50_ms),
            _change(c.change_pct),
            shift,
            f"{c.p_value:.2g}" if c.p_value is not None else "—",
            f"[{styles[c.verdict]}]{c.verdict}[/{styles[c.verdict]}]",
        )
    return table
