"""How values look in the page: the template filters. Every filter takes anything (a field of an
unexpected type is shown as text, escaped by the template, never a crash)."""

from __future__ import annotations

import math
from typing import Any

from jinja2 import Undefined

from poolkit.report.schema import num

DASH = "—"
# Outcome and status marks: a symbol and a word beside each colour, so a grey-scale print still tells them apart.
MARKS = {
    "passed": "✔", "ok": "✔", "failed": "✘", "unavailable": "–", "invalid": "∅", "export-failed": "✘",
    "runtime-failed": "✘", "shape-mismatch": "≠", "value-mismatch": "≠", "declared-shape-mismatch": "≈",
    "timeout": "⌛", "crashed": "☠", "cached": "✔", "missing": "?",
}  # fmt: skip
GOOD = ("passed", "ok", "cached")
NEUTRAL = ("unavailable", "invalid")


def g(value: Any, digits: int = 3) -> str:
    """A number with `digits` significant digits (scientific when tiny or huge); other values as text."""
    x = num(value)
    if x is None:
        return DASH if value is None or isinstance(value, Undefined) else str(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.{digits}g}"


def ms(value: Any) -> str:
    """Milliseconds with three decimals below 10 ms (the README's tables), fewer above."""
    x = num(value)
    if x is None or not math.isfinite(x):
        return g(value)
    return f"{x:.3f}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:,.0f}"


def size(value: Any) -> str:
    x = num(value)
    if x is None or not math.isfinite(x):
        return g(value)
    for unit in ("B", "KB", "MB", "GB"):
        if x < 1000 or unit == "GB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return DASH  # unreachable


def shape(value: Any) -> str:
    if isinstance(value, list):
        return "x".join(str(d) for d in value)
    return g(value)


def words(value: Any) -> str:
    """A list of names joined for reading; a string as it is."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or DASH
    return g(value)


def mark(status: Any) -> str:
    return MARKS.get(str(status), "•")


def tone(status: Any) -> str:
    """A CSS class for a status: good, neutral or bad (the mark and word carry the same meaning)."""
    status = str(status)
    return "good" if status in GOOD else "neutral" if status in NEUTRAL else "bad"


def prefix(value: Any, n: int = 12) -> str:
    return value[:n] if isinstance(value, str) else DASH


def matrix(value: Any) -> str:
    """A small nested list (a worked example's expected/got) as rows separated by ' / '."""
    if isinstance(value, list) and value and all(isinstance(r, list) for r in value):
        return " / ".join("[" + ", ".join(matrix(v) for v in r) + "]" for r in value)
    if isinstance(value, list):
        return "[" + ", ".join(matrix(v) for v in value) + "]"
    return g(value, 4)


def seq(value: Any) -> list[Any]:
    """A list field as a list; anything else (missing, a string, an object) as no items."""
    return value if isinstance(value, list) else []


def matched(value: Any, checked: Any) -> bool | None:
    """Bench's outputs-checked-while-timed verdict: `outputs_matched` is a boolean (all matched) in the
    files bench writes, or a count of those that matched; None when the row checked nothing."""
    n = num(checked)
    if not n:
        return None
    if isinstance(value, bool):
        return value
    m = num(value)
    return None if m is None else m >= n


def matched_text(value: Any, checked: Any) -> str:
    """`✔ all 108 matched`, `✘ 3 of 108 differ`, or a dash: never a boolean read as a count."""
    verdict, n = matched(value, checked), num(checked)
    if verdict is None or n is None:
        return DASH
    if verdict:
        return f"✔ all {g(n)} matched"
    m = num(value)
    return (
        f"✘ {g(n - m)} of {g(n)} differ"
        if m is not None and not isinstance(value, bool)
        else f"✘ not all {g(n)} matched"
    )


FILTERS = {"seq": seq, "g": g, "ms": ms, "size": size, "shape": shape, "words": words, "mark": mark, "tone": tone,
           "prefix": prefix, "matrix": matrix, "matched": matched, "matched_text": matched_text}  # fmt: skip
