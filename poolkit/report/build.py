"""`poolkit report`: read the results, derive each section's view, render one HTML file, write it atomically."""

from __future__ import annotations

import base64
import functools
import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, PackageLoader, select_autoescape

import poolkit
from poolkit.common.files import write_text_atomic
from poolkit.common.run_record import RUNS
from poolkit.report import views
from poolkit.report.bench_view import FLAG_WORDS, TAIL_WORDS, bench_models
from poolkit.report.conformance_view import conformance
from poolkit.report.fmt import FILTERS
from poolkit.report.schema import Origin, Results, load_results
from poolkit.report.summary import summarize

# The page's sections, in order: id, heading, the sources that fill it. The answers first (the
# summary), the machine last: a reader checks where a figure came from after reading it.
SECTIONS = [
    ("summary", "Summary", ("manifest", "verify", "bench", "conformance")),
    ("export", "Export", ("manifest",)),
    ("verify", "Verify", ("verify", "examples")),
    ("bench", "Bench", ("bench",)),
    ("show", "Show", ()),
    ("conformance", "Conformance", ("conformance",)),
    ("environment", "Environment", ("verify", "bench", "conformance")),
]
# Where each section's figures came from: the sources (and show's folder) whose run it names.
SECTION_SOURCES = {"summary": (), "export": (), "verify": ("verify", "examples"), "bench": ("bench",),
                   "show": ("show",), "conformance": ("conformance",), "environment": ()}  # fmt: skip


@dataclass
class ReportResult:
    path: Path
    bytes: int
    seconds: float
    sections: dict[str, str]  # id -> filled | missing
    notes: list[str] = field(default_factory=list)  # missing files, pictures not embedded

    def __json__(self) -> dict[str, Any]:
        return {"report": str(self.path), "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "sections": self.sections, "notes": self.notes}  # fmt: skip


@functools.cache
def template_env() -> Environment:
    """The Jinja2 environment, built once per process: compiling the templates is most of a small report's time."""
    env = Environment(
        loader=PackageLoader("poolkit.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=ChainableUndefined,  # a field missing from a results file is simply not shown
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


def _asset(name: str) -> str:
    return resources.files("poolkit.report").joinpath("templates", name).read_text(encoding="utf-8")


def csp_hash(text: str) -> str:
    """A Content-Security-Policy source for one inline <style> or <script>: its sha256, so the page
    runs its own script and nothing injected (no 'unsafe-inline')."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def provenance(found: Results) -> dict[str, list[Origin]]:
    """Per section, the runs (or folders) its figures came from, each named once."""
    out = {}
    for sid, keys in SECTION_SOURCES.items():
        origins = [found.origins[k] for k in keys if k in found.origins]
        if sid == "bench":
            origins = found.benches or origins
        out[sid] = list(dict.fromkeys(origins))
    out["summary"] = list(dict.fromkeys(o for v in out.values() for o in v))
    return out


def context(
    found: Results, out: Path, figures: views.Figures, comparisons: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Everything the template shows, derived from what was found."""
    data = found.data
    states = {sid: "filled" if _filled(sid, found, figures) else "missing" for sid, _, _ in SECTIONS}
    css, js = _asset("style.css"), _asset("filters.js") + "\n" + _asset("sort.js")
    return {
        "sections": [(sid, title, states[sid]) for sid, title, _ in SECTIONS],
        "states": states,
        "missing": _missing(found, figures),
        "data": data,
        "paths": {k: str(v) for k, v in found.paths.items()},
        "env": views.environment(found),
        "verify_summary": views.verify_summary(data["verify"]) if data["verify"] else None,
        "verify_rows": views.verify_rows(data["verify"]),
        "sensitivity": views.sensitivity(data["verify"]),
        "failures": figures.failures,
        "show": figures.show,
        "bench": bench_models(data["bench"]) if data["bench"] else [],
        "flag_words": FLAG_WORDS,
        "tail_words": TAIL_WORDS,
        "conformance": conformance(data["conformance"], found.folder("conformance"), out)
        if data["conformance"]
        else None,
        "results_dir": str(found.results_dir),
        "show_dir": str(found.folder("show") / "show"),
        "summary": summarize(found),
        "comparisons": comparisons or [],
        "provenance": provenance(found),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "poolkit_version": poolkit.__version__,
        "css": css,
        "js": js,
        "csp": f"default-src 'none'; style-src {csp_hash(css)}; script-src {csp_hash(js)}; img-src data:",
    }


def _missing(found: Results, figures: views.Figures) -> dict[str, str]:
    missing = {k: found.missing_note(k) for k, v in found.data.items() if v is None}
    if not figures.show:
        if found.mode == "latest" and "show" not in found.origins:
            missing["show"] = f"No show run in {found.results_dir / RUNS}: run 'poolkit show' to fill this section."
        elif found.mode == "named" and "show" not in found.origins:
            missing["show"] = "None of the runs named holds show/: run 'poolkit show', or name a run that does."
        else:
            missing["show"] = f"No PNGs in {found.folder('show') / 'show'}: run 'poolkit show' to fill this section."
    return missing


def _filled(section: str, found: Results, figures: views.Figures) -> bool:
    if section == "show":
        return bool(figures.show)
    if section == "environment":
        return views.environment(found) is not None
    if section == "summary":
        return any(found.data.get(s) is not None for s in ("manifest", "verify", "bench", "conformance"))
    sources = next(s for sid, _, s in SECTIONS if sid == section)
    return any(found.data.get(s) is not None for s in sources)


def render(
    found: Results, out: Path, comparisons: list[dict[str, Any]] | None = None
) -> tuple[str, dict[str, str], list[str]]:
    """The page, each section's state, and the notes (missing files, pictures not embedded).

    The pictures are scaled in threads while the template renders; they go into the page last.
    """
    figures = views.figures(found)
    try:
        ctx = context(found, out, figures, comparisons)
        page = template_env().get_template("report.html.j2").render(**ctx)
    except BaseException:
        figures.pictures.close()  # a malformed file: no worker thread may outlive the command
        raise
    html, picture_notes = figures.pictures.fill(page)
    return html, ctx["states"], list(ctx["missing"].values()) + picture_notes


def build_report(
    results_dir: Path = Path("results"),
    out: Path | None = None,
    models_dir: Path = Path("models"),
    runs: list[str] | None = None,
    comparisons: list[dict[str, Any]] | None = None,
) -> ReportResult:
    """What `poolkit report` does: one self-contained HTML page from the results folder: the latest
    run of each command under a results root, the `runs` named, or a folder of results files.
    `comparisons` (bench runs against the first, computed by bench's shift test) get a table."""
    start = time.perf_counter()
    out = Path(out) if out is not None else Path(results_dir) / "report.html"
    found = load_results(results_dir, models_dir, runs)
    html, states, notes = render(found, out, comparisons)
    write_text_atomic(out, html)
    return ReportResult(out, len(html.encode("utf-8")), time.perf_counter() - start, states, notes)
