"""`poolkit report`: read the results, derive each section's view, render one HTML file, write it atomically."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, PackageLoader, select_autoescape

import poolkit
from poolkit.common.files import write_text_atomic
from poolkit.report import views
from poolkit.report.bench_view import FLAG_WORDS, TAIL_WORDS, bench_models
from poolkit.report.conformance_view import conformance
from poolkit.report.fmt import FILTERS
from poolkit.report.schema import Results, load_results

# The page's sections, in order: id, heading, the sources that fill it.
SECTIONS = [
    ("environment", "Environment", ("verify", "bench", "conformance")),
    ("export", "Export", ("manifest",)),
    ("verify", "Verify", ("verify", "examples")),
    ("bench", "Bench", ("bench",)),
    ("show", "Show", ()),
    ("conformance", "Conformance", ("conformance",)),
]


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


def context(found: Results, out: Path, figures: views.Figures) -> dict[str, Any]:
    """Everything the template shows, derived from what was found."""
    data = found.data
    states = {sid: "filled" if _filled(sid, found, figures) else "missing" for sid, _, _ in SECTIONS}
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
        "conformance": conformance(data["conformance"], found.results_dir, out) if data["conformance"] else None,
        "results_dir": str(found.results_dir),
        "show_dir": str(found.results_dir / "show"),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "poolkit_version": poolkit.__version__,
        "css": _asset("style.css"),
        "js": _asset("filters.js"),
    }


def _missing(found: Results, figures: views.Figures) -> dict[str, str]:
    missing = {k: found.missing_note(k) for k, v in found.data.items() if v is None}
    if not figures.show:
        missing["show"] = f"No PNGs in {found.results_dir / 'show'}: run 'poolkit show' to fill this section."
    return missing


def _filled(section: str, found: Results, figures: views.Figures) -> bool:
    if section == "show":
        return bool(figures.show)
    if section == "environment":
        return views.environment(found) is not None
    sources = next(s for sid, _, s in SECTIONS if sid == section)
    return any(found.data.get(s) is not None for s in sources)


def render(found: Results, out: Path) -> tuple[str, dict[str, str], list[str]]:
    """The page, each section's state, and the notes (missing files, pictures not embedded).

    The pictures are scaled in threads while the template renders; they go into the page last.
    """
    figures = views.figures(found)
    try:
        ctx = context(found, out, figures)
        page = template_env().get_template("report.html.j2").render(**ctx)
    except BaseException:
        figures.pictures.close()  # a malformed file: no worker thread may outlive the command
        raise
    html, picture_notes = figures.pictures.fill(page)
    return html, ctx["states"], list(ctx["missing"].values()) + picture_notes


def build_report(
    results_dir: Path = Path("results"), out: Path | None = None, models_dir: Path = Path("models")
) -> ReportResult:
    """What `poolkit report` does: one self-contained HTML page from the results folder."""
    start = time.perf_counter()
    out = Path(out) if out is not None else Path(results_dir) / "report.html"
    found = load_results(results_dir, models_dir)
    html, states, notes = render(found, out)
    write_text_atomic(out, html)
    return ReportResult(out, len(html.encode("utf-8")), time.perf_counter() - start, states, notes)
