"""The Typer application and the one error boundary every command goes through.

Every PoolkitError becomes one line on stderr and its exit code (2 usage or data, 1 failed check);
Ctrl-C is one line and exit 130. Heavy imports happen inside the command bodies, so
`poolkit --help` stays instant.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from poolkit.common.errors import EXIT_OK, PoolkitError

app = typer.Typer(
    name="poolkit",
    help="Build the Tudui conv/pool/activation modules, export them to TorchScript and ONNX, "
    "verify them against eager PyTorch on CIFAR10, and benchmark them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(fn: F) -> F:
    """Turn PoolkitError into a one-line message and its exit code: never a traceback for users."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from poolkit.cli.output import error

        try:
            code = fn(*args, **kwargs)
        except PoolkitError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted; files already written are kept")
            raise typer.Exit(130) from None
        raise typer.Exit(code or EXIT_OK)

    return wrapper  # type: ignore[return-value]
