"""Options and parsers shared by every command, built from the constants the logic already has.

One vocabulary everywhere: runtime names come from the runtime registry, devices from
`runtimes.base.DEVICES` plus `all`, formats and exporters from the exporter. Every multi-value
option behaves the same: repeat it, or separate values with commas (`--runtime eager,onnxruntime`).
`--model` is the one exception: spec strings contain commas, so it is repeated only.
"""

from __future__ import annotations

import math
import os
import re
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated

import typer

from poolkit.common.errors import PoolkitError
from poolkit.common.limits import MAX_BATCH, check_sample
from poolkit.exporter.formats.onnx import EXPORTERS
from poolkit.exporter.formats.registry import ALL_FORMATS, FORMATS
from poolkit.exporter.formats.torchscript import METHODS
from poolkit.runtimes.base import DEVICES
from poolkit.runtimes.registry import RUNTIMES, canonical_runtime
from poolkit.services.cifar10 import DATA_KINDS

# Enums for Typer, derived from the constants: adding a device or format updates every command.
Device = StrEnum("Device", {name: name for name in (*DEVICES, "all")})  # type: ignore[misc]
OnnxExporter = StrEnum("OnnxExporter", {name: name for name in EXPORTERS})  # type: ignore[misc]


JitMethod = StrEnum("JitMethod", {name: name for name in METHODS})  # type: ignore[misc]
DataKind = StrEnum("DataKind", {name: name for name in DATA_KINDS})  # type: ignore[misc]


class Channels(StrEnum):
    """How `show` draws outputs with other than 1 or 3 channels."""

    gray = "gray"
    rgb = "rgb"


RUNTIME_HELP = f"Runtime(s): {', '.join(RUNTIMES)}. Repeat or separate with commas."
ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="Zoo name, spec string, or your own nn.Module as PATH.py:NAME or package.module:NAME (a class"
        " built with no arguments, or a function returning a module). Loading your file runs its code, as"
        " 'python PATH.py' would. Repeat for several. Default: the whole zoo.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")]
ModelsDirOpt = Annotated[Path, typer.Option("--models", help="Folder with manifest.json and the artifacts.")]
RuntimeOpt = Annotated[list[str] | None, typer.Option("--runtime", "-r", help=RUNTIME_HELP)]
DataOpt = Annotated[DataKind, typer.Option(help="Real CIFAR10 test images, or seeded random ones.")]
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        help="The whole model in this dtype: float32, float16, bfloat16 or float64 (torch's spellings too);"
        " its input stays float32 and is cast inside. Default: float32, or what the spec's dtype= says."
    ),
]
DataRootOpt = Annotated[
    Path | None,
    typer.Option(help="Folder holding cifar-10-batches-py/ (else $POOLKIT_DATA, else the 1,000 shipped images)."),
]
DownloadOpt = Annotated[bool, typer.Option(help="Ask torchvision to fetch the whole test set into --data-root.")]


# Sizes are plain ASCII digits: int() would also take '３' (full-width), '1_000' and ' 7 ', so a
# value that looks like one number to a reader could be parsed as another.
_DIGITS = re.compile(r"[0-9]+")


def ascii_int(text: str) -> int:
    """A non-negative integer written in ASCII digits only; ValueError otherwise (and beyond 30 digits)."""
    text = text.strip()
    if not _DIGITS.fullmatch(text) or len(text) > 30:
        raise ValueError(text)
    return int(text)


def finite(value: float, option: str) -> float:
    """Click's ranges let `inf` through (`--atol inf` would pass every artifact): refuse it by name."""
    if not math.isfinite(value):
        raise PoolkitError(f"bad {option} {value}: give a finite number")
    return value


def given_values(values: list[str] | str | None, option: str) -> list[str]:
    """`split_values`, but an option given with nothing in it (`--opsets ''`) is refused, not read as the default."""
    items = split_values(values)
    if values is not None and not items:
        raise PoolkitError(f"bad {option} '': give a value (or leave the option out for the default)")
    return items


def split_values(values: list[str] | str | None) -> list[str]:
    """Repeated options and comma-separated values, flattened, order kept, blanks dropped."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else values
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def parse_formats(values: list[str] | None) -> tuple[str, ...]:
    """`export --format`: formats by name, repeated or comma-separated; `all` (the default) is every
    format `--format all` writes, and may be combined with others (`-f all,aoti`)."""
    chosen = choose(values, (*FORMATS, "all"), "--format") if values is not None else ("all",)
    named = [name for name in chosen if name != "all"]
    return tuple(dict.fromkeys([*ALL_FORMATS, *named] if "all" in chosen else named))


def choose(values: list[str] | str | None, known: tuple[str, ...], option: str) -> tuple[str, ...]:
    """The values of a multi-value option, each one of `known`; an unknown one is a usage error."""
    items = split_values(values)
    bad = [v for v in items if v not in known]
    if bad or (values is not None and not items):
        shown = bad[0] if bad else ""
        raise PoolkitError(f"bad {option} '{shown}': choose from {', '.join(known)}")
    return tuple(dict.fromkeys(items))


def parse_runtimes(values: list[str] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """Registry names (old spellings accepted), duplicates dropped; `default` when none given."""
    items = split_values(values)
    if values is not None and not items:
        raise PoolkitError(f"bad --runtime: give one or more of {', '.join(RUNTIMES)}")
    return tuple(dict.fromkeys(canonical_runtime(v) for v in items)) or default


def devices_for(device: Enum) -> tuple[str, ...]:
    return DEVICES if device.value == "all" else (str(device.value),)


def parse_shape(text: str | None, option: str = "--input-shape", example: str = "3x32x32") -> tuple[int, ...] | None:
    """`3x32x32` -> (3, 32, 32); a per-sample shape, without the batch axis."""
    if text is None:
        return None
    try:
        dims = tuple(ascii_int(d) for d in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise PoolkitError(f"bad {option} '{text}': expected sizes like {example} (no batch axis)") from None
    if not dims or any(d <= 0 for d in dims):
        raise PoolkitError(f"bad {option} '{text}': sizes must be positive, like {example}")
    check_sample(dims, option)
    return dims


def parse_shapes(text: str | None) -> tuple[tuple[int, ...], ...] | None:
    """`3x32x32` -> ((3, 32, 32),); `3x32x32+10` -> two inputs, for a model of your own that takes several."""
    if text is None:
        return None
    shapes = tuple(parse_shape(part, example="3x32x32 or 3x32x32+10") for part in text.split("+"))
    return tuple(s for s in shapes if s is not None)


def writable_folder(path: Path, option: str) -> Path:
    """Refuse an output folder that cannot be made or written, before any work is done.

    The nearest part of the path that exists decides: it must be a folder we may write in.
    """
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise PoolkitError(f"bad {option} '{path}': {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PoolkitError(f"bad {option} '{path}': {probe} is not writable")
    return Path(path)


def writable_file(path: Path | None, option: str) -> Path | None:
    """Refuse an output file whose folder cannot be written, or that names a folder."""
    if path is None:
        return None
    if Path(path).is_dir():
        raise PoolkitError(f"bad {option} '{path}': it is a folder, not a file")
    writable_folder(Path(path).parent, option)
    return Path(path)


def parse_batches(text: str) -> int | None:
    if text.lower() == "all":
        return None
    if _DIGITS.fullmatch(text) and len(text) <= 30 and int(text) > 0:
        return int(text)
    raise PoolkitError(f"bad --batches '{text}': a positive number or 'all'")


def parse_ints(values: list[str] | str | None, option: str, example: str, maximum: int = MAX_BATCH) -> tuple[int, ...]:
    """Positive integers from a multi-value option (`--batch-sizes 1,16,64`), each at most `maximum`."""
    items = split_values(values)
    try:
        numbers = tuple(ascii_int(t) for t in items)
    except ValueError:
        numbers = ()
    if not numbers or any(n <= 0 for n in numbers):
        shown = values if isinstance(values, str) else ",".join(values or [])
        raise PoolkitError(f"bad {option} '{shown}': positive numbers separated by commas, like {example}")
    too_big = [n for n in numbers if n > maximum]
    if too_big:
        raise PoolkitError(f"bad {option} {too_big[0]:,}: the limit is {maximum:,}")
    return numbers


SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def parse_scheduler(text: str | None) -> str | None:
    """A Dask scheduler address, `tcp://HOST:PORT` (or `HOST:PORT`), checked before any connection is tried.

    An empty value would otherwise mean "no scheduler" and run locally without a word, and a port
    out of range would cost the connection timeout before failing.
    """
    from urllib.parse import urlsplit

    if text is None:
        return None
    address = text.strip() if "://" in text else f"tcp://{text.strip()}"
    example = "like tcp://127.0.0.1:8786"
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError as exc:
        raise PoolkitError(f"bad --scheduler '{text}': {exc} ({example})") from None
    if parts.scheme not in SCHEDULER_SCHEMES:
        raise PoolkitError(
            f"bad --scheduler '{text}': scheme '{parts.scheme}' is not one of {', '.join(SCHEDULER_SCHEMES)} ({example})"
        )
    odd = any(ch.isspace() for ch in address) or parts.path.strip("/") or parts.query or parts.fragment
    if not parts.hostname or port == 0 or odd:
        raise PoolkitError(f"bad --scheduler '{text}': give the scheduler's host and port, {example}")
    return address


def parse_dtype(text: str | None, option: str = "--dtype") -> str | None:
    """--dtype's value as its canonical name (fp16 -> float16); a bad one is one line naming it."""
    from poolkit.exporter.dtypes import dtype_name

    if text is None:
        return None
    try:
        return dtype_name(text)
    except ValueError as exc:
        raise PoolkitError(f"{option} {text!r}: {exc}") from None
