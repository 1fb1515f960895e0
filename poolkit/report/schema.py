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
from poolkit.common.run_record import RUNS, Run
from poolkit.common.runs import find_run, latest_runs

MAX_JSON_BYTES = 512 << 20  # a results file beyond this is not one poolkit wrote (the sweep's is ~3 MB)


@dataclass(frozen=True)
class Source:
    """One results file: where it lives, which list holds its rows, and who writes it."""

    key: str
    filename: str
    rows: str  # the top-level list of row objects
    command: str  # what to run to produce it
    folder: str = "results"  # results | models
    run: str = ""  # the command of the runs that write it (run_record's `command`)


SOURCES = {
    "manifest": Source("manifest", "manifest.json", "artifacts", "poolkit export --format all", "models"),
    "verify": Source("verify", "verify.json", "rows", "poolkit verify", run="verify"),
    "examples": Source("examples", "verify_examples.json", "rows", "poolkit verify --examples", run="verify-examples"),
    "bench": Source("bench", "bench.json", "measurements", "poolkit bench", run="bench"),
    "conformance": Source("conformance", "conformance.json", "cells", "poolkit sweep", run="sweep"),
}
SHOW_FOLDER = "show"  # poolkit show's PNGs: <model>-<runtime>[-<device>].png
SWEEP_CELL = "cell"  # a conformance row's nested description of what ran


@dataclass(frozen=True)
class Origin:
    """Where a section's file came from: a run (its id, command, machine, start) or a plain folder
    (a published `docs/results/<machine>/`, an `--out` the user named)."""

    folder: Path
    run: str | None = None
    command: str | None = None
    machine: str | None = None
    host: str | None = None
    started: str | None = None

    @classmethod
    def of(cls, run: Run) -> Origin:
        if run.status == "unreadable":  # no run record: a folder of results files
            return cls(run.folder)
        return cls(run.folder, run.id, run.command, run.machine_name, text(run.record.get("host")), run.started or None)

    @property
    def label(self) -> str:
        if self.run is None:
            return f"folder {self.folder}"
        when = f", started {self.started[:16].replace('T', ' ')} UTC" if self.started else ""
        return f"run {self.run} on {self.machine or 'an unknown machine'}{when}"


@dataclass
class Results:
    """What was found: each source's data (None when its file is missing), the files read, and the
    run (or folder) each came from."""

    results_dir: Path
    models_dir: Path
    data: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)
    show_pngs: list[Path] = field(default_factory=list)
    benches: list[Origin] = field(default_factory=list)  # every bench file among the runs read, in order
    mode: str = "folder"  # folder: one folder of files | latest: each command's latest run | named: --runs

    def rows(self, key: str) -> list[dict[str, Any]]:
        data = self.data.get(key)
        return data[SOURCES[key].rows] if data else []

    def folder(self, key: str) -> Path:
        """The folder `key`'s file is in (the results folder when it was not found)."""
        origin = self.origins.get(key)
        return origin.folder if origin else self.results_dir

    def missing_note(self, key: str) -> str:
        source = SOURCES[key]
        if self.mode == "latest" and source.folder == "results":
            return f"No {source.run} run in {self.results_dir / RUNS}: run '{source.command}' to fill this section."
        if self.mode == "named" and source.folder == "results":
            return f"None of the runs named holds {source.filename}: run '{source.command}', or name a run that does."
        return f"No {self.paths[key]}: run '{source.command}' to fill this section."


def result_folders(results_dir: Path, runs: list[str] | None = None) -> tuple[list[Origin], list[Origin]]:
    """The folders a report reads, each list oldest first: the runs named (ids, starts, `bench~1`,
    folders), and what fills the rest: the latest run of each command under a results root, or
    `results_dir` itself when it is a folder of results files."""
    results_dir = Path(results_dir)
    named = [Origin.of(find_run(results_dir, name)) for name in runs or []]
    if (results_dir / RUNS).is_dir():
        rest = [Origin.of(r) for r in sorted(latest_runs(results_dir).values(), key=lambda r: r.sort_key)]
    elif results_dir.is_dir():
        rest = [Origin(results_dir)]
    elif named:
        rest = []
    else:
        raise DataError(f"no results folder {results_dir}: run 'make demo' or name the folder with --results")
    return named, rest


def load_results(results_dir: Path, models_dir: Path, runs: list[str] | None = None) -> Results:
    """Read every source found: from the runs named when one holds it (the last named wins), else
    from the latest run of its command (or the folder of results files). A results folder that does
    not exist is an error when no run is named (a typo is not an empty report)."""
    results_dir, models_dir = Path(results_dir), Path(models_dir)
    named, rest = result_folders(results_dir, runs)
    mode = "latest" if (results_dir / RUNS).is_dir() else "folder" if rest else "named"
    found = Results(results_dir, models_dir, mode=mode)
    for key, source in SOURCES.items():
        origin = None
        if source.folder == "models":
            path = models_dir / source.filename
        else:
            holding = [o for o in named if (o.folder / source.filename).exists()]
            fallback = [o for o in rest if (o.folder / source.filename).exists()]
            origin = (holding or fallback)[-1] if holding or fallback else None
            path = (origin.folder if origin else rest[0].folder if mode == "folder" else results_dir) / source.filename
            if key == "bench":
                found.benches = holding if runs else fallback
        found.paths[key] = path
        found.data[key] = load_source(path, source) if path.exists() else None
        if origin is not None:
            found.origins[key] = origin
    with_show = [o for o in named if (o.folder / SHOW_FOLDER).is_dir()] or [
        o for o in rest if (o.folder / SHOW_FOLDER).is_dir()
    ]
    if with_show:
        show = with_show[-1].folder / SHOW_FOLDER
        found.origins["show"] = with_show[-1]
        found.show_pngs = sorted(p for p in show.glob("*.png") if p.is_file())
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
