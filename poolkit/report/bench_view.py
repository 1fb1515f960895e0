"""The bench section: every measurement with its spread, and a box plot of the raw samples per model.

A bar of medians hides what a peer asks first (how noisy, how heavy the tail), so each model gets
one SVG (written here: a few hundred bytes a row, no plotting library to import) with a box per
row: quartiles, the median, Tukey whiskers (1.5 IQR) and every sample beyond them as a tick, on a
log scale shared by the model's rows, each row labelled in words (colour is never the only mark).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from poolkit.report.schema import items, num, obj, samples, text

# What bench's flags mean, in words (the flag's own message carries the figures).
FLAG_WORDS = {
    "overhead": "an Identity model on the same runtime takes half the figure or more: this measures the call, not the model",
    "copies": "end to end (with host copies) takes twice the model-only time or more: the copies dominate",
    "unstable": "the coefficient of variation is above 10 %: the samples spread widely (a busy machine, or a bimodal runtime)",
    "imprecise": "the median's 95 % interval stayed wider than the target when the time budget ran out",
}  # fmt: skip
TAIL_WORDS = "* after a p90 or p99: fewer samples back that tail than MLPerf asks (64 for p90, 662 for p99)"
W, ROW_H, PAD = 600, 30, 12
CHAR_W = 8.2  # px per character of a 15 px label: the label column fits the longest label


@dataclass
class Box:
    label: str
    n: int
    q1: float
    median: float
    q3: float
    low: float  # whisker ends
    high: float
    outliers: list[float]


@dataclass
class ModelBench:
    model: str
    rows: list[dict[str, Any]]
    boxes: list[Box]
    common: str = ""  # what every row shares (device, batch), said once in the caption

    @property
    def svg(self) -> Markup:
        return box_plot(self.model, self.boxes)


def bench_models(bench: dict[str, Any]) -> list[ModelBench]:
    """Measurements grouped by model in file order, each with its speed-up and box."""
    groups: dict[str, ModelBench] = {}
    varying = [k for k in ("device", "batch_size") if len({str(m.get(k)) for m in bench["measurements"]}) > 1]
    fixed = [k for k in ("device", "batch_size") if k not in varying and bench["measurements"]]
    common = " · ".join(_part(k, bench["measurements"][0].get(k)) for k in fixed)
    eager_p50 = {_key(m): _p50(m) for m in bench["measurements"] if _name(m) == "eager" and _p50(m) is not None}
    for i, m in enumerate(bench["measurements"]):
        model = str(m.get("model"))
        group = groups.setdefault(model, ModelBench(model, [], [], common))
        speedup = num(m.get("speedup_vs_eager"))
        own, eager = _p50(m), eager_p50.get(_key(m))
        if speedup is None and own and eager:
            speedup = eager / own
        group.rows.append({**m, "name": _name(m), "speedup": speedup, "flag_list": _flags(m), "mode_text": _mode(m)})
        raw = samples(m, "samples_ms", f"bench.json measurements[{i}] ({model})")
        if raw:
            group.boxes.append(box(" · ".join([_name(m), *(_part(k, m.get(k)) for k in varying)]), raw))
    return list(groups.values())


def _name(m: dict[str, Any]) -> str:
    """The runtime, and the precision variant where the row times one (files before schema 5: fp32)."""
    precision = text(m.get("precision")) or "fp32"
    return str(m.get("runtime")) + (f" {precision}" if precision != "fp32" else "")


def _mode(m: dict[str, Any]) -> str:
    """The runtime's own settings the row ran with (ORT spinning, OpenVINO's hint and streams), in words."""
    return "; ".join(f"{k} {v}" for k, v in obj(m.get("mode")).items())


def _key(m: dict[str, Any]) -> tuple[Any, ...]:
    return (m.get("model"), m.get("device"), m.get("batch_size"))


def _p50(m: dict[str, Any]) -> float | None:
    return num(obj(m.get("latency_ms")).get("p50"))


def _part(key: str, value: Any) -> str:
    return f"batch {value}" if key == "batch_size" else str(value)


def _flags(m: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for f in items(m.get("flags")):
        kind = str(obj(f).get("kind") or f)
        out.append((str(obj(f).get("message") or kind), FLAG_WORDS.get(kind, "")))
    return out


def box(label: str, values: list[float]) -> Box:
    xs = sorted(values)
    if len(xs) == 1:
        return Box(label, 1, xs[0], xs[0], xs[0], xs[0], xs[0], [])
    q1, median, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    reach = 1.5 * (q3 - q1)
    inside = [x for x in xs if q1 - reach <= x <= q3 + reach]
    low, high = inside[0], inside[-1]
    return Box(label, len(xs), q1, median, q3, low, high, [x for x in xs if x < low or x > high])


def box_plot(title: str, boxes: list[Box]) -> Markup:
    """One SVG: a row per box on a shared log axis, with decade and 2/5 ticks labelled in ms."""
    if not boxes:
        return Markup("")
    label_w = min(W // 2, round(CHAR_W * max(len(b.label) for b in boxes)) + 14)
    positive = [v for b in boxes for v in (b.low, *b.outliers, b.high) if v > 0]
    lo, hi = (min(positive), max(positive)) if positive else (1e-3, 1.0)
    lo_e, hi_e = math.log10(lo) - 0.05, math.log10(hi) + 0.05
    span = max(hi_e - lo_e, 1e-9)
    plot_w = W - label_w - PAD

    def x(v: float) -> float:
        return label_w + plot_w * (math.log10(max(v, lo)) - lo_e) / span

    height = ROW_H * len(boxes) + 38
    out = [
        f'<svg class="boxplot" viewBox="0 0 {W} {height}" role="img" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}: latency per batch, raw samples (ms, log scale)</title>",
    ]
    for tick in _ticks(lo_e, hi_e):
        tx = x(tick)
        out.append(f'<line class="grid" x1="{tx:.1f}" x2="{tx:.1f}" y1="4" y2="{height - 22}"/>')
        out.append(f'<text class="tick" x="{tx:.1f}" y="{height - 6}">{_tick_label(tick)}</text>')
    for i, b in enumerate(boxes):
        y = 6 + i * ROW_H
        mid = y + ROW_H / 2 - 3
        out.append(f'<g class="row r{i % 3}"><title>{escape(b.label)}: n={b.n}, median {b.median:.4g} ms, '
                   f"quartiles {b.q1:.4g}–{b.q3:.4g} ms, whiskers {b.low:.4g}–{b.high:.4g} ms, "
                   f"{len(b.outliers)} beyond the whiskers</title>")  # fmt: skip
        out.append(f'<text class="label" x="{label_w - 8}" y="{mid + 5:.1f}">{escape(b.label)}</text>')
        out.append(f'<line class="whisker" x1="{x(b.low):.1f}" x2="{x(b.high):.1f}" y1="{mid:.1f}" y2="{mid:.1f}"/>')
        for end in (b.low, b.high):
            out.append(
                f'<line class="whisker" x1="{x(end):.1f}" x2="{x(end):.1f}" y1="{mid - 5:.1f}" y2="{mid + 5:.1f}"/>'
            )
        out.append(
            f'<rect class="box" x="{x(b.q1):.1f}" y="{mid - 8:.1f}" width="{max(x(b.q3) - x(b.q1), 1):.1f}" height="16"/>'
        )
        out.append(
            f'<line class="median" x1="{x(b.median):.1f}" x2="{x(b.median):.1f}" y1="{mid - 8:.1f}" y2="{mid + 8:.1f}"/>'
        )
        ticks = sorted({round(x(v)) for v in b.outliers})  # one mark per pixel: 700 samples stay small
        if ticks:
            d = "".join(f"M{t} {mid - 4:.0f}v8" for t in ticks)
            out.append(f'<path class="outlier" d="{d}"/>')
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))


def _ticks(lo_e: float, hi_e: float) -> list[float]:
    ticks = []
    for e in range(math.floor(lo_e), math.ceil(hi_e) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo_e <= math.log10(v) <= hi_e:
                ticks.append(v)
    return ticks


def _tick_label(v: float) -> str:
    return f"{v:g} ms"
