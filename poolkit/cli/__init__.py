"""The `poolkit` command line: thin Typer commands that parse, call one function, render.

`app` lives in `app.py`; each module below registers its commands on it, in the order `--help`
lists them (the order of the main job: zoo, export, verify, show, bench, then sweep). The logic is
in `poolkit.commands`, the tables in `render.py`, what goes to the terminal in `output.py`.
"""

# ruff: noqa: I001 - the import order is the order of the commands in --help
from poolkit.cli.app import app, main
from poolkit.cli import model_commands, show_verify_commands, bench_command, sweep_command  # noqa: F401 - they register
from poolkit.cli import report_command  # noqa: F401,E402 - registers `poolkit report`
from poolkit.cli import runs_command  # noqa: F401,E402 - registers `poolkit runs list|prune`, listed last

__all__ = ["app", "main"]
