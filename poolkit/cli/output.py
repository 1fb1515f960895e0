"""What each command prints: a rich table for people, `--json` for machines, notes and errors on stderr.

One output switch for every command. Computing never prints; the commands' logic returns dataclasses
and the functions here render them (tables come from `render.py`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from poolkit.cli.bench_render import bench_table, changes_table
from poolkit.cli.progress import progress_callbacks  # noqa: F401 - the commands' progress, re-exported
from poolkit.cli.render import export_table, sweep_table, zoo_table
from poolkit.cli.terminal import console, err_console, json_stream
from poolkit.cli.verify_render import examples_table, verify_table
from poolkit.common.files import to_plain
from poolkit.exporter.export import STATIC_FALLBACK
from poolkit.exporter.formats.torchscript import JIT_DEPRECATION_NOTE

if TYPE_CHECKING:
    from poolkit.bench.run import BenchRun
    from poolkit.common.runs import Run
    from poolkit.exporter.export import ExportRun
    from poolkit.exporter.manifest import ExportRecord
    from poolkit.services.comparator import Comparison
    from poolkit.show.run import ShowRun
    from poolkit.sweep.run import SweepRun
    from poolkit.verify.examples import ExamplesReport
    from poolkit.verify.report import VerifyReport
    from poolkit.zoo.info import ZooRow


def print_json(data: Any) -> None:
    """Machine output on stdout, nothing else mixed in."""
    out = json_stream()
    out.write(json.dumps(to_plain(data), indent=2, default=str) + "\n")
    out.flush()


# C0/C1 controls, and the bidirectional overrides that make a terminal show text in another order.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_MESSAGE = 2000  # characters of one error line: a 300 kB option value is named, not echoed whole


def printable(text: str) -> str:
    """User text as it may reach a terminal: no escape sequences, no line breaks, no markup.

    Control characters (ESC starts colour and cursor sequences) become visible `\\x1b` escapes and
    newlines a space, so a crafted path or spec token can neither repaint the screen nor add lines;
    rich markup is escaped, so `data[old]` is shown as written.
    """
    flat = " ".join(str(text).splitlines())
    return escape(_CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), flat))


def note(message: str) -> None:
    """A one-line remark on stderr, so it never pollutes `--json` on stdout. The text is shown literally."""
    err_console.print(f"[dim]note:[/dim] {printable(message)}", soft_wrap=True)


def error(message: str) -> None:
    """The one line a failed command prints; user text inside it is never read as markup."""
    if len(message) > MAX_MESSAGE:
        message = f"{message[: MAX_MESSAGE - 40]}… ({len(message):,} characters in all)"
    err_console.print(f"[bold red]error:[/bold red] {printable(message)}", soft_wrap=True)


def run_line(run: Run) -> None:
    """Where a command's run is, on stderr (stdout stays the command's own output, JSON included)."""
    status = run.record.get("status")
    if status not in ("ok", "failed"):  # an error stays the one `error:` line; the record says the rest
        return
    tail = "" if status == "ok" else " (a check failed: exit 1)"
    err_console.print(f"[dim]run: {printable(str(run.folder))}{tail}[/dim]", soft_wrap=True)


def print_zoo(rows: list[ZooRow], batch: int, json_out: bool) -> None:
    print_json(rows) if json_out else console.print(zoo_table(rows, batch))


def print_export_progress(record: ExportRecord) -> None:
    mark = "[green]✓[/green]" if record.ok else "[red]✗[/red]"
    variant = f" {record.precision}" if record.precision != "fp32" else ""
    console.print(f"{mark} {escape(record.name)} {record.format}{variant}")


def print_export(run: ExportRun, out: Path, json_out: bool) -> None:
    print_json(run.records) if json_out else console.print(export_table(run.records, str(out)))
    for w in run.warnings:
        if STATIC_FALLBACK in w:  # the dynamic-axes fallback: said in one line per artifact
            note(w)
    for line in run.notes:
        note(line)
    if run.jit_deprecated:
        import torch  # lazy: every command prints through this module, and an error line must not pay for torch

        note(JIT_DEPRECATION_NOTE.format(version=torch.__version__.split("+")[0]))


def print_report(data: Any, table: Any, path: Path, json_out: bool) -> None:
    """A report written to `path`: its JSON, or its table and where the file is."""
    if json_out:
        print_json(data)
        return
    console.print(table)
    console.print(f"[dim]report: {escape(str(path))}[/dim]")


def print_verify(report: VerifyReport, path: Path, json_out: bool) -> None:
    if report.exported:
        note(f"exported {', '.join(report.exported)} first (formats the asked runtimes read were missing)")
    print_report(report, None if json_out else verify_table(report), path, json_out)


def print_replay(meta: dict[str, Any], results: list[Comparison], json_out: bool) -> None:
    if json_out:
        print_json({"replayed": meta, "outputs": results})
        return
    for i, c in enumerate(results):
        verdict = "[green]passed[/green]" if c else "[bold red]FAILED[/bold red]"
        what = escape(f"{meta['model']} {meta['format']} {meta['runtime']} {meta['device']}")
        console.print(
            f"{what} output {i}: {verdict} — max abs {c.max_abs:.3g}, {c.mismatched:,} of {c.elements:,} elements "
            f"out of tolerance, worst at {tuple(c.worst_location)}"
        )


def print_bench(run: BenchRun, baseline: Path | None, json_out: bool) -> None:
    if run.exported:
        note(f"exported {', '.join(run.exported)} first")
    if json_out:
        print_json({"report": run.report, "files": {k: str(v) for k, v in run.files.items()}, "changes": run.changes})
        return
    console.print(bench_table(run.report, console.width))
    if run.changes is not None:
        console.print(changes_table(run.changes, str(baseline)))
    console.print(f"[dim]written: {escape(', '.join(str(p) for p in run.files.values()))}[/dim]")


def print_self_check(check: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(check)
        return
    console.print(
        f"self-check on {escape(check['model'])} (batch {check['batch_size']}, {check['threads']} threads): "
        f"poolkit eager p50 {check['poolkit_p50_ms']:.3f} ms, torch.utils.benchmark median "
        f"{check['torch_benchmark_median_ms']:.3f} ms, ratio {check['ratio']:.3f} — "
        + ("[green]within 10%[/green]" if check["within_10_percent"] else "[red]NOT within 10%[/red]")
    )
    ort = check.get("onnxruntime")
    if ort:
        console.print(
            f"self-check on {escape(ort['model'])}: poolkit onnxruntime p50 ({ort['process']}, spinning "
            f"{'on' if ort['ort_spinning'] else 'off'}) {ort['poolkit_p50_ms']:.3f} ms, plain ORT loop in its own "
            f"process {ort['plain_loop_p50_ms']:.3f} ms, ratio {ort['ratio']:.3f} — "
            + ("[green]within 10%[/green]" if ort["within_10_percent"] else "[red]NOT within 10%[/red]")
        )
    near = check.get("neighbours")
    if near:
        ok = {True: "[green]yes[/green]", False: "[red]NO[/red]"}
        console.print(
            f"self-check beside {escape(near['runtimes'][1])}: eager p99 {near['eager_p99_beside_ms']:.3f} ms, alone "
            f"{near['eager_p99_alone_ms']:.3f} ms, ratio {near['eager_p99_ratio']:.2f} (within 2.5x: "
            f"{ok[near['eager_tail_within_2_5x']]}); its p50 {near['p50_beside_ms']:.3f} ms and end-to-end "
            f"{near['end_to_end_p50_ms']:.3f} ms against the plain loop's {near['plain_loop_p50_ms']:.3f} ms, ratios "
            f"{near['p50_ratio']:.2f} and {near['end_to_end_ratio']:.2f} (within 1.25x: "
            f"{ok[near['p50_within_1_25x']]}, {ok[near['end_to_end_within_1_25x']]})"
        )


def print_show(run: ShowRun, logdir: Path, json_out: bool) -> None:
    if run.exported:
        note(f"exported {', '.join(run.exported)} first")
    if json_out:
        print_json({"data": run.images.source, "results": run.results})
        return
    for r in run.results:
        shape = "x".join(map(str, r.output_shape))
        console.print(f"[bold]{escape(r.model)}[/bold] {escape(f'[{r.runtime}]')} output {shape}: {escape(r.display)}")
        if r.data_fit:
            console.print(f"    input: {escape(run.images.source.kind)} {escape(r.data_fit)}")
        console.print(f"    picture: {escape(r.png)}")
    console.print(f"TensorBoard: tensorboard --logdir {escape(str(logdir))}")


def print_sweep(run: SweepRun, json_out: bool) -> None:
    from poolkit.sweep.report import summary  # lazy: it pulls in onnx (via sweep.blame), which only sweep needs

    if run.resumed:
        note(f"resumed: {run.resumed:,} of {len(run.results):,} cells came from the journal")
    if run.skipped_lines:
        note(f"journal: skipped {run.skipped_lines:,} unreadable line(s) (cut short or not results)")
    if run.newest:
        note("newest opsets (measured): " + ", ".join(f"{e} {n or 'none'}" for e, n in run.newest.items()))
    if json_out:
        print_json({"summary": summary(run.results), "json": str(run.json_path), "markdown": str(run.markdown_path)})
        return
    console.print(sweep_table(run.results, console.width))
    console.print(f"[dim]written: {escape(f'{run.json_path}, {run.markdown_path}')}[/dim]")


def print_examples(found: ExamplesReport, path: Path, json_out: bool) -> None:
    print_report(found, None if json_out else examples_table(found), path, json_out)
