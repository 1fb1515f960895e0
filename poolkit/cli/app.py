"""The Typer application and the one error boundary every command goes through.

Every PoolkitError becomes one line on stderr and its exit code (2 usage or data, 1 failed check);
so do a file the system refuses (OSError: a read-only folder, `--out` naming a file), input too
deeply nested to parse (RecursionError), and Click's usage errors (one line, exit 2, not a box).
An unexpected exception is a bug: still one line, naming its type and how to see the traceback
(`POOLKIT_DEBUG=1`), exit 1. Ctrl-C is one line and exit 130 (SIGTERM: 143), within
`interrupts.GRACE_S` even while a runtime call does not return (`interrupts.watch`). Library warnings (torch
UserWarnings, numpy RuntimeWarnings) are not shown: what matters is reported in the results.
Heavy imports happen inside the command bodies, so `poolkit --help` stays instant.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # typer 0.29 vendors click
from typer.core import TyperGroup

from poolkit.cli.interrupts import GRACE_S, watch
from poolkit.cli.run_scope import close_run
from poolkit.common.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PoolkitError, one_line
from poolkit.common.signals import deferred

DEBUG_ENV = "POOLKIT_DEBUG"  # set to 1 to let unexpected exceptions (bugs) show their traceback
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a CI timeout, systemd), raised like Ctrl-C so that the same cleanup runs:
    staged files removed, workers stopped, the journal and manifest left whole."""


_REPORTED: list[bool] = []  # a command's error line was printed
_TERMINATED: list[bool] = []  # SIGTERM arrived: library code may re-raise it as a plain KeyboardInterrupt


def _on_sigterm(signum: int, frame: Any) -> None:
    _TERMINATED.append(True)
    raise Terminated


def catch_sigterm() -> None:
    """Without a handler, SIGTERM kills Python on the spot: no `finally`, staged files left behind.
    Both handlers wait for the end of a `signals_held` block (a commit) that they arrive in."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, deferred(_on_sigterm))
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # an ignored SIGINT stays ignored
            signal.signal(signal.SIGINT, deferred(signal.default_int_handler))


def watchdog_line(signum: int) -> tuple[str | None, int]:
    """What the interrupt watchdog prints when a runtime call kept the main thread from stopping."""
    if signum == signal.SIGTERM:
        _TERMINATED.append(True)
    message, code = one_line_error(KeyboardInterrupt())
    close_run(code, message)  # the run's record says how it ended, even when stopped at once
    if _REPORTED:
        return None, code
    _REPORTED.append(True)
    return f"{message}; stopped at once: a call did not return within {GRACE_S:g} s", code


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line_error(exc: BaseException) -> tuple[str, int]:
    """The message and exit code for any exception that reached the CLI edge."""
    if isinstance(exc, PoolkitError):
        return str(exc), exc.exit_code
    if isinstance(exc, Terminated) or (isinstance(exc, KeyboardInterrupt) and _TERMINATED):
        return "terminated (SIGTERM); files already written are kept", EXIT_TERMINATED
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted; files already written are kept", EXIT_INTERRUPTED
    if isinstance(exc, OSError):
        # The system refused a path the user gave (or its folder): name the path and the reason.
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        reason = exc.strerror or one_line(exc)
        if isinstance(exc, FileExistsError):
            reason = "it exists and is not a folder"
        elif isinstance(exc, NotADirectoryError):
            reason = "part of the path is a file, not a folder"
        return (f"cannot use {where}: {reason}" if where else f"file system error: {reason}"), EXIT_USAGE
    if isinstance(exc, RecursionError):
        return "input nested too deeply to process (simplify the spec or file)", EXIT_USAGE
    if isinstance(exc, SystemExit):  # user code (a model file) called sys.exit() inside the command
        return f"stopped by sys.exit({exc.code!r}) inside the command (in your model's code?)", EXIT_USAGE
    if isinstance(exc, MemoryError):
        return "not enough memory for this request: use smaller sizes", EXIT_USAGE
    return (
        f"unexpected {one_line(exc)} (a poolkit bug: please report it; {DEBUG_ENV}=1 shows the traceback)",
        EXIT_FAILED,
    )


class OneLineGroup(TyperGroup):
    """The command group: usage errors and anything escaping a command are one `error:` line."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        from poolkit.cli.output import error  # lazy: rich's console would slow `poolkit --help`

        saved_logging = logging.root.manager.disable
        threads_before = set(threading.enumerate())
        catch_sigterm()
        stop_watching = watch(watchdog_line)
        try:
            with warnings.catch_warnings():
                if not _debug():
                    warnings.simplefilter("ignore")
                    logging.disable(logging.WARNING)  # torch's logged warnings too (torch.compile's "W1124 ...")
                code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:  # `poolkit` alone: the help is the answer (rich printed it already)
            if exc.format_message().strip():
                sys.stderr.write(exc.format_message() + "\n")
            code = exc.exit_code
        except ClickException as exc:
            error(usage_line(exc))
            code = exc.exit_code
        except typer.Abort as exc:  # Click's own word for a KeyboardInterrupt (or SIGTERM) while parsing
            message, code = one_line_error(exc.__context__ or KeyboardInterrupt())
            error(message)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM outside a command body (while parsing)
            message, code = one_line_error(exc)
            error(message)
        except Exception as exc:  # noqa: BLE001 - the last boundary: one line, never a traceback
            if _debug():
                raise
            message, code = one_line_error(exc)
            error(message)
        finally:
            logging.disable(saved_logging)
            stop_watching()
        code = code if isinstance(code, int) else EXIT_OK
        if code == EXIT_INTERRUPTED and not _REPORTED:  # Typer swallowed an interrupt while parsing: say it
            message, code = one_line_error(KeyboardInterrupt())
            error(message)
        if standalone_mode:
            if lingering_threads(threads_before):
                # A thread a user's model started (never joined) would keep poolkit alive forever.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            sys.exit(code)
        return code


def lingering_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Non-daemon threads this command started that would keep the interpreter alive after it.

    Threads alive before the command are not its own (in a test process, an earlier command's or a
    library's); an idle `concurrent.futures` worker (torch's compile pool) is shut down and joined by
    `concurrent.futures` itself at exit, so it never hangs the process. Counting either made the
    process `os._exit` under a caller that had merely used such a library earlier (pytest, exit 2)."""
    return [
        t
        for t in threading.enumerate()
        if t.is_alive() and not t.daemon and t is not threading.main_thread() and t not in before
        and getattr(t, "_target", None) is not _executor_worker()
    ]  # fmt: skip


def _executor_worker() -> object:
    import concurrent.futures.thread  # noqa: PLC0415 - lazily: only asked when a thread lingers

    return concurrent.futures.thread._worker


def main() -> None:
    """The `poolkit` console script: the app, then an exit that no late signal turns into a kill.

    Python's finalisation puts SIGINT and SIGTERM back to their default action; one arriving then
    (the command done, its files written, its exit code decided) killed the process with -15 and no
    line. Ignored from here on, it leaves the exit code the command decided. (Not in `app` itself:
    a caller running it in-process, as tests do, keeps its own Ctrl-C.)"""
    try:
        app()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def _closed(code: int, message: str | None = None) -> None:
    """Close the command's run (if it opened one) and say where it is, on stderr."""
    run = close_run(code, message)
    if run is not None:
        from poolkit.cli.output import run_line

        run_line(run)


def usage_line(exc: ClickException) -> str:
    """Click's message on one line, with where to look for the right usage."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


app = typer.Typer(
    name="poolkit",
    cls=OneLineGroup,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion: Typer's own, for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        import poolkit

        print(f"poolkit {poolkit.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="Print poolkit's version and exit."
    ),
) -> None:
    """Build the Tudui conv/pool/activation modules, export them (TorchScript, ONNX, torch.export .pt2,
    AOTInductor), verify them against eager PyTorch on CIFAR10, benchmark, show and sweep them.
    TorchScript files are code: poolkit loads one only when its sha256 matches the manifest poolkit wrote."""


F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(fn: F) -> F:
    """Turn anything a command raises into a one-line message and its exit code: never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from poolkit.cli.terminal import stdout_for_json_only  # lazy, as in OneLineGroup.main

        try:
            with stdout_for_json_only(bool(kwargs.get("json_out"))):
                code = fn(*args, **kwargs)
        except typer.Exit as exc:
            _closed(exc.exit_code)
            raise
        except ClickException as exc:
            _closed(exc.exit_code, exc.format_message())
            raise
        except (Exception, KeyboardInterrupt, SystemExit) as exc:  # SystemExit: sys.exit() in a user's model
            # Imported lazily, as in OneLineGroup.main, and here, not before the try: an interrupt
            # during that first import of rich would escape to Typer, which turns it into a silent exit 130.
            from poolkit.cli.output import error

            message, exit_code = one_line_error(exc)
            if _debug() and not isinstance(exc, (PoolkitError, KeyboardInterrupt)):
                close_run(exit_code, message)
                raise
            error(message)
            _REPORTED.append(True)
            _closed(exit_code, message)
            raise typer.Exit(exit_code) from None
        _closed(code or EXIT_OK)
        raise typer.Exit(code or EXIT_OK)

    return wrapper  # type: ignore[return-value]
