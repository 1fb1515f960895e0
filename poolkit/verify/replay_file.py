"""Read a failing-batch `.npz` saved by verify: data only, checked before anything is loaded.

A replay file can come from anyone (a bug report, a shared folder). It holds the batch, eager's
expected outputs and a few labels saying which artifact, runtime and device it was saved for. It
decides nothing: it never names code to run (the model is a plain artifact name of the manifest,
and a model of your own runs only when `--model` names it), and never sets a tolerance (atol and
rtol come from the command line, under verify's rules). Only regular files are read (a FIFO would
block), no pickles, and the batch's size is checked against the image limit from the file's
header, before its arrays are read.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolkit.common.errors import DataError, PoolkitError, one_line
from poolkit.common.files import open_regular
from poolkit.common.limits import MAX_BATCH, MAX_BATCH_ELEMENTS
from poolkit.common.names import check_name

MAX_META = 64 * 1024  # bytes of the labels: a few short strings
MAX_OUTPUTS = 64
LABELS = ("model", "format", "runtime", "device", "input_set")  # what a replay file may say, as text


@dataclass
class ReplayFile:
    meta: dict[str, Any]  # the labels above, plus models_dir and first_image; never a tolerance
    input: Any  # np.ndarray, float32
    expected: list[Any]


def read_replay(path: Path) -> ReplayFile:
    import numpy as np

    with open_regular(path, "replay file") as fh:
        try:
            with np.load(fh, allow_pickle=False) as saved:
                _check_sizes(path, saved)
                meta = _labels(path, saved["meta"])
                x = np.asarray(saved["input"], dtype=np.float32)
                count = len([k for k in saved.files if k.startswith("expected_")])
                expected = [np.asarray(saved[f"expected_{i}"]) for i in range(count)]
        except PoolkitError:
            raise
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or one_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - a malformed file fails in many ways, each a data error
            # numpy's own hint (allow_pickle) would run code from the file: never repeat it.
            reason = "it holds pickled objects, not arrays" if "pickle" in str(exc) else one_line(exc)
            raise DataError(f"{path} is not a poolkit failing-batch file ({reason})") from None
    if not expected:
        raise DataError(f"{path} is not a poolkit failing-batch file (no expected outputs)")
    if x.ndim < 1:
        raise DataError(f"{path}: its input is a scalar, not a batch")
    return ReplayFile(meta, x, expected)


def _check_sizes(path: Path, saved: Any) -> None:
    """Every array's shape from its .npy header, before reading it: a crafted file cannot make
    poolkit allocate more than the image limit (or unpack a zip bomb)."""
    import numpy as np

    if not isinstance(getattr(saved, "zip", None), zipfile.ZipFile):
        raise DataError(f"{path} is not a poolkit failing-batch file (a single array, not an .npz)")
    members = [n for n in saved.zip.namelist() if n.endswith(".npy")]
    if len(members) > 2 * MAX_OUTPUTS + 2:
        raise DataError(f"{path} holds {len(members)} arrays: a failing-batch file has at most {2 * MAX_OUTPUTS + 2}")
    for member in members:
        with saved.zip.open(member) as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, _ = read_header(fh, max_header_size=10_000)
        count = math.prod(shape)
        if member == "input.npy" and shape and shape[0] > MAX_BATCH:
            raise DataError(f"{path}: its batch has {shape[0]:,} images; the limit is {MAX_BATCH:,}")
        if count > MAX_BATCH_ELEMENTS:
            raise DataError(
                f"{path}: {member[:-4]} has {count:,} values; the limit is {MAX_BATCH_ELEMENTS:,} values a batch"
            )


def _labels(path: Path, raw: Any) -> dict[str, Any]:
    """The labels, each checked: names are plain names, first_image a small integer; anything else
    the file holds (a tolerance, a folder of code) is dropped, never used."""
    text = str(raw)
    if len(text) > MAX_META:
        raise DataError(f"{path}: its metadata is {len(text):,} characters (at most {MAX_META:,})")
    meta = json.loads(text)
    if not isinstance(meta, dict):
        raise DataError(f"{path} is not a poolkit failing-batch file (its metadata is not an object)")
    labels: dict[str, Any] = {}
    for key in LABELS:
        value = meta.get(key, "raw" if key == "input_set" else None)
        labels[key] = check_name(value, f"{path}: its '{key}'")
    first = meta.get("first_image", 0)
    if not isinstance(first, int) or isinstance(first, bool) or not 0 <= first < 2**31:
        raise DataError(f"{path}: its 'first_image' {str(first)[:40]!r} is not an image index")
    labels["first_image"] = first
    folder = meta.get("models_dir", "")
    labels["models_dir"] = folder if isinstance(folder, str) else ""
    return labels
