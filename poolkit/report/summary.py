"""The answers at the top of the report, computed from the same files as the sections below them.

Four lines a reader looks for first: how many artifacts were exported and which failed; how many
verify rows passed and failed, and the worst; the fastest runtime for each model with its speed-up
over eager and that speed-up's bounds; how many conformance cells were ok and how many failed.
Each figure is derived here (not in the template), so a test can check it against the JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from poolkit.report.schema import Results, items, num, obj, text

PASSING_CELLS = ("ok", "invalid")  # invalid: PyTorch itself rejects the configuration (not a failure)


@dataclass
class Fastest:
    """The fastest runtime for one model (on one device and batch): its p50 and speed-up over eager."""

    model: str
    device: str
    batch_size: Any
    runtime: str
    p50_ms: float
    ci95: tuple[float | None, float | None]
    speedup: float | None = None  # eager's p50 over this one's (None: no eager row to compare with)
    speedup_bounds: tuple[float, float] | None = None  # from the two medians' 95 % intervals
    runtimes: int = 0  # how many runtimes were timed for this model


@dataclass
class Summary:
    artifacts: dict[str, Any] = field(default_factory=dict)  # ok, failed, total, failed_names
    verify: dict[str, Any] = field(default_factory=dict)  # rows, passed, failed, unavailable, worst
    fastest: list[Fastest] = field(default_factory=list)
    conformance: dict[str, Any] = field(default_factory=dict)  # cells, ok, invalid, failed


def summarize(found: Results) -> Summary:
    return Summary(
        artifacts(found.data.get("manifest")),
        verify(found.data.get("verify")),
        fastest(found.data.get("bench")),
        conformance(found.data.get("conformance")),
    )


def artifacts(manifest: dict[str, Any] | None) -> dict[str, Any]:
    if not manifest:
        return {}
    rows = [a for a in items(manifest.get("artifacts")) if isinstance(a, dict)]
    failed = [a for a in rows if a.get("status") != "ok"]
    names = [f"{a.get('name')} {a.get('format')}" for a in failed]
    return {"total": len(rows), "ok": len(rows) - len(failed), "failed": len(failed), "failed_names": names}


def verify(data: dict[str, Any] | None) -> dict[str, Any]:
    if not data:
        return {}
    rows = [r for r in items(data.get("rows")) if isinstance(r, dict)]
    counts = {s: sum(r.get("status") == s for r in rows) for s in ("passed", "failed", "unavailable")}
    judged = [r for r in rows if r.get("status") in ("passed", "failed")]
    failed = [r for r in judged if r.get("status") == "failed"]
    worst = max(failed or judged, key=lambda r: (_rank(_max_abs(r)), r.get("status") == "failed"), default=None)
    return {"rows": len(rows), **counts, "worst": _row_words(worst) if worst else None}


def _max_abs(row: dict[str, Any]) -> Any:
    values = [obj(o).get("max_abs") for o in items(row.get("outputs"))]
    return max(values, key=_rank, default=None)


def _rank(value: Any) -> float:
    x = num(value)
    return -1.0 if x is None else math.inf if math.isnan(x) else x


def _row_words(row: dict[str, Any]) -> dict[str, Any]:
    where = f"{row.get('model')} {row.get('format')} on {row.get('runtime')}/{row.get('device')}"
    return {"row": where, "status": row.get("status"), "max_abs": num(_max_abs(row)), "reason": text(row.get("reason"))}


def fastest(bench: dict[str, Any] | None) -> list[Fastest]:
    """Per (model, device, batch): the runtime with the lowest p50 among rows that ran, in file order."""
    if not bench:
        return []
    groups: dict[tuple[str, str, Any], list[dict[str, Any]]] = {}
    for m in items(bench.get("measurements")):
        if isinstance(m, dict) and m.get("status") == "ok" and _p50(m) is not None:
            groups.setdefault((str(m.get("model")), str(m.get("device")), m.get("batch_size")), []).append(m)
    out = []
    for (model, device, batch), rows in groups.items():
        best = min(rows, key=lambda m: _p50(m) or math.inf)
        p50 = _p50(best) or 0.0
        low, high = _ci(best)
        found = Fastest(model, device, batch, str(best.get("runtime")), p50, (low, high), runtimes=len(rows))
        eager = next((m for m in rows if m.get("runtime") == "eager"), None)
        if eager is not None and p50 > 0:
            found.speedup = (_p50(eager) or 0.0) / p50
            e_low, e_high = _ci(eager)
            if None not in (low, high, e_low, e_high) and low and high:
                found.speedup_bounds = (e_low / high, e_high / low)  # type: ignore[operator]
        out.append(found)
    return out


def _p50(m: dict[str, Any]) -> float | None:
    return num(obj(m.get("latency_ms")).get("p50"))


def _ci(m: dict[str, Any]) -> tuple[float | None, float | None]:
    latency = obj(m.get("latency_ms"))
    return num(latency.get("ci95_low")), num(latency.get("ci95_high"))


def conformance(data: dict[str, Any] | None) -> dict[str, Any]:
    if not data:
        return {}
    outcomes = [str(obj(c).get("outcome")) for c in items(data.get("cells"))]
    ok, invalid = outcomes.count("ok"), outcomes.count("invalid")
    return {"cells": len(outcomes), "ok": ok, "invalid": invalid, "failed": len(outcomes) - ok - invalid}
