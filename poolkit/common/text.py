"""Text from files and users, made safe to show: no terminal escapes, no invisible reordering.

Everything poolkit prints may hold bytes it read from a file (an ONNX file's op and domain names, a
replay file's metadata, a manifest entry, an exporter's or runtime's error message). A terminal acts
on ESC (colours, cursor moves, OSC titles and links), BEL and C1 controls, and the bidirectional
overrides show text in another order than it is; each becomes a visible `\\x1b`-style escape here.
"""

from __future__ import annotations

import re

# C0 controls (but for the line break a table itself uses), DEL, C1 controls, and the bidirectional
# marks and overrides (LRM, RLM, LRE..RLO, LRI..PDI).
_UNSAFE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def escape_controls(text: str, *, keep_newlines: bool = True) -> str:
    """`text` with every control character written as a visible escape (`\\x1b`, `\\u202e`)."""
    text = _UNSAFE.sub(_visible, str(text))
    return text if keep_newlines else text.replace("\n", "\\n")
