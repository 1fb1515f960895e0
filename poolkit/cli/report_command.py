"""`poolkit report`: one self-contained HTML page from saved runs (parse, call one function, print)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from poolkit.cli.app import app, handles_errors
from poolkit.cli.options import JsonOpt, ModelsDirOpt, given_values, writable_file
from poolkit.common.errors import EXIT_OK


@app.command()
@handles_errors
def report(
    results: Annotated[
        Path | None,
        typer.Option(
            help="The results folder: its runs (the latest of each command), or a folder of results files"
            " (verify.json, bench.json...). Default: $POOLKIT_RESULTS, else results."
        ),
    ] = None,
    runs: Annotated[
        list[str] | None,
        typer.Option(
            help="Runs to show instead of the latest: run ids (or their start), a command's latest (bench), its"
            " earlier ones (bench~1), or folders. Two bench runs are compared row by row. Repeat or use commas."
        ),
    ] = None,
    models: ModelsDirOpt = Path("models"),
    out: Annotated[Path | None, typer.Option(help="The HTML file to write; default RESULTS/report.html.")] = None,
    json_out: JsonOpt = False,
) -> int:
    """One self-contained HTML page of saved results (offline, pictures inside); prints its path. Nothing is re-run.

    Sections: a summary, then export, verify, bench, show, conformance and the environment, each
    naming the run and machine it came from. Bench runs named together are compared with the shift test.
    """
    from poolkit.cli.output import note, print_json, printable
    from poolkit.common.files import to_plain
    from poolkit.common.runs import results_root
    from poolkit.report.build import build_report  # jinja2 and Pillow: imported when the command runs
    from poolkit.report.schema import result_folders

    folder = results if results is not None else results_root()
    named = given_values(runs, "--runs") or None
    benches = [o for o in result_folders(folder, named)[0] if (o.folder / "bench.json").is_file()]
    comparisons = compare_benches(benches)
    plain = [{"old": old, "new": new, "changes": to_plain(changes)} for old, new, changes in comparisons]
    done = build_report(folder, writable_file(out or folder / "report.html", "--out"), models, named, plain)
    if json_out:
        print_json({**done.__json__(), "comparisons": plain})
        return EXIT_OK
    for message in done.notes:
        note(message)
    print_comparisons(comparisons)
    print(f"report: {printable(str(done.path))} ({done.bytes / 1e6:.1f} MB, {done.seconds:.2f} s)")
    return EXIT_OK


def compare_benches(benches: list[Any]) -> list[tuple[str, str, list[Any]]]:
    """Each bench run named after the first, against the first: (old, new, bench's Change rows), from
    their JSON alone (bench's shift test on the saved raw samples; nothing is timed)."""
    from poolkit.bench.report import compare_files

    if len(benches) < 2:
        return []
    base = benches[0]
    return [
        (base.label, o.label, compare_files(base.folder / "bench.json", o.folder / "bench.json")) for o in benches[1:]
    ]


def print_comparisons(comparisons: list[tuple[str, str, list[Any]]]) -> None:
    from poolkit.cli.bench_render import changes_table
    from poolkit.cli.output import console, printable

    for old, new, changes in comparisons:
        console.print(f"bench: {printable(new)}")
        console.print(changes_table(changes, old))
