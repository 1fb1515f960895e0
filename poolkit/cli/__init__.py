"""The `poolkit` command line: thin Typer commands that parse, call one function, render.

`app` lives in `app.py`; each module below registers its commands on it. The logic is in
`poolkit.commands`, the tables in `render.py`, what goes to the terminal in `output.py`.
"""

from poolkit.cli import bench_command, check_commands, model_commands, sweep_command  # noqa: F401 - they register
from poolkit.cli.app import app

__all__ = ["app"]
