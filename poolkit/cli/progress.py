"""Progress while a command works: a bar on stderr when stderr is a terminal, plain lines otherwise.

A bar drawn to a file or a pipe (`make demo > log`, CI) shows nothing at all, so there a long step
prints a line per model on stdout instead (and one at least every PLAIN_EVERY_S), never silence:
stdout, beside the command's own lines and tables (export's line per artifact), so that stderr
stays for notes and the one `error:` line. Under `--json` stdout is the JSON alone: no lines.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from poolkit.cli.terminal import console, err_console, json_active

PLAIN_EVERY_S = 30.0  # a line at least this often on a long model, when the progress is plain lines


@contextlib.contextmanager
def progress_callbacks(
    label: str, rate: str | None = None
) -> Iterator[tuple[Callable[..., None], Callable[..., None]]]:
    """Progress on stderr: yields (set_total(n[, done]), advance(description)).

    On a terminal, a bar, gone when done; it appears only once work starts, so a preflight error
    stays one clean line. With `rate` (a unit, like "cells"), it also shows items per second and an
    ETA, from the items done in this run (resumed ones, counted by `set_total`, do not inflate the rate).
    Not on a terminal (a log, CI, `make demo > log`), a bar draws nothing: plain lines on stdout
    instead, one when a new model (the description's first word) starts and one at least every
    PLAIN_EVERY_S (none under `--json`).

    `advance(description, units)` completes `units` of work (bench's rounds: a row may complete several,
    or none while it only says what runs now); the rate counts from the first unit done, so the start-up
    before it (bench's workers importing torch) does not skew the ETA.
    """
    if not err_console.is_terminal:
        with _plain_progress(label, rate) as callbacks:
            yield callbacks
        return
    columns: tuple[Any, ...] = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    if rate:
        columns += (TextColumn("{task.fields[rate]}"),)
    progress = Progress(*columns, console=err_console, transient=True)
    task = progress.add_task(label, total=None, rate="")
    started: list[bool] = []
    clock = {"start": 0.0, "first": 0, "done": 0, "left": 0}

    def start() -> None:
        if not started:
            progress.start()
            started.append(True)

    def set_total(total: int, completed: int = 0) -> None:
        start()
        clock.update(start=0.0, first=0, done=0, left=total - completed)
        progress.update(task, total=total, completed=completed)

    def advance(description: str, units: int = 1) -> None:
        start()
        clock["done"] += units
        if units and not clock["start"]:
            clock.update(start=time.monotonic(), first=clock["done"])
        fields: dict[str, Any] = {}
        if rate and clock["done"] > clock["first"]:
            done = clock["done"] - clock["first"]
            fields["rate"] = _rate(done, clock["start"], clock["left"] - clock["first"], rate)
        progress.update(task, advance=units, description=escape(description), **fields)

    try:
        yield set_total, advance
    finally:
        if started:
            progress.stop()


def _rate(done: float, start: float, left: float, unit: str) -> str:
    per_s = done / max(time.monotonic() - start, 1e-9)
    eta = max(left - done, 0) / per_s if per_s else 0.0
    return f"{per_s:.2f} {unit}/s, ETA {int(eta // 60)}:{int(eta % 60):02d}"


@contextlib.contextmanager
def _plain_progress(label: str, rate: str | None) -> Iterator[tuple[Callable[..., None], Callable[..., None]]]:
    state: dict[str, Any] = {"total": None, "done": 0, "base": 0, "left": 0, "start": time.monotonic(),
                             "last": 0.0, "model": None}  # fmt: skip

    def set_total(total: int, completed: int = 0) -> None:
        state.update(total=total, base=completed, done=0, left=total - completed, start=time.monotonic())

    def advance(description: str, units: int = 1) -> None:
        state["done"] += units
        model = description.split(" ", 1)[0]
        now = time.monotonic()
        if json_active() or (model == state["model"] and now - state["last"] < PLAIN_EVERY_S):
            return
        state.update(model=model, last=now)
        count = state["base"] + state["done"]
        of = f"{count:,}/{state['total']:,}" if state["total"] else f"{count:,}"
        extra = f", {_rate(state['done'], state['start'], state['left'], rate)}" if rate else ""
        console.print(f"{label}: {escape(description)} ({of}{extra})", soft_wrap=True, highlight=False)

    yield set_total, advance
