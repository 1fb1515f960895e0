"""`poolkit report`: the page is built from the results files alone, embeds only what it should, and
says what is missing; a malformed file is one line and exit 2. The browser checks are in
test_report_browser.py; the demo-like results folder both use is built here."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from PIL import Image
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.common.errors import DataError
from poolkit.report.bench_view import box, box_plot
from poolkit.report.build import SECTIONS, build_report
from poolkit.report.fmt import g, matrix
from poolkit.report.views import SensitivityLine

ROOT = Path(__file__).resolve().parents[1]
# The tests' own results files (cut from docs/results/, see its README): never the checkout's results/.
FIXTURES = ROOT / "tests" / "fixtures" / "report"
DEMO_MODELS = ("conv", "relu")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def artifact(name: str, fmt: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "spec": name, "format": fmt, "method": "dynamo" if fmt == "onnx" else "script",
            "status": "ok", "input_shape": ["batch", 3, 32, 32], "path": f"{name}.{fmt}",
            "opset": 20 if fmt == "onnx" else None, "sha256": "ab" * 32, "size_bytes": 3183,
            "export_seconds": 1.5, "dynamic_axes": ["batch", "height", "width"], **extra}  # fmt: skip


def demo_results(tmp: Path, drop: tuple[str, ...] = (), full: bool = False) -> tuple[Path, Path]:
    """A results folder like `make demo`'s: the fixtures' JSON, two show PNGs, a manifest, one failure.

    Not `full`: the sweep cut to its first 60 cells and 20 failures, bench to two models and show's
    PNGs to small ones, so a test renders in a fraction of a second.
    """
    results, models = tmp / "results", tmp / "models"
    (results / "show").mkdir(parents=True)
    models.mkdir()
    for name in ("verify.json", "verify_examples.json", "bench.json", "conformance.json"):
        shutil.copy(FIXTURES / name, results / name)
    for model in DEMO_MODELS:
        target = results / "show" / f"{model}-eager.png"
        shutil.copy(FIXTURES / "show" / f"{model}-eager.png", target) if full else Image.new("RGB", (60, 30)).save(
            target
        )
    if not full:
        sweep = json.loads((results / "conformance.json").read_text())
        failed = [c for c in sweep["cells"] if c["outcome"] not in ("ok", "invalid")]
        sweep["cells"] = sweep["cells"][:60] + failed[:20]
        (results / "conformance.json").write_text(json.dumps(sweep))
        bench = json.loads((results / "bench.json").read_text())
        bench["measurements"] = [m for m in bench["measurements"] if m["model"] in DEMO_MODELS]
        (results / "bench.json").write_text(json.dumps(bench))
    manifest = [artifact(m, f) for m in DEMO_MODELS for f in ("onnx", "torchscript")]
    manifest.append(artifact("broken", "onnx", status="failed", error="RuntimeError: cannot export", sha256=None))
    (models / "manifest.json").write_text(json.dumps({"poolkit_manifest": 1, "artifacts": manifest}))
    heatmap = results / "verify_failures" / "conv.onnx.onnxruntime.cpu.heatmap.png"
    heatmap.parent.mkdir()
    Image.new("RGB", (40, 20), "red").save(heatmap)
    verify = json.loads((results / "verify.json").read_text())
    verify["rows"].append({"model": "conv", "format": "onnx", "runtime": "onnxruntime", "device": "cpu",
                           "status": "failed", "reason": "271,268 elements out of tolerance on raw",
                           "diverging_layer": "conv1 (layer 1: conv(3,6,k=3))", "heatmap": str(heatmap.relative_to(tmp)),
                           "replay": "poolkit verify --replay x.npz --models models"})  # fmt: skip
    (results / "verify.json").write_text(json.dumps(verify))
    for key in drop:
        target = {"manifest": models / "manifest.json", "show": results / "show"}.get(key, results / f"{key}.json")
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return results, models


class Links(HTMLParser):
    """Every URL the page could fetch: src/href attributes, and url(...) in inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value is not None:
                self.urls.append((tag, value))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("report")
    results, models = demo_results(tmp, full=True)
    done = build_report(results, results / "report.html", models)
    return results, done.path.read_text(encoding="utf-8")


def test_every_section_is_filled_from_the_demo_results(tmp_path: Path) -> None:
    results, models = demo_results(tmp_path)
    done = build_report(results, tmp_path / "out" / "report.html", models)
    assert done.sections == {sid: "filled" for sid, _, _ in SECTIONS}
    assert done.path == tmp_path / "out" / "report.html" and done.bytes == done.path.stat().st_size


def test_the_full_sweep_and_bench_stay_small(tmp_path: Path) -> None:
    """A sweep of 3,800 cells, 48 bench rows of 700 samples and 2 show grids: a page of at most 1.5 MB."""
    results, models = demo_results(tmp_path, full=True)
    sweep = fixture("conformance.json")
    cells = sweep["cells"]
    sweep["cells"] = [{**c, "cell": {**c["cell"], "spec": f"{c['cell']['spec']}#{i // len(cells)}"}}
                      for i, c in enumerate(cells * 5)][:3800]  # fmt: skip
    (results / "conformance.json").write_text(json.dumps(sweep))
    bench = fixture("bench.json")
    rows = bench["measurements"]
    bench["measurements"] = [{**m, "model": f"{m['model']}{i // len(rows)}", "samples_ms": (m["samples_ms"] * 4)[:700]}
                             for i, m in enumerate(rows * 3)][:48]  # fmt: skip
    (results / "bench.json").write_text(json.dumps(bench))
    html = build_report(results, results / "report.html", models).path.read_text(encoding="utf-8")
    assert html.count('data-outcome="') >= 3800 and html.count('<svg class="boxplot"') == 16
    assert len(html.encode()) < 1_500_000
    shown = [len(u) for u in re.findall(r'<img src="(data:[^"]+)" alt="input', html)]
    assert len(shown) == 2 and all(40_000 < n < 400_000 for n in shown), shown  # scaled from 900 px, ~290 KB each


def test_nothing_is_fetched_from_anywhere(demo: tuple[Path, str]) -> None:
    _, html = demo
    parser = Links()
    parser.feed(html)
    images = [u for t, u in parser.urls if t == "img"]
    assert len(images) == 3 and all(u.startswith("data:image/png;base64,") for u in images)  # 2 show + 1 heatmap
    for tag, url in parser.urls:
        assert url.startswith(("data:", "#")) or (tag == "a" and not re.match(r"^[a-z]+:", url)), (tag, url[:80])
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html  # and the policy forbids any fetch the markup might still make


def test_sections_show_the_values_of_their_files(demo: tuple[Path, str]) -> None:
    _, html = demo
    assert "✘ broken" not in html and "RuntimeError: cannot export" in html  # export: failed row with reason
    assert "<code>abababababab</code>" in html  # the hash prefix
    assert "271,268 elements out of tolerance on raw" in html and "conv1 (layer 1: conv(3,6,k=3))" in html
    assert "poolkit verify --replay x.npz --models models" in html
    assert "<code>[2, 3] / [5, 1]</code>" in html  # the seed's 5x5 through MaxPool2d(3, ceil_mode=True)
    benched = {m["model"] for m in fixture("bench.json")["measurements"]}
    assert html.count('<svg class="boxplot"') == len(benched) == 6  # one box plot per benchmarked model
    assert "each runtime in its own worker process" in html and "700 timed runs per row" in html
    assert "conv · eager" in html and "relu · eager" in html  # show captions
    failed = [c for c in fixture("conformance.json")["cells"] if c["outcome"] not in ("ok", "invalid")]
    assert 'id="cf-matrix"' in html and f"Failures ({len(failed)})" in html and len(failed) == 79  # every one


def test_a_missing_file_is_a_note_not_an_error(tmp_path: Path) -> None:
    results, models = demo_results(tmp_path, drop=("bench", "show", "manifest"))
    result = CliRunner().invoke(app, ["report", "--results", str(results), "--models", str(models)])
    assert result.exit_code == 0, result.output
    html = (results / "report.html").read_text(encoding="utf-8")
    assert escape(f"No {results / 'bench.json'}: run 'poolkit bench' to fill this section.") in html
    assert escape(f"No {models / 'manifest.json'}: run 'poolkit export --format all' to fill this section.") in html
    assert escape(f"No PNGs in {results / 'show'}: run 'poolkit show' to fill this section.") in html
    assert re.search(r'id="bench" data-section="bench" data-state="missing"', html)
    assert "report: " in result.stdout and "report.html" in result.stdout


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("bench.json", "{not json", "is not a poolkit bench file (invalid JSON at line 1 column 2"),
        ("verify.json", "[1, 2]", "is not a poolkit verify file (the top level is a list, not an object)"),
        ("conformance.json", '{"cells": {}}', "is not a poolkit conformance file ('cells' is a dict, not a list)"),
        ("verify_examples.json", '{"rows": [3]}', "is not a poolkit examples file (rows[0] is a int, not an object)"),
        ("bench.json", '{"measurements": [{"model": "m", "samples_ms": [0.1, "fast"]}]}',
         "bench.json measurements[0] (m).samples_ms holds 'fast', not a time in ms"),
        ("bench.json", b"\xff\xfe{}", "is not a poolkit bench file (not UTF-8 text)"),
    ],
)  # fmt: skip
def test_a_malformed_file_is_one_line_and_exit_2(tmp_path: Path, file: str, content: str | bytes, message: str) -> None:
    results, models = demo_results(tmp_path)
    path = results / file
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = CliRunner().invoke(app, ["report", "--results", str(results), "--models", str(models)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (results / "report.html").exists()  # nothing half-written


def test_no_results_folder_is_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: no results folder {tmp_path / 'nope'}: run 'make demo' or name the folder with --results"
    )


def test_out_naming_a_folder_is_refused(tmp_path: Path) -> None:
    results, models = demo_results(tmp_path)
    result = CliRunner().invoke(app, ["report", "--results", str(results), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "it is a folder, not a file" in result.stderr


def test_a_path_leaving_the_results_folder_is_not_embedded(tmp_path: Path) -> None:
    """A crafted verify.json naming another file (a secret, a PNG elsewhere) must not pull it into the page."""
    results, models = demo_results(tmp_path)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (4, 4), "blue").save(outside)
    verify = json.loads((results / "verify.json").read_text())
    verify["rows"][-1]["heatmap"] = str(outside)
    verify["rows"].append({**verify["rows"][-1], "model": "other", "heatmap": "/etc/passwd"})
    verify["rows"].append({**verify["rows"][-1], "model": "third", "heatmap": "../secret.png"})
    (results / "verify.json").write_text(json.dumps(verify))
    (results / "show" / "fake.png").write_text("not a png")
    (results / "show" / "link-eager.png").symlink_to(outside)  # a link in the folder pointing out of it
    sweep = json.loads((results / "conformance.json").read_text())
    failed = next(c for c in sweep["cells"] if c.get("bundle"))
    failed["bundle"] = "../../etc"
    (results / "conformance.json").write_text(json.dumps(sweep))
    done = build_report(results, results / "report.html", models)
    html = done.path.read_text(encoding="utf-8")
    assert html.count("data:image/png") == 2  # the two real show PNGs only
    assert any(n.startswith(f"{results / 'show' / 'link-eager.png'} is not a file inside") for n in done.notes)
    assert "../../etc <small>(outside the results folder: no link)</small>" in html and 'href="../../etc' not in html
    assert f"{outside} is not a file inside {results.resolve()}: not embedded" in done.notes
    assert f"/etc/passwd is not a file inside {results.resolve()}: not embedded" in done.notes
    assert any("fake.png is not a PNG" in n for n in done.notes)


def test_text_from_the_files_is_escaped(tmp_path: Path) -> None:
    results, models = demo_results(tmp_path)
    verify = json.loads((results / "verify.json").read_text())
    verify["rows"][0]["model"] = "<script>alert(1)</script>"
    verify["rows"][0]["reason"] = '"><img src=x onerror=alert(1)>'
    (results / "verify.json").write_text(json.dumps(verify))
    html = build_report(results, results / "report.html", models).path.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html


def test_fields_of_another_type_or_missing_are_not_shown_not_a_crash(tmp_path: Path) -> None:
    results, models = demo_results(tmp_path)
    verify = json.loads((results / "verify.json").read_text())
    verify["rows"] = [{"model": "m", "outputs": "x", "inputs": 5, "guidance": [], "status": 7}, {}]
    verify["sensitivity"] = {"not": "a list"}
    verify["summary"] = None
    (results / "verify.json").write_text(json.dumps(verify))
    bench = {"measurements": [{"model": "m", "latency_ms": "fast", "flags": "x", "samples_ms": [1, 2, 3]}]}
    (results / "bench.json").write_text(json.dumps(bench))
    done = build_report(results, results / "report.html", models)
    assert done.sections["verify"] == "filled" and done.sections["bench"] == "filled"


def test_bench_box_is_quartiles_and_tukey_whiskers() -> None:
    b = box("eager", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 100.0])
    assert (b.q1, b.median, b.q3) == (3.25, 5.5, 7.75)  # inclusive quartiles
    assert (b.low, b.high, b.outliers) == (1.0, 9.0, [100.0])  # 100 > q3 + 1.5 * IQR = 14.5
    svg = str(box_plot("conv", [b]))
    assert svg.count('class="box"') == 1 and svg.count("M") == 1  # one outlier tick
    assert "n=10, median 5.5 ms" in svg and ">1 ms<" in svg and ">100 ms<" in svg


def test_seven_hundred_samples_stay_a_small_svg() -> None:
    xs = [0.5 + (i % 97) / 1000 for i in range(690)] + [4.0 + i / 100 for i in range(10)]
    svg = str(box_plot("m", [box("a", xs), box("b", xs), box("c", xs)]))
    assert len(svg) < 6000


def test_sensitivity_is_one_line_per_model() -> None:
    variants = [
        {"variant": "relu1→identity", "detected_by": ["normalized", "edge"], "missed_by": ["raw"]},
        {"variant": "w ×(1+0.001)", "detected_by": [], "missed_by": ["raw", "edge"]},
        {"variant": "w2 ×(1+0.001)", "detected_by": ["raw", "edge"], "missed_by": []},
    ]
    line = SensitivityLine("m", variants, ["raw", "normalized", "edge"])
    assert (
        line.line
        == "3 wrong variants: 1 caught by every set; 1 missed by raw but caught by another set; 1 caught by no set"
    )
    assert SensitivityLine("m", variants[2:], ["raw"]).line == "1 wrong variant, each caught by every input set"


def test_numbers_read_like_the_tables() -> None:
    assert [g(1e-05), g(0.000112), g(5400000), g(None), g("nan"), g("inf"), g(True)] == [
        "1e-05", "0.000112", "5,400,000", "—", "NaN", "∞", "True",
    ]  # fmt: skip
    assert matrix([[0.7311, 0.3775], [0.2689, 0.9526]]) == "[0.7311, 0.3775] / [0.2689, 0.9526]"


def test_conformance_columns_and_bundle_links(demo: tuple[Path, str]) -> None:
    _, html = demo
    headers = re.findall(r'<th scope="col" data-col="\d+"[^>]*>([^<]+)</th>', html)
    assert headers[:3] == ["ts-script ts-cpu", "ts-trace ts-cpu", "dynamo-17→17/18 ort-cpu"]
    assert 'href="conformance-bundles/maxpool-16242d544ef72b8b/"' in html  # relative to the page
    assert "(not on disk: re-run poolkit sweep)" in html  # bundles are not committed


def test_schema_refuses_rows_that_are_not_objects(tmp_path: Path) -> None:
    from poolkit.report.schema import SOURCES, load_source

    path = tmp_path / "conformance.json"
    path.write_text('{"cells": [{"cell": 3}]}')
    with pytest.raises(DataError, match=r"cells\[0\].cell is a int, not an object"):
        load_source(path, SOURCES["conformance"])


def test_a_decompression_bomb_is_refused_not_decoded(tmp_path: Path) -> None:
    """A PNG whose header claims 100,000 x 100,000 pixels is a note, read no further."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    results, models = demo_results(tmp_path)
    (results / "show" / "bomb-eager.png").write_bytes(bomb)
    done = build_report(results, results / "report.html", models)
    assert any(n.startswith(f"{results / 'show' / 'bomb-eager.png'} cannot be read as a PNG") for n in done.notes)


@pytest.mark.slow
def test_a_wheel_install_has_the_templates(tmp_path: Path) -> None:
    """Package data: a non-editable install renders the page (templates, style and script inside the wheel)."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True)  # fmt: skip
    (wheel,) = tmp_path.glob("poolkit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for name in ("report.html.j2", "_conformance.html.j2", "style.css", "filters.js"):
        assert f"poolkit/report/templates/{name}" in names, name
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    results, models = demo_results(tmp_path / "demo")
    code = "import sys, poolkit.cli; sys.argv = ['poolkit', 'report', '--json']; poolkit.cli.app()"
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "demo", env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["sections"] == {sid: "filled" for sid, _, _ in SECTIONS}
    where = [sys.executable, "-c", "import poolkit.report as r; print(r.__file__)"]
    assert str(target) in subprocess.run(where, cwd=tmp_path, env=env, capture_output=True, text=True).stdout


def test_a_wide_picture_is_scaled_and_its_transparency_laid_on_white() -> None:
    import io

    from poolkit.report.images import MAX_WIDTH, _fit

    noise = Image.effect_noise((1200, 400), 100).convert("RGBA")  # incompressible: well over KEEP_BYTES
    noise.putalpha(Image.new("L", noise.size, 255))
    noise.paste((0, 0, 0, 0), (0, 0, 60, 60))  # a transparent corner
    raw = io.BytesIO()
    noise.save(raw, format="PNG")
    with Image.open(io.BytesIO(_fit(raw.getvalue()))) as out:
        assert out.size == (MAX_WIDTH, 267) and out.mode == "RGB"
        assert out.getpixel((5, 5)) == (255, 255, 255)


def test_fields_other_work_adds_get_a_column_only_when_present(tmp_path: Path) -> None:
    """Producers gain fields (precision, outputs checked inside bench's loop, peak RSS): shown when there."""
    results, models = demo_results(tmp_path)
    for name, rows in (("bench.json", "measurements"), ("verify.json", "rows")):  # results as older work wrote them
        data = json.loads((results / name).read_text())
        for row in data[rows]:
            for key in ("outputs_checked", "outputs_matched", "peak_rss_mb", "precision"):
                row.pop(key, None)
        (results / name).write_text(json.dumps(data))
    before = build_report(results, results / "report.html", models).path.read_text(encoding="utf-8")
    assert ">precision<" not in before and "outputs matched" not in before
    bench = json.loads((results / "bench.json").read_text())
    for m in bench["measurements"]:
        m.update(outputs_checked=700, outputs_matched=699, peak_rss_mb=321.5)
    (results / "bench.json").write_text(json.dumps(bench))
    verify = json.loads((results / "verify.json").read_text())
    verify["rows"][0]["precision"] = "bf16"
    (results / "verify.json").write_text(json.dumps(verify))
    html = build_report(results, results / "report.html", models).path.read_text(encoding="utf-8")
    assert '<td class="num bad">✘ 1 of 700 differ</td>' in html and '<td class="num">322</td>' in html
    assert html.count('<th scope="col">precision</th>') == 1 and "<td>bf16</td>" in html


def test_bundle_links_are_relative_to_where_the_page_is_written(tmp_path: Path) -> None:
    results, models = demo_results(tmp_path)
    html = build_report(results, tmp_path / "pages" / "r.html", models).path.read_text(encoding="utf-8")
    assert 'href="../results/conformance-bundles/maxpool-16242d544ef72b8b/"' in html


def _bench_run(root: Path, bench: dict[str, Any]) -> Path:
    from poolkit.common.runs import finish_run, start_run

    run = start_run("bench", root, ["poolkit", "bench"])
    (run.folder / "bench.json").write_text(json.dumps(bench))
    finish_run(run, 0)
    return run.folder


def test_two_saved_bench_runs_are_compared_row_by_row_without_timing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import poolkit.bench.run

    def no_timing(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("report timed something")

    monkeypatch.setattr(poolkit.bench.run, "run_bench", no_timing)
    root, models = tmp_path / "root", tmp_path / "models"
    models.mkdir()
    old = fixture("bench.json")
    new = json.loads(json.dumps(old))
    for m in new["measurements"]:
        if m["runtime"] == "onnxruntime":  # 30 % slower, every sample
            m["samples_ms"] = [x * 1.3 for x in m["samples_ms"]]
    first, second = _bench_run(root, old), _bench_run(root, new)
    result = CliRunner().invoke(
        app, ["report", "--results", str(root), "--models", str(models), "--runs", "bench~1,bench"]
    )
    assert result.exit_code == 0, result.output
    ort = [ln for ln in result.stdout.splitlines() if "onnxruntime" in ln]
    assert len(ort) == 6 and all("regression" in ln for ln in ort)
    html = (root / "report.html").read_text(encoding="utf-8")
    assert "Changes between runs, from their saved samples" in html and html.count(">regression</td>") == 6
    assert f"run {second.name} on " in html and f"run {first.name} on " in html  # each named, with its machine
    as_json = CliRunner().invoke(app, ["report", "--results", str(root), "--models", str(models), "--runs",
                                       f"{first.name},{second.name}", "--json"])  # fmt: skip
    (compared,) = json.loads(as_json.stdout)["comparisons"]
    assert compared["old"].startswith(f"run {first.name}") and len(compared["changes"]) == 18
    verdicts = {(c["runtime"], c["verdict"]) for c in compared["changes"]}
    assert verdicts == {("onnxruntime", "regression"), ("eager", "within noise"), ("torchscript", "within noise")}


def test_by_default_the_report_shows_the_latest_run_of_each_command(tmp_path: Path) -> None:
    from poolkit.common.runs import finish_run, start_run

    root, models = tmp_path / "root", tmp_path / "models"
    models.mkdir()
    older = _bench_run(root, {"measurements": []})
    newest = _bench_run(root, fixture("bench.json"))
    verify = start_run("verify", root)
    (verify.folder / "verify.json").write_text((FIXTURES / "verify.json").read_text())
    finish_run(verify, 0)
    broken = start_run("verify", root)  # newer, but it ended in an error: not the latest
    (broken.folder / "verify.json").write_text("{half")
    finish_run(broken, 2, "interrupted")
    done = build_report(root, root / "report.html", models)
    html = done.path.read_text(encoding="utf-8")
    assert done.sections["bench"] == "filled" and done.sections["verify"] == "filled"
    assert f'<p class="from" data-from="bench">From <span class="origin">run {newest.name} on ' in html
    assert f"{older.name} " not in html and broken.id not in html
    assert f"No sweep run in {root / 'runs'}: run &#39;poolkit sweep&#39; to fill this section." in html


def test_a_heatmap_is_found_in_its_run_wherever_the_run_is_read_from(tmp_path: Path) -> None:
    """verify.json names its heatmap as written (results/runs/ID/verify_failures/...): found in the run's folder."""
    results, models = demo_results(tmp_path)
    verify = json.loads((results / "verify.json").read_text())
    verify["rows"][-1]["heatmap"] = (
        "results/runs/20260101T000000Z-verify-h/verify_failures/conv.onnx.onnxruntime.cpu.heatmap.png"
    )
    (results / "verify.json").write_text(json.dumps(verify))
    html = build_report(results, results / "report.html", models).path.read_text(encoding="utf-8")
    assert 'alt="error heatmap of conv onnx on onnxruntime/cpu"' in html


def test_the_outputs_matched_cell_reads_a_boolean_as_a_verdict(tmp_path: Path) -> None:
    from poolkit.report.fmt import matched_text

    assert matched_text(True, 108) == "✔ all 108 matched" and matched_text(False, 108) == "✘ not all 108 matched"
    assert matched_text(105, 108) == "✘ 3 of 108 differ" and matched_text(None, 0) == "—"
    results, models = demo_results(tmp_path)
    html = build_report(results, results / "report.html", models).path.read_text(encoding="utf-8")
    assert '<td class="num good">✔ all 108 matched</td>' in html and "True / " not in html
