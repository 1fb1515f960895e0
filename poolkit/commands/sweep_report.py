"""The conformance matrix on disk: JSON for machines, Markdown grouped by layer with failures first."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from poolkit.commands.sweep import FAILURES, OUTCOMES, CellResult
from poolkit.commands.sweep_grid import LAYER_GROUPS
from poolkit.common.files import write_json_atomic, write_text_atomic


def summary(results: list[CellResult]) -> dict[str, int]:
    counts = Counter(r.outcome for r in results)
    return {"cells": len(results), **{o: counts.get(o, 0) for o in OUTCOMES}}


def summary_line(results: list[CellResult]) -> str:
    s = summary(results)
    failures = sum(s[o] for o in FAILURES)
    parts = [f"{s['cells']:,} cells", f"{s['ok']:,} ok", f"{s['invalid']:,} invalid (PyTorch rejects them)"]
    parts.append(
        f"{failures:,} failed" + (": " + ", ".join(f"{s[o]} {o}" for o in FAILURES if s[o]) if failures else "")
    )
    return "; ".join(parts)


def write_json(results: list[CellResult], path: Path, environment: dict[str, Any], settings: dict[str, Any]) -> Path:
    return write_json_atomic(
        path,
        {
            "schema": 1,
            "environment": environment,
            "settings": settings,
            "summary": summary(results),
            "cells": [r.to_json() for r in results],
        },
    )


def _cell_text(r: CellResult) -> str:
    if r.outcome == "ok":
        return "ok"
    if r.outcome == "value-mismatch" and r.max_abs is not None:
        return f"**value-mismatch** ({r.max_abs:.1e})"
    return f"**{r.outcome}**" if r.failed else r.outcome


def markdown(results: list[CellResult], environment: dict[str, Any]) -> str:
    """One table per layer group: rows are configurations at an input size, columns export paths."""
    lines = [
        "# poolkit conformance matrix",
        "",
        f"Measured by `poolkit sweep` on {environment.get('cpu', '?')} with torch {environment.get('torch', '?')}, "
        f"onnx {environment.get('onnx', '?')}, onnxruntime {environment.get('onnxruntime', '?')}. "
        "Each cell exports the layer one way, runs the artifact and compares it with eager PyTorch "
        "(atol = rtol = 1e-5, batch of 3 random images). `invalid`: PyTorch itself rejects the combination.",
        "",
        f"**Summary:** {summary_line(results)}.",
        "",
    ]
    by_group: dict[str, list[CellResult]] = defaultdict(list)
    for r in results:
        by_group[r.cell.group].append(r)
    for group in [g for g in LAYER_GROUPS if g in by_group]:
        rows: dict[tuple[str, int, int], dict[str, CellResult]] = defaultdict(dict)
        columns: list[str] = []
        for r in by_group[group]:
            rows[(r.cell.spec, r.cell.height, r.cell.width)][r.cell.path_label] = r
            if r.cell.path_label not in columns:
                columns.append(r.cell.path_label)
        failing = [k for k, v in rows.items() if any(r.failed for r in v.values())]
        passing = [k for k in rows if k not in failing]
        lines += [f"## {group}", "", f"{summary_line(by_group[group])}.", ""]
        lines.append("| layer | input | " + " | ".join(columns) + " |")
        lines.append("|---|---|" + "---|" * len(columns))
        for key in failing + passing:
            spec, h, w = key
            cells = [(_cell_text(rows[key][c]) if c in rows[key] else "") for c in columns]
            lines.append(f"| `{spec}` | {h}x{w} | " + " | ".join(cells) + " |")
        reasons = Counter(
            (r.outcome, r.cell.export, r.reason or "")
            for r in by_group[group]
            if (r.failed or r.outcome == "invalid") and r.outcome != "value-mismatch"  # those show their error above
        )
        if reasons:
            lines += ["", "Reasons (how many cells):", ""]
            for (outcome, export, reason), n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"- {outcome}, {export} ({n}): {reason[:300]}")
        lines.append("")
    return "\n".join(lines)


def write_markdown(results: list[CellResult], path: Path, environment: dict[str, Any]) -> Path:
    return write_text_atomic(path, markdown(results, environment))
