"""What a run is: its folder and its record (`run.json`), and the machine and versions it names.

The layout and the life of a run are described in `runs.py`; this module is what both it and
`run_index.py` (latest, find, list, prune) build on.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from poolkit.common.files import write_json_atomic
from poolkit.common.machine import cpu_model, usable_cores

RECORD = "run.json"
RUNS = "runs"
RECORD_SCHEMA = 1
MAX_RECORD_BYTES = 4 << 20
MAX_FILES_LISTED = 2000  # a sweep's bundles can be thousands of files: the record lists the first ones
# Exit codes as the CLI gives them (common/errors.py, cli/app.py) -> a run's status.
STATUS_OF_EXIT = {0: "ok", 1: "failed", 2: "error", 130: "interrupted", 143: "interrupted"}
FINISHED = ("ok", "failed")  # the command ran to its end and wrote its results: it may become "latest"
VERSIONED = ("poolkit", "torch", "torchvision", "onnx", "onnxruntime-gpu", "onnxruntime", "numpy", "openvino")


def slug(text: str, limit: int = 40) -> str:
    """`text` as a file-name part: letters, digits, '.', '_' and '-' only, never empty."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit].strip("-.")
    return cleaned or "unknown"


def host_name() -> str:
    return slug(socket.gethostname().split(".")[0] or platform.node(), 30)


def machine_name(cpu: str | None, cores: int | None, gpu: str | None = None) -> str:
    """A machine as the published results name it: `amd-epyc-2c`, `intel-xeon-2c-nvidia-h100`.

    From what the results record (CPU model, logical cores, GPU), not the host name: a host name is
    private and says nothing to a reader; two hosts of one kind share a name, as asv's machines do.
    """
    noise = r"\((?:r|tm)\)|\b(?:processor|cpu|with|radeon graphics|\d+-core)\b|@.*$"
    words = " ".join(re.sub(noise, " ", (cpu or "unknown cpu").lower()).split())
    parts = [slug(words.replace(" ", "-"), 30).lower()]
    if cores:
        parts.append(f"{cores}c")
    if gpu and gpu != "none":
        parts.append(slug(" ".join(re.sub(r"\b(?:geforce|tesla)\b", " ", gpu.lower()).split()), 24).lower())
    return "-".join(parts)


def machine() -> dict[str, Any]:
    """The machine a run ran on, cheaply (no torch import): host, OS, Python, CPU, cores."""
    cores = os.cpu_count()
    cpu = cpu_model()
    return {
        "name": machine_name(cpu, cores),
        "host": socket.gethostname(),
        "os": platform.platform(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_cores_logical": cores,
        "cpu_cores_usable": usable_cores(),
    }


def versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on, read from package metadata (no import)."""
    found = {}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: Any) -> datetime | None:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass
class Run:
    """One run: its folder and its record (what `run.json` holds)."""

    folder: Path
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def command(self) -> str:
        value = self.record.get("command")
        return value if isinstance(value, str) else ""

    @property
    def status(self) -> str:
        """The record's status; `running` whose process is gone from this host reads as `killed`."""
        status = str(self.record.get("status", "unreadable"))
        if (
            status == "running"
            and self.record.get("host") == socket.gethostname()
            and not _alive(self.record.get("pid"))
        ):
            return "killed"
        return status

    @property
    def started(self) -> str:
        value = self.record.get("started")
        return value if isinstance(value, str) else ""

    @property
    def machine(self) -> dict[str, Any]:
        value = self.record.get("machine")
        return value if isinstance(value, dict) else {}

    @property
    def machine_name(self) -> str:
        return str(self.machine.get("name") or "unknown")

    @property
    def sort_key(self) -> tuple[str, str]:
        return (self.started, self.id)

    def write(self) -> None:
        write_json_atomic(self.folder / RECORD, self.record)


def _alive(pid: Any) -> bool:
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is another user's
        return True
    return True


def read_run(folder: Path) -> Run:
    """A run folder and its record; a record that cannot be read gives status `unreadable`."""
    folder = Path(folder)
    try:
        path = folder / RECORD
        data = json.loads(path.read_bytes()) if path.stat().st_size <= MAX_RECORD_BYTES else None
    except (OSError, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("command"), str):
        return Run(folder, {"status": "unreadable"})
    return Run(folder, data)


def files_of(folder: Path) -> list[str]:
    """The files a run wrote, relative to its folder (its record and hidden temporary files left out)."""
    found: list[str] = []
    for path in sorted(Path(folder).rglob("*")):
        if len(found) >= MAX_FILES_LISTED:
            found.append("…")
            break
        if path.is_file() and path.name != RECORD and not path.name.startswith("."):
            found.append(path.relative_to(folder).as_posix())
    return found


def started_at(run: Run) -> datetime:
    return parse_iso(run.started) or datetime.fromtimestamp(0, UTC)
