"""The one place that knows the results' files: their names, top-level shape and value types.

Every producer (manifest, verify, examples, bench, sweep) is changed by other work in parallel, so
the report reads defensively: a file that is missing is a note in its section, a file whose top
level is not what its command writes is a one-line DataError (exit 2), and any field below that
is optional (missing or of another type: not shown). Numbers poolkit writes may be the strings
"inf", "-inf" and "nan" (`to_plain` keeps the JSON strict that way); `num` reads them back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolkit.common.errors import DataError

MAX_JSON_BYTES = 512 << 20  # a results file beyond this is not one poolkit wrote (the sweep's is ~3 MB)


@dataclass(frozen=True)
class Source:
    """One results file: where it lives, which list holds its rows, and who writes it."""

    key: str
    filename: str
    rows: str  # the top-level list of row objects
    command: str  # what to run to produce it
    folder: str = "results"  # results | models


SOURCES = {
    "manifest": Source("manifest", "manifest.json", "artifacts", "poolkit export --format all", "models"),
    "verify": Source("verify", "verify.json", "rows", "poolkit verify"),
    "examples": Source("examples", "verify_examples.json", "rows", "poolkit verify --examples"),
    "bench": Source("bench", "bench.json", "measurements", "poolkit bench"),
    "conformance": Source("conformance", "conformance.json", "cells", "poolkit sweep"),
}
SHOW_FOLDER = "show"  # poolkit show's PNGs: <model>-<runtime>[-<device>].png
SWEEP_CELL = "cell"  # a conformance row's nested description of what ran


@dataclass
class Results:
    """What was found: each source's data (None when its file is missing) and the files read."""

    results_dir: Path
    models_dir: Path
    data: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    show_pngs: list[Path] = field(default_factory=list)

    def rows(self, key: str) -> list[dict[str, Any]]:
        data = self.data.get(key)
        return data[SOURCES[key].rows] if data else []

    def missing_note(self, key: str) -> str:
        return f"No {self.paths[key]}: run '{SOURCES[key].command}' to fill this section."


def load_results(results_dir: Path, models_dir: Path) -> Results:
    """Read every source that exists; the results folder itself must exist (a typo is not an empty report)."""
    results_dir, models_dir = Path(results_dir), Path(models_dir)
    if not results_dir.is_dir():
        raise DataError(f"no results folder {results_dir}: run 'make demo' or name the folder with --results")
    found = Results(results_dir, models_dir)
    for key, source in SOURCES.items():
        path = (models_dir if source.folder == "models" else results_dir) / source.filename
        found.paths[key] = path
        found.data[key] = load_source(path, source) if path.exists() else None
    show = results_dir / SHOW_FOLDER
    found.show_pngs = sorted(p for p in show.glob("*.png") if p.is_file()) if show.is_dir() else []
    return found


def load_source(path: Path, source: Source) -> dict[str, Any]:
    """One results file, checked down to its rows being objects; anything else is a one-line DataError."""

    def bad(why: str) -> DataError:
        return DataError(f"{path} is not a poolkit {source.key} file ({why}); re-run '{source.command}'")

    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise bad(f"over {MAX_JSON_BYTES >> 20} MiB")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise bad(exc.strerror or type(exc).__name__) from None
    except UnicodeDecodeError:
        raise bad("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise bad(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise bad("nested too deeply") from None
    if not isinstance(data, dict):
        raise bad(f"the top level is {_kind(data)}, not an object")
    rows = data.get(source.rows)
    if not isinstance(rows, list):
        raise bad(f"'{source.rows}' is {_kind(rows)}, not a list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise bad(f"{source.rows}[{i}] is {_kind(row)}, not an object")
        if source.key == "conformance" and not isinstance(row.get(SWEEP_CELL), dict):
            raise bad(f"{source.rows}[{i}].{SWEEP_CELL} is {_kind(row.get(SWEEP_CELL))}, not an object")
    return data


def _kind(value: Any) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


def num(value: Any) -> float | None:
    """A number as poolkit writes one (bool is not a number), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("inf", "-inf", "nan", "infinity", "-infinity"):
        return float(value)
    return None


def samples(row: dict[str, Any], key: str, where: str) -> list[float]:
    """A list of raw timings: finite, non-negative numbers, or a DataError naming the row (a plot would lie)."""
    values = row.get(key)
    if values is None:
        return []
    if not isinstance(values, list):
        raise DataError(f"{where}.{key} is {_kind(values)}, not a list of numbers; re-run 'poolkit bench'")
    out = []
    for value in values:
        x = num(value)
        if x is None or not math.isfinite(x) or x < 0:
            raise DataError(f"{where}.{key} holds {value!r}, not a time in ms; re-run 'poolkit bench'")
        out.append(x)
    return out


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
