"""The tables of `poolkit verify`: the rows, the sensitivity check, the worked examples; warnings grouped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from poolkit.cli.precision_render import precision_table
from poolkit.cli.render import _sci, failure_lines, unavailable_lines

if TYPE_CHECKING:
    from poolkit.verify.examples import ExamplesReport
    from poolkit.verify.report import VerifyReport


def verify_table(report: VerifyReport) -> Group:
    src = report.data
    title = (
        f"poolkit verify — {src.images:,} {src.kind} images ({src.origin}), batch {report.batch_size}, "
        f"atol {report.atol:g}, rtol {report.rtol:g}"
    )
    table = Table(title=title)
    table.add_column("model", no_wrap=True, min_width=8)
    table.add_column("runtime", no_wrap=True, min_width=max((len(_runtime(r)) for r in report.rows), default=7))
    table.add_column("device", no_wrap=True)
    table.add_column("sets", justify="right", no_wrap=True)
    table.add_column("max abs", justify="right", no_wrap=True)
    table.add_column("max rel", justify="right", no_wrap=True)
    table.add_column("needs atol", justify="right", no_wrap=True)
    table.add_column("needs rtol", justify="right", no_wrap=True)
    table.add_column("fp64 noise", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    verdicts = {
        **{f"passed (within {p} rounding)": "[green]passed[/green] (rounding)" for p in ("fp32", "bf16", "fp16")},
        "passed": "[green]passed[/green]",
        "failed": "[bold red]FAILED[/bold red]",
        "unavailable": "[yellow]unavailable[/yellow]",
    }
    for r in report.rows:
        worst, g = r.worst, r.guidance
        table.add_row(
            Text(r.model),
            _runtime(r),  # never a bf16 row shown as fp32
            r.device,
            str(len(r.input_names)) if r.input_names else "—",
            _sci(worst.max_abs) if worst is not None else "—",
            _sci(worst.max_rel) if worst is not None else "—",
            _sci(g.min_atol) if g else "—",
            _sci(g.min_rtol) if g else "—",
            _sci(g.noise_floor) if g else "—",
            verdicts[r.verdict],
        )
    notes = unavailable_lines(
        [(f"{r.runtime} {r.device}", r.reason or "") for r in report.rows if r.status == "unavailable"]
    )
    for r in report.rows:
        if r.status == "failed":
            _failure_notes(notes, r)
        elif r.verdict.startswith("passed (within") and r.rounding is not None:
            mismatched = sum(c.mismatched for c in r.outputs)
            notes.append("≈ ", style="bold green").append(f"{r.model} {r.format} {r.runtime} {r.device}", style="bold")
            notes.append(f": {r.verdict}: {mismatched:,} element(s) off eager beyond atol/rtol; ")
            notes.append(r.rounding.summary + "\n")
    parts: list = [table]
    if report.data_fits:
        fits: dict[str, list[str]] = {}
        for model, fit in report.data_fits.items():
            fits.setdefault(fit, []).append(model)
        for fit, models in fits.items():
            parts.append(Text(f"data for {', '.join(models)}: {src.kind} {fit}", style="dim"))
    if report.input_sets:
        legend = Text(f"sets ({len(report.input_sets)}) — ", style="dim")
        legend.append(
            "; ".join(f"{_SET_SHORT.get(n, n)}: {about}" for n, about in report.input_sets.items()), style="dim"
        )
        parts.append(legend)
    if report.sensitivity:
        parts.append(sensitivity_table(report))
    if report.precisions:  # export --precision variants, each judged on its own rounding
        parts.append(precision_table(report.precisions))
    if notes:
        parts.append(notes)
    warnings = report.warnings
    if warnings:
        parts.append(grouped_warnings(warnings))
    s = report.summary
    parts.append(
        Text(
            f"{s['passed']} passed, {s['failed']} failed"
            + (f", {s['unavailable']} unavailable" if s["unavailable"] else "")
            + (f"; {len(warnings)} warning{'s' * (len(warnings) != 1)}" if warnings else "")
            + (
                f"; precision variants: {sum(p.passed for p in report.precisions)} passed,"
                f" {sum(p.status == 'failed' for p in report.precisions)} failed"
                if report.precisions
                else ""
            ),
            style="bold green" if report.passed else "bold red",
        )
    )
    return Group(*parts)


WARNINGS_PER_MODEL = 3


def grouped_warnings(warnings: list[str]) -> Text:
    """At most a few lines per model, counted; every warning stays in the JSON."""
    by_model: dict[str, list[str]] = {}
    for w in warnings:
        model, _, rest = w.partition(": ")
        by_model.setdefault(model.split(" ")[0], []).append(w)
    text = Text()
    for model, items in by_model.items():
        for w in items[:WARNINGS_PER_MODEL]:
            text.append("! ", style="bold yellow").append(w + "\n")
        if len(items) > WARNINGS_PER_MODEL:
            more = len(items) - WARNINGS_PER_MODEL
            text.append("! ", style="bold yellow").append(f"{model}: {more} more warning(s), all in the JSON\n")
    return text


_SET_SHORT = {"raw": "raw", "normalized": "norm", "edge": "edge", "odd": "odd", "tutorial": "tutor"}


def _failure_notes(notes: Text, r: Any) -> None:
    notes.append("✗ ", style="bold red")
    notes.append(f"{r.model} {r.format} {r.runtime} {r.device}", style="bold").append(f": {r.reason}\n")
    worst = r.worst
    if worst is not None and worst.worst_location:
        notes.append(
            f"    worst element at {tuple(worst.worst_location)} of {r.worst_input}: eager {worst.worst_expected!r}, "
            f"artifact {worst.worst_actual!r}; cosine {worst.cosine:.6f}"
            + (f"; top-1 agreement {worst.top1_agreement:.1%}" if worst.top1_agreement is not None else "")
            + "\n"
        )
    for run in r.inputs:
        verdict = "passed" if run.passed else ("FAILED" if run.batches else "not run")
        skipped = f"; skipped {'; '.join(run.skipped)}" if run.skipped else ""
        notes.append(f"    {run.name}: {verdict}, max abs {_sci(run.max_abs)} on {run.images:,} images{skipped}\n")
    if r.diverging_layer:
        notes.append(f"    first diverging layer: {r.diverging_layer}\n")
    if r.heatmap:
        notes.append(f"    error heatmap: {r.heatmap} (TensorBoard: {r.tensorboard})\n")
    if r.replay:
        notes.append(f"    reproduce: {r.replay}\n")


def sensitivity_table(report: VerifyReport) -> Table:
    """Would this data, at this tolerance, have told a wrong artifact from the right one?"""
    table = Table(title=f"sensitivity — wrong variants of each model, at atol {report.atol:g}, rtol {report.rtol:g}")
    table.add_column("model", no_wrap=True)
    table.add_column("wrong variant")
    table.add_column("caught by")
    table.add_column("missed by")
    for s in report.sensitivity:
        caught = " ".join(_SET_SHORT.get(n, n) for n in s.detected_by) or "nothing"
        if s.threshold is not None:
            caught += f" (from {100 * s.threshold:.2g} %)"
        table.add_row(
            Text(s.model),
            Text(s.variant),
            Text("equivalent here", style="green")
            if s.equivalent
            else Text(caught, style="" if s.detected_by else "bold red"),
            Text(" ".join(_SET_SHORT.get(n, n) for n in s.missed_by) if s.missed_by and not s.equivalent else "—",
                 style="yellow" if s.missed_by and not s.equivalent else ""),
        )  # fmt: skip
    return table


def examples_table(report: ExamplesReport) -> Group:
    """The tutorials' worked examples: expected numbers against what each artifact computed."""
    table = Table(title=f"poolkit verify --examples — the tutorials' worked examples through {report.models_dir}")
    for col in ("example", "model", "runtime", "device", "tutorial gives", "artifact gives", "verdict"):
        table.add_column(col)
    verdicts = {
        "passed": "[green]exact[/green]",
        "failed": "[bold red]FAILED[/bold red]",
        "unavailable": "[yellow]unavailable[/yellow]",
    }
    for r in report.rows:
        table.add_row(
            Text(r.example),
            Text(r.model),
            r.runtime,
            r.device,
            str(r.expected),
            str(r.got) if r.got is not None else "—",
            verdicts[r.status],
        )
    notes = failure_lines([(f"{r.model} {r.runtime} {r.device}", r.reason or "") for r in report.rows if r.reason])
    passed = sum(r.passed for r in report.rows)
    summary = Text(f"{passed} of {len(report.rows)} exact", style="bold green" if report.passed else "bold red")
    return Group(table, notes, summary)


def _runtime(r: Any) -> str:
    """The runtime's name, with its precision where it is not fp32 (an OpenVINO bf16 row says so)."""
    return r.runtime if r.precision == "fp32" else f"{r.runtime} ({r.precision})"
