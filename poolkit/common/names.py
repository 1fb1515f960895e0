"""Artifact names that are safe to build file names from.

A manifest or a replay file can be written by anyone, and its names become file names (`NAME.onnx`,
`verify_failures/NAME....npz`, heatmaps, PNGs): a name like `../../x` or `/etc/x` would steer those
writes out of the folder the user gave. poolkit's own names (zoo names, `spec_<hash>`, a user's
`STEM_NAME`) are letters, digits, `_` and `-`; a name read from a file must be one of those.
"""

from __future__ import annotations

import re

from poolkit.common.errors import DataError

MAX_NAME = 200  # characters; file systems allow 255 bytes a component, and suffixes are added
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def is_safe_name(name: object) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME and _SAFE.fullmatch(name) is not None


def check_name(name: object, what: str = "artifact name") -> str:
    """`name` when it is a safe file-name component, else a one-line DataError (exit 2)."""
    if not is_safe_name(name):
        shown = repr(name)[:80]
        raise DataError(
            f"{what} {shown} is not a plain name (letters, digits, '_' and '-', at most {MAX_NAME}): refused, "
            "since poolkit builds file names from it"
        )
    assert isinstance(name, str)
    return name
