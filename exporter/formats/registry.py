"""The one place that knows which artifact formats exist: a name -> format dict.

Adding a format is one new file beside this one plus one line in `FORMATS`. `poolkit export
--format`, `--format all`, the sweep's `--exporters`, file names and manifest records all read
from here. Format modules import nothing heavy at the top, so importing this costs nothing.
"""

from __future__ import annotations

from poolkit.common.errors import PoolkitError
from poolkit.exporter.formats.aoti import AotiFormat
from poolkit.exporter.formats.base import ArtifactFormat, SweepPath
from poolkit.exporter.formats.onnx import OnnxFormat
from poolkit.exporter.formats.pt2 import Pt2Format
from poolkit.exporter.formats.torchscript import TorchScriptFormat

FORMATS: dict[str, ArtifactFormat] = {
    fmt.name: fmt
    for fmt in (
        TorchScriptFormat(),
        OnnxFormat(),
        Pt2Format(),
        AotiFormat(),
    )
}
ALL_FORMATS = tuple(name for name, fmt in FORMATS.items() if fmt.in_all)  # what `--format all` writes
# `poolkit sweep --exporters`: every format's ways of exporting, by name ("onnx-dynamo": (onnx, dynamo)).
SWEEP_PATHS: dict[str, tuple[ArtifactFormat, SweepPath]] = {
    path.name: (fmt, path) for fmt in FORMATS.values() for path in fmt.sweep_paths
}
DEFAULT_SWEEP_PATHS = tuple(name for name, (fmt, _) in SWEEP_PATHS.items() if fmt.sweep_default)


def format_named(name: str) -> ArtifactFormat:
    """The format registered under `name`; unknown names are a usage error."""
    fmt = FORMATS.get(name)
    if fmt is None:
        raise PoolkitError(f"unknown format '{name}' (known: {', '.join(FORMATS)})")
    return fmt


def sweep_path(name: str) -> tuple[ArtifactFormat, SweepPath]:
    """The format and method of one sweep export path (`onnx-dynamo`, `torchscript-trace`...)."""
    found = SWEEP_PATHS.get(name)
    if found is None:
        raise PoolkitError(f"unknown export path '{name}' (known: {', '.join(SWEEP_PATHS)})")
    return found


def artifact_filename(name: str, fmt: str) -> str:
    return f"{name}{format_named(fmt).suffix}"
