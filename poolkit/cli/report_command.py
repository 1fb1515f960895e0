"""`poolkit report`: one self-contained HTML page from the results folder (parse, call one function, print)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from poolkit.cli.app import app, handles_errors
from poolkit.cli.options import JsonOpt, ModelsDirOpt, writable_file
from poolkit.common.errors import EXIT_OK


@app.command()
@handles_errors
def report(
    results: Annotated[Path, typer.Option(help="Folder with the JSON results (verify, bench, show, sweep).")] = Path(
        "results"
    ),
    models: ModelsDirOpt = Path("models"),
    out: Annotated[Path | None, typer.Option(help="The HTML file to write; default RESULTS/report.html.")] = None,
    json_out: JsonOpt = False,
) -> int:
    """One self-contained HTML page of every result (offline, pictures inside); prints its path.

    Sections: environment, export, verify, bench, show and conformance, from the results files.
    """
    from poolkit.cli.output import note, print_json, printable
    from poolkit.report.build import build_report  # jinja2 and Pillow: imported when the command runs

    done = build_report(results, writable_file(out or results / "report.html", "--out"), models)
    if json_out:
        print_json(done)
        return EXIT_OK
    for message in done.notes:
        note(message)
    print(f"report: {printable(str(done.path))} ({done.bytes / 1e6:.1f} MB, {done.seconds:.2f} s)")
    return EXIT_OK
