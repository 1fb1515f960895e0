"""`poolkit runs list` and `poolkit runs prune`: the runs under the results root (`poolkit.common.runs`)."""

from __future__ import annotations

from typing import Annotated

import typer

from poolkit.cli.app import app, handles_errors
from poolkit.cli.options import JsonOpt
from poolkit.common.errors import EXIT_OK

runs_app = typer.Typer(
    name="runs",
    help="List and prune the runs under the results folder ($POOLKIT_RESULTS, else ./results).",
    no_args_is_help=True,
)
app.add_typer(runs_app)

CommandOpt = Annotated[
    str | None, typer.Option("--command", "-c", help="Only the runs of this command (bench, verify...).")
]


@runs_app.command("list")
@handles_errors
def list_(command: CommandOpt = None, json_out: JsonOpt = False) -> int:
    """Every run, oldest first: status, seconds, machine, files; * marks the latest of each command."""
    from poolkit.cli.output import console, print_json
    from poolkit.cli.render import runs_table
    from poolkit.common.run_index import describe
    from poolkit.common.runs import latest_runs, list_runs, results_root

    root = results_root()
    runs = [describe(r) for r in list_runs(root, command)]
    latest = {r.id for r in latest_runs(root).values()}
    if json_out:
        print_json({"root": str(root), "latest": sorted(latest), "runs": runs})
    else:
        console.print(runs_table(runs, str(root), latest))
    return EXIT_OK


@runs_app.command()
@handles_errors
def prune(
    keep: Annotated[int, typer.Option(min=1, max=1_000_000, help="Runs of each command to keep, newest first.")],
    command: CommandOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    json_out: JsonOpt = False,
) -> int:
    """Remove all but the newest --keep runs of each command. Never removed: the latest run of a
    command, a run in progress, a folder without a readable run record."""
    from poolkit.cli.output import console, print_json, printable
    from poolkit.common.run_index import describe
    from poolkit.common.runs import prune_runs, results_root

    removed = prune_runs(results_root(), keep, command, dry_run)
    if json_out:
        print_json({"dry_run": dry_run, "removed": [describe(r) for r in removed]})
        return EXIT_OK
    verb = "would remove" if dry_run else "removed"
    for run in removed:
        console.print(f"{verb} {printable(run.id)} ({printable(run.status)})")
    console.print(f"{verb} {len(removed)} run(s)")
    return EXIT_OK
