"""The conformance matrix on disk: JSON for machines, Markdown grouped by layer with failures first,
then every failure grouped by blame with its bundle."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from poolkit.common.files import write_json_atomic, write_text_atomic
from poolkit.sweep.blame import BLAMES
from poolkit.sweep.grid import LAYER_GROUPS
from poolkit.sweep.result import FAILURES, OUTCOMES, CellResult

BLAME_MEANING = {
    "exporter": "the reference evaluator agrees with ONNX Runtime, both differ from PyTorch: the file says "
    "something else than the module did",
    "runtime": "the reference evaluator agrees with PyTorch, ONNX Runtime does not",
    "optimiser": "ONNX Runtime with graph optimisations off agrees with PyTorch, optimised it does not",
    "unclear": "no two engines agree (or the reference failed too, or no ONNX file to ask)",
}


def summary(results: list[CellResult]) -> dict[str, int]:
    counts = Counter(r.outcome for r in results)
    return {"cells": len(results), **{o: counts.get(o, 0) for o in OUTCOMES}}


def blame_summary(results: list[CellResult]) -> dict[str, int]:
    counts = Counter(r.blame or "unclear" for r in results if r.failed)
    return {b: counts.get(b, 0) for b in BLAMES}


def relative_bundles(results: list[CellResult], folder: Path) -> None:
    """Bundle paths relative to the report's folder, so the report is readable from the repository;
    every failure labelled (journals from before blame existed say nothing)."""
    for r in results:
        if r.failed and not r.blame:
            r.blame = "unclear"
        if r.bundle and os.path.isabs(r.bundle):
            r.bundle = os.path.relpath(r.bundle, folder.resolve())


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
            "blame": blame_summary(results),
            "cells": [r.to_json() for r in results],
        },
    )


def _cell_text(r: CellResult) -> str:
    ran = f" (opset {r.opset_used})" if r.opset_used is not None and r.opset_used != r.cell.opset else ""
    if r.outcome == "ok":
        return "ok" + ran
    blame = f" [{r.blame}]" if r.blame else ""
    if r.outcome == "value-mismatch" and r.max_abs is not None:
        return f"**value-mismatch** ({r.max_abs:.1e}){blame}{ran}"
    return (f"**{r.outcome}**{blame}" if r.failed else r.outcome) + ran


def column_labels(results: list[CellResult]) -> dict[str, str]:
    """Column titles that say what ran: `dynamo-17 ort-cpu` when every file had opset 17,
    `dynamo-17→18 ort-cpu` when the files carried opset 18 (the exporter converted), `→18/17` mixed."""
    used: dict[str, set[int]] = defaultdict(set)
    for r in results:
        if r.opset_used is not None:
            used[r.cell.path_label].add(r.opset_used)
    labels = {}
    for r in results:
        label = r.cell.path_label
        opsets = used.get(label, set())
        if r.cell.opset is not None and opsets and opsets != {r.cell.opset}:
            ran = "/".join(str(o) for o in sorted(opsets))
            head, _, tail = label.partition(" ")
            labels[label] = f"{head}→{ran} {tail}"
        else:
            labels[label] = label
    return labels


def markdown(results: list[CellResult], environment: dict[str, Any], settings: dict[str, Any] | None = None) -> str:
    """One table per layer group: rows are configurations at an input size, columns export paths;
    then the failures grouped by blame, each with its bundle."""
    newest = (settings or {}).get("newest_opsets") or {}
    blames = blame_summary(results)
    lines = [
        "# poolkit conformance matrix",
        "",
        f"Measured by `poolkit sweep` on {environment.get('cpu', '?')} with torch {environment.get('torch', '?')}, "
        f"onnx {environment.get('onnx', '?')}, onnxruntime {environment.get('onnxruntime', '?')}. "
        "Each cell exports the layer one way, runs the artifact and compares it with eager PyTorch "
        "(atol = rtol = 1e-5, integer outputs such as MaxPool indices bit-exact, batch of 3 random inputs). "
        "`invalid`: PyTorch itself rejects the combination. `declared-shape-mismatch`: the numbers match, "
        "but the ONNX file declares an output shape the runtime does not produce. Columns name the opset "
        "asked for and, after →, the opset the file really has when they differ.",
        "",
        f"**Summary:** {summary_line(results)}.",
        "",
        "**Blame** of the failures: " + ", ".join(f"{n} {b}" for b, n in blames.items()) + ". "
        "Each failing ONNX file is also run with `onnx.reference.ReferenceEvaluator` and with ONNX Runtime's "
        "graph optimisations off; the reference has pooling bugs of its own, so it is one vote, not ground truth.",
        "",
    ]
    if newest:
        shown = ", ".join(f"{e}: {n or 'none above the others'}" for e, n in newest.items())
        lines += [f"Newest opset per exporter (measured: exports, keeps the opset, runs on ONNX Runtime): {shown}.", ""]
    by_group: dict[str, list[CellResult]] = defaultdict(list)
    for r in results:
        by_group[r.cell.group].append(r)
    for group in [g for g in LAYER_GROUPS if g in by_group]:
        rows: dict[tuple[str, str], dict[str, CellResult]] = defaultdict(dict)
        columns: list[str] = []
        titles = column_labels(by_group[group])
        for r in by_group[group]:
            rows[(r.cell.spec, r.cell.input_label)][r.cell.path_label] = r
            if r.cell.path_label not in columns:
                columns.append(r.cell.path_label)
        failing = [k for k, v in rows.items() if any(r.failed for r in v.values())]
        passing = [k for k in rows if k not in failing]
        lines += [f"## {group}", "", f"{summary_line(by_group[group])}.", ""]
        lines.append("| layer | input | " + " | ".join(titles[c] for c in columns) + " |")
        lines.append("|---|---|" + "---|" * len(columns))
        for key in failing + passing:
            spec, size = key
            cells = [(_cell_text(rows[key][c]) if c in rows[key] else "") for c in columns]
            lines.append(f"| `{spec}` | {size} | " + " | ".join(cells) + " |")
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
    lines += dynamic_shape_findings(results)
    lines += failures_by_blame(results)
    return "\n".join(lines)


def dynamic_shape_findings(results: list[CellResult]) -> list[str]:
    """torch.export cells (exported with batch, height and width open): the configurations whose
    explicit `Dim`s torch.export refused (exported with `Dim.AUTO` instead), and those it could not
    export at all, each with torch.export's reason."""
    auto = [r for r in results if any("Dim.AUTO" in v for v in (r.export_dims or {}).values())]
    failed = [r for r in results if r.outcome == "export-failed" and r.cell.export.startswith("pt2-")]
    if not auto and not failed:
        return []
    lines = ["## torch.export with dynamic shapes", ""]
    lines += ["Explicit `Dim`s for batch, height and width refused; exported with `Dim.AUTO` (derived ranges):", ""]
    for r in auto:
        dims = ", ".join(f"{k} {v.split(' (', 1)[0]}" for k, v in (r.export_dims or {}).items())
        why = next((v.split(" (explicit Dim refused: ", 1)[1].rstrip(")") for v in (r.export_dims or {}).values()
                    if "refused" in v), "")  # fmt: skip
        lines.append(f"- `{r.cell.spec}` {r.cell.input_label}, {r.cell.path_label}: {why} → {dims}; then {r.outcome}")
    if not auto:
        lines.append("- none")
    if failed:
        lines += ["", "Not exportable by torch.export at all:", ""]
        lines += [
            f"- `{r.cell.spec}` {r.cell.input_label}, {r.cell.path_label}: {(r.reason or '')[:200]}" for r in failed
        ]
    return [*lines, ""]


def failures_by_blame(results: list[CellResult]) -> list[str]:
    """Every failing cell under its blame, with its reason and bundle."""
    failed = [r for r in results if r.failed]
    if not failed:
        return []
    lines = ["## Failures by blame", ""]
    for blame in BLAMES:
        mine = [r for r in failed if (r.blame or "unclear") == blame]
        if not mine:
            continue
        lines += [f"### {blame} ({len(mine)})", "", f"{BLAME_MEANING[blame]}.", ""]
        for r in mine:
            c = r.cell
            bundle = f" — bundle `{r.bundle}`" if r.bundle else ""
            votes = "; ".join(f"{k}: {v}" for k, v in (r.votes or {}).items())
            lines.append(
                f"- `{c.spec}` {c.input_label}, {c.path_label}: {r.outcome}: {(r.reason or '')[:200]}"
                + (f" (votes: {votes})" if votes else "")
                + bundle
            )
        lines.append("")
    return lines


def write_markdown(
    results: list[CellResult], path: Path, environment: dict[str, Any], settings: dict[str, Any] | None = None
) -> Path:
    return write_text_atomic(path, markdown(results, environment, settings))
