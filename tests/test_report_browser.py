"""The report in a real browser: headless Chromium (the system's, driven by Playwright) with every
network request blocked. The page loads with no console error and no request leaving it, every
section is there with the demo's models, the conformance filter hides rows, a phone-sized window
never scrolls sideways (and its pictures stay legible), the summary's figures are the JSON's, tables
sort, only the page's own script runs (its CSP allows it by hash, never 'unsafe-inline'), and without
JavaScript everything but the filters is readable.

Needs Playwright (the `dev` extra) and a Chromium (`make test` installs Debian's `chromium` when run
as root). Without them these tests skip and say why; with POOLKIT_REQUIRE_BROWSER=1 (CI) they fail.
A screenshot of each page is kept under build/report-browser/ and its path printed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poolkit.report.build import SECTIONS, build_report
from tests.test_report import DEMO_MODELS, ROOT, demo_results, fixture

pytestmark = pytest.mark.slow  # a browser start takes seconds
REQUIRE_ENV = "POOLKIT_REQUIRE_BROWSER"
BROWSER_ENV = "POOLKIT_CHROMIUM"  # a Chromium binary other than the one on PATH
ARTIFACTS = ROOT / "build" / "report-browser"
# Sections that list the demo's models by name (environment and conformance do not).
MODEL_SECTIONS = ("export", "verify", "bench", "show")


def chromium_path() -> str | None:
    return os.environ.get(BROWSER_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if not chromium_path():
        return "no Chromium on PATH (as root: apt-get install chromium; or set POOLKIT_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _missing()
    if problem:
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{REQUIRE_ENV} is set but the browser test cannot run: {problem}")
        pytest.skip(f"browser test skipped: {problem}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield instance
        instance.close()


class Visit:
    """One page load with every request recorded and any request but the page itself refused."""

    def __init__(self, browser: Any, path: Path, *, width: int = 1280, javascript: bool = True) -> None:
        self.url = path.resolve().as_uri()
        self.context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=javascript)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.context.route("**/*", lambda route: route.continue_() if route.request.url == self.url else route.abort())
        self.page.goto(self.url, wait_until="load")

    @property
    def fetched(self) -> list[str]:
        """Requests other than the page itself (data: URIs are the page's own bytes)."""
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]

    def screenshot(self, name: str, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        print(f"screenshot: {path}")
        return path

    def close(self) -> None:
        self.context.close()


def page_problems(page: Any, models: tuple[str, ...] = DEMO_MODELS) -> list[str]:
    """What a reader would miss: a section absent, hidden, without its data, or without the demo's models."""
    problems = []
    for sid, title, _ in SECTIONS:
        found = page.evaluate(
            """sid => { const s = document.getElementById(sid);
                 if (!s) return null;
                 const r = s.getBoundingClientRect();
                 return {state: s.dataset.state, heading: (s.querySelector('h2') || {}).textContent || '',
                         visible: r.width > 0 && r.height > 0,
                         content: s.querySelectorAll('tbody tr, figure, svg, details, dl.answers dd').length,
                         text: s.innerText}; }""",
            sid,
        )
        if found is None:
            problems.append(f"{sid}: no section")
            continue
        if found["heading"] != title or not found["visible"]:
            problems.append(f"{sid}: heading {found['heading']!r}, visible {found['visible']}")
        if found["state"] != "filled" or found["content"] == 0:
            problems.append(f"{sid}: no data ({found['state']}, {found['content']} rows/figures)")
        if sid in MODEL_SECTIONS:
            absent = [m for m in models if m not in found["text"]]
            if absent:
                problems.append(f"{sid}: models {absent} not shown")
    return problems


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results, models = demo_results(tmp_path_factory.mktemp("browser"), full=True)
    return build_report(results, results / "report.html", models).path


def test_the_page_loads_offline_with_every_section(
    browser: Any, demo_page: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    visit = Visit(browser, demo_page)
    try:
        assert visit.errors == []
        assert visit.fetched == [] and visit.requests[0] == visit.url
        assert page_problems(visit.page) == []
        images = visit.page.evaluate("[...document.images].map(i => [i.naturalWidth, i.complete])")
        assert len(images) == 3 and all(w > 0 and done for w, done in images)  # decoded from their data URIs
        shot = visit.screenshot("report-laptop", full_page=True)
        with capsys.disabled():  # the artifact's path, shown even when pytest captures output
            print(f"\nreport screenshot (test artifact): {shot}")
    finally:
        visit.close()


def test_the_conformance_filter_hides_rows(browser: Any, demo_page: Path) -> None:
    visit = Visit(browser, demo_page)
    try:
        rows = "#cf-matrix tbody tr"
        total = visit.page.locator(rows).count()
        cells = fixture("conformance.json")["cells"]
        layers = {
            (c["cell"]["group"], c["cell"]["spec"], c["cell"].get("height"), c["cell"].get("width")) for c in cells
        }
        assert total == len(layers) == 106 and visit.page.locator(f"{rows}:visible").count() == total
        visit.page.select_option("select[name=outcome]", "declared-shape-mismatch")
        shown = visit.page.locator(f"{rows}:visible")
        assert 0 < shown.count() < total
        assert all("declared-shape-mismatch" in t for t in shown.all_inner_texts())
        assert visit.page.locator("#cf-count").inner_text() == f"{shown.count()} of {total} rows shown"
        failures = visit.page.locator("#cf-failures tbody tr:visible").all_inner_texts()
        declared = sum(c["outcome"] == "declared-shape-mismatch" for c in cells)
        assert len(failures) == declared == 2 and all("declared-shape-mismatch" in t for t in failures)
        visit.page.select_option("select[name=group]", "adaptive")
        assert all(t.startswith("adaptive") for t in visit.page.locator(f"{rows}:visible").all_inner_texts())
        visit.page.select_option("select[name=outcome]", "")
        visit.page.select_option("select[name=group]", "")
        visit.page.select_option("select[name=export]", "torchscript-trace")
        headers = visit.page.locator("#cf-matrix thead th:visible").all_inner_texts()
        assert headers == ["group", "layer", "input", "ts-trace ts-cpu"]
        visit.page.locator("#conformance").scroll_into_view_if_needed()
        visit.screenshot("report-filtered")
        assert visit.errors == [] and visit.fetched == []
    finally:
        visit.close()


def test_a_phone_never_scrolls_the_page_sideways(browser: Any, demo_page: Path) -> None:
    visit = Visit(browser, demo_page, width=375)
    try:
        widths = visit.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], widths  # wide tables scroll inside their wrappers
        shown = visit.page.evaluate(
            "[...document.querySelectorAll('figure.show img')].map(i => i.getBoundingClientRect().width)"
        )
        assert len(shown) == 2 and all(w >= 500 for w in shown), (
            shown
        )  # legible grids (their figure scrolls), not thumbnails
        visit.screenshot("report-phone")
    finally:
        visit.close()


def expected_summary(results: Path, models: Path) -> dict[str, Any]:
    """The summary's figures computed here from the JSON files, independently of poolkit's code."""
    manifest = json.loads((models / "manifest.json").read_text())["artifacts"]
    verify = json.loads((results / "verify.json").read_text())["rows"]
    cells = json.loads((results / "conformance.json").read_text())["cells"]
    bench = json.loads((results / "bench.json").read_text())["measurements"]
    fastest: dict[str, str] = {}
    best: dict[str, float] = {}
    for m in bench:
        p50 = m["latency_ms"]["p50"] if m["status"] == "ok" else math.inf
        if p50 < best.get(m["model"], math.inf):
            best[m["model"]], fastest[m["model"]] = p50, m["runtime"]
    eager = {m["model"]: m["latency_ms"]["p50"] for m in bench if m["runtime"] == "eager" and m["status"] == "ok"}
    return {
        "artifacts-ok": sum(a["status"] == "ok" for a in manifest),
        "artifacts-failed": sum(a["status"] != "ok" for a in manifest),
        "verify-passed": sum(r.get("status") == "passed" for r in verify),
        "verify-failed": sum(r.get("status") == "failed" for r in verify),
        "verify-rows": len(verify),
        "cells": len(cells),
        "cells-ok": sum(c["outcome"] == "ok" for c in cells),
        "cells-failed": sum(c["outcome"] not in ("ok", "invalid") for c in cells),
        "fastest": fastest,
        "speedup": {k: f"{eager[k] / best[k]:.2f}" for k in best if k in eager},
    }


def test_the_summary_answers_with_the_figures_of_the_files(browser: Any, tmp_path: Path) -> None:
    results, models = demo_results(tmp_path, full=True)
    want = expected_summary(results, models)
    visit = Visit(browser, build_report(results, results / "report.html", models).path)
    try:
        top = visit.page.evaluate("document.querySelector('main section').id")
        shown = visit.page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#summary [data-summary]:not(td)')]"
            ".filter(e => !e.closest('table')).map(e => [e.dataset.summary, e.textContent.trim()]))"
        )
        fastest = visit.page.evaluate(
            "[...document.querySelectorAll('#summary-fastest tbody tr')].map(tr => [tr.dataset.model,"
            " tr.querySelector('[data-summary=fastest-runtime]').textContent.trim(),"
            " (tr.querySelector('[data-summary=fastest-speedup]') || {}).textContent])"
        )
    finally:
        visit.close()
    assert top == "summary"  # the answers come first
    for key in ("artifacts-ok", "artifacts-failed", "verify-passed", "verify-failed", "verify-rows", "cells",
                "cells-ok", "cells-failed"):  # fmt: skip
        assert shown[key].replace(",", "") == str(want[key]), key
    assert {m: r for m, r, _ in fastest} == want["fastest"] and len(fastest) == 6
    assert {m: s for m, _, s in fastest if s} == want["speedup"]
    assert shown["verify-worst"] == "conv onnx on onnxruntime/cpu"  # the one failed row


def test_a_table_sorts_by_the_column_clicked(browser: Any, demo_page: Path) -> None:
    visit = Visit(browser, demo_page)
    try:
        column = "[...document.querySelectorAll('#bench-rows tbody tr')].map(tr => tr.cells[4].dataset.sort || tr.cells[4].textContent)"
        visit.page.locator("#bench-rows thead th", has_text="p50").click()
        up = [float(t.split()[0].replace(",", "")) for t in visit.page.evaluate(column)]
        visit.page.locator("#bench-rows thead th", has_text="p50").click()
        down = [float(t.split()[0].replace(",", "")) for t in visit.page.evaluate(column)]
        assert up == sorted(up) and down == sorted(up, reverse=True) and len(up) == 18
        assert visit.page.locator("#bench-rows thead th[aria-sort=descending]").inner_text().startswith("p50")
    finally:
        visit.close()


def test_only_the_pages_own_script_runs(browser: Any, demo_page: Path, tmp_path: Path) -> None:
    """The policy allows the page's script by its hash: an inline script added to the page never runs."""
    html = demo_page.read_text(encoding="utf-8")
    policy = html.split('http-equiv="Content-Security-Policy" content="', 1)[1].split('"', 1)[0]
    assert "unsafe-inline" not in policy and "script-src 'sha256-" in policy and "style-src 'sha256-" in policy
    injected = tmp_path / "injected.html"
    injected.write_text(
        html.replace("</main>", "<script>document.title = 'injected'</script></main>"), encoding="utf-8"
    )
    visit = Visit(browser, injected)
    try:
        assert visit.page.title() == "poolkit report"  # refused by the policy
        assert visit.page.locator("#cf-filters").is_visible()  # while the page's own script ran
        assert any("Content Security Policy" in e for e in visit.errors), visit.errors
    finally:
        visit.close()


def test_without_javascript_all_but_the_filters_is_there(browser: Any, demo_page: Path) -> None:
    visit = Visit(browser, demo_page, javascript=False)
    try:
        assert page_problems(visit.page) == []
        assert visit.page.locator("#cf-filters").is_hidden()
        assert visit.page.locator("#cf-matrix tbody tr:visible").count() == 106
    finally:
        visit.close()


@pytest.mark.parametrize("drop", ["bench", "manifest", "show", "verify"])
def test_the_checker_catches_a_section_without_its_data(browser: Any, tmp_path: Path, drop: str) -> None:
    """Not vacuous: a page rendered with one source removed fails the check, naming that section."""
    results, models = demo_results(tmp_path, drop=(drop,))
    visit = Visit(browser, build_report(results, results / "report.html", models).path)
    try:
        section = {"manifest": "export"}.get(drop, drop)
        problems = page_problems(visit.page)
        assert problems and all(p.startswith(f"{section}:") for p in problems), problems
        assert visit.errors == [] and visit.fetched == []  # a page with a note is still a clean page
    finally:
        visit.close()


def test_the_checker_catches_a_section_removed_from_the_page(browser: Any, demo_page: Path, tmp_path: Path) -> None:
    html = demo_page.read_text(encoding="utf-8")
    start = html.index('<section id="show"')
    cut = tmp_path / "cut.html"
    cut.write_text(html[:start] + html[html.index("</section>", start) + len("</section>") :], encoding="utf-8")
    visit = Visit(browser, cut)
    try:
        assert page_problems(visit.page) == ["show: no section"]
    finally:
        visit.close()


def test_a_request_to_the_network_would_be_seen(browser: Any, tmp_path: Path) -> None:
    """The request recorder itself works: a page that fetches an image is caught (and refused)."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><title>x</title><img src="https://example.com/x.png">', encoding="utf-8")
    visit = Visit(browser, page)
    try:
        assert visit.fetched == ["https://example.com/x.png"]
    finally:
        visit.close()
