"""What the environment, export, verify and show sections show, derived from the results files.

The templates print rows as the files hold them; what needs computing (one environment table over
several files, one sensitivity line per model, the pictures) is done here, so the template stays
a layout and tests can check the derived values directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from poolkit.report.images import Pictures
from poolkit.report.schema import Results, items, num, obj, text

# (label, key in a results file's "environment") in the order a reader checks them.
ENVIRONMENT = [
    ("host", "host"), ("OS", "os"), ("CPU", "cpu"), ("logical cores", "cpu_cores_logical"),
    ("usable cores", "cpu_cores_usable"), ("GPU", "gpu"), ("GPU driver", "gpu_driver"), ("cuDNN", "cudnn"),
    ("CUDA available to torch", "cuda_available"), ("torch CUDA build", "torch_cuda_build"), ("Python", "python"),
    ("poolkit", "poolkit"), ("torch", "torch"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
    ("ONNX Runtime providers installed", "onnxruntime_providers_installed"),
]  # fmt: skip
ENV_SOURCES = ("verify", "bench", "conformance")
UNUSUAL = ("failed", "unavailable")


@dataclass
class EnvRow:
    label: str
    values: list[Any]  # one per source column

    @property
    def differs(self) -> bool:
        shown = [repr(v) for v in self.values if v is not None]
        return len(set(shown)) > 1


@dataclass
class Environment:
    sources: list[str]  # the files whose environment is shown, one column each
    rows: list[EnvRow]
    extra: list[tuple[str, Any]] = field(default_factory=list)  # threads, clock, load: bench's run


def environment(found: Results) -> Environment | None:
    envs = {k: obj(obj(found.data.get(k)).get("environment")) for k in ENV_SOURCES}
    envs = {k: v for k, v in envs.items() if v}
    if not envs:
        return None
    rows = []
    for label, key in ENVIRONMENT:
        values = [_env_value(env, key) for env in envs.values()]
        if any(v is not None for v in values):
            rows.append(EnvRow(label, values))
    extra: list[tuple[str, Any]] = []
    bench = found.data.get("bench") or {}
    settings, machine, env = obj(bench.get("settings")), obj(bench.get("machine")), obj(bench.get("environment"))
    if settings.get("threads") is not None:
        extra.append(("bench threads per runtime", settings["threads"]))
    freq = obj(env.get("cpu_frequency"))
    if freq:
        extra.append(("CPU clock (MHz) / governor", f"{freq.get('cur_mhz') or '—'} / {freq.get('governor') or '—'}"))
    for when in ("before", "after"):
        load = items(obj(machine.get(when)).get("load_average"))
        if load:
            extra.append((f"load average {when} bench (1/5/15 min)", " / ".join(f"{num(x) or 0:.2f}" for x in load)))
    return Environment(list(envs), rows, extra)


def _env_value(env: dict[str, Any], key: str) -> Any:
    value = env.get(key)
    if key == "gpu" and value is None and "gpu" in env:
        return "none"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return value


@dataclass
class SensitivityLine:
    """One model: how many wrong variants were tried and which input sets missed which."""

    model: str
    variants: list[dict[str, Any]]
    sets: list[str]

    @property
    def missed(self) -> list[dict[str, Any]]:
        return [v for v in self.variants if items(v.get("missed_by"))]

    @property
    def undetected(self) -> list[dict[str, Any]]:
        return [v for v in self.variants if not items(v.get("detected_by"))]

    @property
    def line(self) -> str:
        """One line: how many variants, how many every set caught, which sets missed some, how many none caught."""
        n = len(self.variants)
        head = f"{n} wrong variant{'s' if n != 1 else ''}"
        if not self.missed:
            return f"{head}, each caught by every input set"
        caught_all = n - len(self.missed)
        partly = len(self.missed) - len(self.undetected)
        sets = sorted({str(s) for v in self.missed if items(v.get("detected_by")) for s in items(v.get("missed_by"))})
        parts = [f"{caught_all} caught by every set"] if caught_all else []
        if partly:
            parts.append(f"{partly} missed by {', '.join(sets)} but caught by another set")
        if self.undetected:
            parts.append(f"{len(self.undetected)} caught by no set")
        return f"{head}: " + "; ".join(parts)


def sensitivity(verify: dict[str, Any] | None) -> list[SensitivityLine]:
    if not verify:
        return []
    by_model: dict[str, list[dict[str, Any]]] = {}
    for v in items(verify.get("sensitivity")):
        if isinstance(v, dict):
            by_model.setdefault(str(v.get("model")), []).append(v)
    sets = list(obj(verify.get("input_sets"))) or sorted(
        {
            str(s)
            for vs in by_model.values()
            for v in vs
            for s in items(v.get("detected_by")) + items(v.get("missed_by"))
        }
    )
    return [SensitivityLine(model, variants, sets) for model, variants in by_model.items()]


@dataclass
class Failure:
    """A verify row that did not pass, with its evidence: reason, first diverging layer, replay, heatmap."""

    row: dict[str, Any]
    heatmap: Markup | None  # the picture's place in the page (see images.Pictures)


@dataclass
class Figures:
    """Every picture of the page, started in one parallel pass; `pictures.fill` puts them in the page."""

    failures: list[Failure]
    show: list[tuple[str, Markup]]
    pictures: Pictures


def figures(found: Results) -> Figures:
    failed = [r for r in found.rows("verify") if r.get("status") == "failed"]
    heat = [text(r.get("heatmap")) for r in failed]
    verify_dir, show_dir = found.folder("verify"), found.folder("show")
    pics = Pictures([(verify_dir, h) for h in heat if h] + [(show_dir, str(p)) for p in found.show_pngs])
    failures = []
    for r, h in zip(failed, heat, strict=True):
        alt = f"error heatmap of {r.get('model')} {r.get('format')} on {r.get('runtime')}/{r.get('device')}"
        failures.append(Failure(r, pics.tag(verify_dir, h, alt) if h else None))
    show = []
    for p in found.show_pngs:
        caption = _caption(p)
        show.append((caption, pics.tag(show_dir, str(p), f"input and output grids: {caption}")))
    return Figures(failures, show, pics)


def _caption(png: Path) -> str:
    """show's `<model>-<runtime>[-<device>].png` as 'model · runtime · device'."""
    parts = png.stem.rsplit("-", 2)
    if len(parts) == 3 and parts[2] not in ("cuda", "cpu") and not parts[2].startswith("cuda"):
        parts = [f"{parts[0]}-{parts[1]}", parts[2]]
    return " · ".join(parts)


def verify_rows(verify: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each row with its worst output (largest max abs error; NaN counts as worst), its input sets'
    names and its tolerance advice, ready for the table."""
    out = []
    for r in items(obj(verify).get("rows")):
        outputs = [o for o in items(r.get("outputs")) if isinstance(o, dict)]
        worst = max(outputs, key=lambda o: _rank(o.get("max_abs")), default={})
        names = [str(obj(i).get("name")) for i in items(r.get("inputs")) if obj(i).get("name")]
        advice = [str(w) for w in items(obj(r.get("guidance")).get("warnings"))]
        out.append({**r, "worst": worst, "input_names": names, "advice": advice})
    return out


def _rank(value: Any) -> float:
    x = num(value)
    return -1.0 if x is None else math.inf if math.isnan(x) else x


def verify_summary(verify: dict[str, Any]) -> dict[str, Any]:
    """The line above the table: data, tolerances, counts (recomputed when the file lacks a summary)."""
    rows = [r for r in items(verify.get("rows")) if isinstance(r, dict)]
    summary = obj(verify.get("summary")) or {
        "rows": len(rows),
        **{s: sum(r.get("status") == s for r in rows) for s in ("passed", *UNUSUAL)},
    }
    data = verify.get("data")
    return {
        "data": obj(data).get("note") or obj(data).get("kind") or data,
        "atol": verify.get("atol"),
        "rtol": verify.get("rtol"),
        "devices": verify.get("devices"),
        "counts": summary,
    }
