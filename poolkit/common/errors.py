"""One exception family, turned into a one-line message and an exit code at the CLI edge."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a check ran and something failed (export, verify mismatch)
EXIT_USAGE = 2  # the user asked for something impossible: bad spec, missing data, no CUDA


class PoolkitError(Exception):
    """A problem the user can act on. `exit_code` 2 means usage or data, 1 a failed check."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class SpecError(PoolkitError):
    """A model spec string that cannot be parsed or whose layers do not chain."""


class DataError(PoolkitError):
    """Input data that cannot be found or read."""


class DeviceError(PoolkitError):
    """A device or execution provider that was asked for but cannot really run."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first meaningful line of an exception, for failed rows in tables and JSON.

    Exporters raise multi-page errors; a table cell needs the gist, the JSON keeps the same line.
    """
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else text
    # torch.export wraps the real reason after a generic header; prefer a line naming an error.
    for ln in lines[:40]:
        if any(k in ln for k in ("Error", "error:", "not supported", "Unsupported", "must", "expected")):
            first = ln
            break
    # OpenVINO stacks "Exception from src/...cpp:224:" locations over its reason, which is the last line.
    if lines and lines[0].startswith("Exception from src/"):
        first = lines[-1]
    line = f"{type(exc).__name__}: {first}"
    return line if len(line) <= limit else line[: limit - 1] + "…"
