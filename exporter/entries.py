"""The checks every manifest entry passes as it is read (`manifest.load_manifest`).

A manifest can be written by anyone: each field must have its type, names must be plain names
(file names are built from them), paths must stay inside the folder, and text that is printed must
not carry control characters. A failing entry is a DataError naming it; the manifest turns it into
that artifact's failed record, so one bad entry never locks out the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from poolkit.common.errors import DataError
from poolkit.common.files import inside
from poolkit.common.names import is_safe_name
from poolkit.exporter.dtypes import DTYPES

STATUSES = ("ok", "failed")
TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "spec": (str,),
    "format": (str,),
    "method": (str,),
    "status": (str,),
    "input_shape": (list,),
    "path": (str, type(None)),
    "opset": (int, type(None)),
    "sha256": (str, type(None)),
    "size_bytes": (int, type(None)),
    "export_seconds": (int, float),
    "weights": (str, type(None)),
    "weights_sha256": (str, type(None)),
    "seed": (int,),
    "outputs": (int,),
    "versions": (dict,),
    "error": (str, type(None)),
    "exported_at": (str,),
    "opset_requested": (int, type(None)),
    "import_path": (str, type(None)),
    "object_name": (str, type(None)),
    "source_sha256": (str, type(None)),
    "input_shapes": (list, type(None)),
    "dynamic_axes": (list,),
    "dynamic_dims": (dict,),
    "compile_seconds": (int, float, type(None)),
    "external_data": (dict,),
    "dtype": (str,),
    "precision": (str,),
    "quantization": (dict, type(None)),
}
# exporter.precision's list; here so reading a manifest needs no onnx. "-autocast": the fp32 model under
# torch.autocast (torch-side formats only), where the plain names convert the whole model (`.to(dtype)`).
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "bf16-autocast", "fp16-autocast")
DYNAMIC_AXES = ("batch", "channels", "height", "width")


def check_types(values: dict[str, Any], bad: Callable[[str], DataError]) -> None:
    for key, types in TYPES.items():
        if key in values and (not isinstance(values[key], types) or isinstance(values[key], bool)):
            raise bad(f"has a bad '{key}' ({type(values[key]).__name__})")


def check_entry(record: Any, folder: Path, bad: Callable[[str], DataError]) -> None:
    """The checks of an ExportRecord built from an entry (`record.error` is made printable in place)."""
    for key in ("name", "format", "method", "path", "weights", "sha256", "weights_sha256", "object_name",
                "source_sha256"):  # fmt: skip
        value = getattr(record, key)
        if isinstance(value, str) and not value.isprintable():
            raise bad(f"has control characters in '{key}'")
    # A user's folder is kept as it is (a no-break space, a zero-width space, even a newline are legal
    # in a path, and a user model's spec is that path): only NUL, which no path holds, is refused;
    # everything printed is escaped on its way to the terminal.
    for key in ("spec", "import_path"):
        if "\x00" in (getattr(record, key) or ""):
            raise bad(f"has a NUL in '{key}'")
    for key in ("path", "weights"):  # every path refused before any file is read
        if getattr(record, key) is not None:
            inside(folder, getattr(record, key))
    if not is_safe_name(record.name):
        raise bad(f"has the name {record.name[:80]!r}, not a plain name (file names are built from it)")
    if not is_safe_name(record.format):
        raise bad(f"has the format {record.format[:80]!r}, not a plain name")
    if record.error is not None and not record.error.isprintable():
        record.error = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in record.error)
    if record.status not in STATUSES:
        raise bad(f"has status '{record.status}' (ok or failed)")
    for shape in [record.input_shape, *(record.input_shapes or [])]:
        if not isinstance(shape, list) or not shape or not _dims_ok(shape[1:]) or not _batch_ok(shape[0]):
            raise bad(f"has a bad input shape {shape!r}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in record.external_data.items()):
        raise bad("has a bad 'external_data' (location -> sha256)")
    if record.precision not in PRECISIONS:
        raise bad(f"has precision {record.precision!r} (one of {', '.join(PRECISIONS)})")
    if record.dtype not in DTYPES:
        raise bad(f"has dtype {record.dtype!r} (one of {', '.join(DTYPES)})")
    if not all(isinstance(a, str) and a in DYNAMIC_AXES for a in record.dynamic_axes):
        raise bad(f"has bad dynamic_axes {record.dynamic_axes!r} (of {', '.join(DYNAMIC_AXES)})")
    if not all(k in DYNAMIC_AXES and isinstance(v, str) and v.isprintable() for k, v in record.dynamic_dims.items()):
        raise bad("has bad dynamic_dims (axis name -> text)")


def _dims_ok(dims: list[Any]) -> bool:
    return all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)


def _batch_ok(axis: Any) -> bool:
    return axis == "batch" or _dims_ok([axis])
