"""sweep: a small real grid finds real failures; timeouts, crashes and resumes are handled."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.sweep.cell import run_cell
from poolkit.sweep.grid import Cell, build_grid, layer_variants
from poolkit.sweep.journal import Journal
from poolkit.sweep.result import CellResult
from poolkit.sweep.run import run_sweep
from tests.sweep_helpers import hang_crash_or_pass, must_not_run

runner = CliRunner()


def test_grid_is_base_singles_and_pairs() -> None:
    variants = layer_variants("maxpool", {"kernel_size": 3}, {"stride": [1, 2], "ceil_mode": [True]})
    texts = sorted(str(v) for v in variants)
    assert len(variants) == 1 + 3 + 2  # base, three single changes, two pairs (stride x ceil)
    assert {"kernel_size": 3, "stride": 2, "ceil_mode": True} in variants, texts
    cells = build_grid(("activation",), ("torchscript-script", "onnx-dynamo"), (17, 20), ((32, 32), (31, 31)))
    assert len({c.id for c in cells}) == len(cells) == 13 * 2 * (1 + 2)


def test_cells_report_real_outcomes_in_process() -> None:
    ok = run_cell(Cell("maxpool", "maxpool(k=3,ceil=true)", 32, 32, "onnx-legacy", 17, "onnxruntime", "cpu"))
    assert ok.outcome == "ok" and ok.max_abs == 0.0
    invalid = run_cell(Cell("maxpool", "maxpool(k=3,p=2)", 32, 32, "torchscript-script", None, "torchscript-cpu"))
    assert invalid.outcome == "invalid" and "pad should be at most half" in invalid.reason
    failed = run_cell(Cell("adaptive", "adaptivemaxpool(5)", 32, 32, "onnx-dynamo", 20, "onnxruntime", "cpu"))
    assert failed.outcome == "export-failed" and "adaptive_max_pool2d" in failed.reason


def test_small_grid_in_workers_finds_a_real_failing_combination(tmp_path: Path) -> None:
    grid = build_grid(("adaptive",), ("onnx-dynamo",), (20,), ((32, 32),))
    assert len(grid) == 12
    # Four of its cells (each a dynamo export, seconds apiece): enough for two workers to finish out of order.
    keep = ("adaptiveavgpool(1)", "adaptivemaxpool(4)", "adaptivemaxpool(5)", "adaptivemaxpool(1,indices=true)")
    cells = [c for c in grid if c.spec in keep]
    results, resumed = run_sweep(cells, Journal(tmp_path / "j.jsonl"), jobs=2, timeout_s=120)
    assert resumed == 0 and len(results) == len(cells) == 4
    outcome = {r.cell.spec: r.outcome for r in results}
    assert outcome["adaptivemaxpool(5)"] == "export-failed"
    assert outcome["adaptiveavgpool(1)"] == "ok" and outcome["adaptivemaxpool(4)"] == "ok"
    assert [r.cell for r in results] == cells  # grid order, whatever order the workers finished in


def test_a_hanging_cell_times_out_and_a_crashing_one_is_recorded(tmp_path: Path) -> None:
    cells = [
        Cell("activation", s, 8, 8, "torchscript-script", None, "torchscript-cpu")
        for s in ("tanh", "sigmoid", "relu", "elu")
    ]
    results, _ = run_sweep(cells, Journal(tmp_path / "j.jsonl"), jobs=2, timeout_s=4, cell_fn=hang_crash_or_pass)
    outcome = {r.cell.spec: (r.outcome, r.reason) for r in results}
    assert outcome["tanh"] == ("timeout", "no answer within 4 s")
    assert outcome["sigmoid"] == ("crashed", "worker died (exit code 3)")
    assert outcome["relu"] == ("ok", "ran") and outcome["elu"] == ("ok", "ran")


def test_an_interrupted_sweep_resumes_from_its_journal(tmp_path: Path) -> None:
    cells = [
        Cell("activation", s, 8, 8, "torchscript-script", None, "torchscript-cpu") for s in ("relu", "tanh", "elu")
    ]
    journal = Journal(tmp_path / "j.jsonl")
    for cell in cells[:2]:
        journal.append(CellResult(cell, "ok", "from the journal", 0.0))
    with open(journal.path, "a") as fh:
        fh.write('{"cell": {"group": "activation", "spec": "el')  # a line cut short by the interruption
    results, resumed = run_sweep(cells, journal, jobs=1, timeout_s=60, cell_fn=must_not_run)
    assert resumed == 2
    assert [(r.cell.spec, r.outcome) for r in results] == [("relu", "ok"), ("tanh", "ok"), ("elu", "crashed")]
    assert results[0].reason == "from the journal"


def test_sweep_cli_writes_json_and_markdown_and_resumes(tmp_path: Path) -> None:
    stem = tmp_path / "conformance"
    args = ["sweep", "--layer", "activation", "--exporters", "torchscript-trace", "--input-size", "8x8"]
    result = runner.invoke(app, [*args, "--out", str(stem), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads((stem.with_suffix(".json")).read_text())
    assert data["summary"]["cells"] == 13 and data["summary"]["ok"] == 13
    assert data["settings"]["exports"] == ["torchscript-trace"] and data["environment"]["torch"]
    md = stem.with_suffix(".md").read_text()
    assert (
        "**Summary:** 13 cells; 13 ok; 0 invalid" in md
        and "## activation" in md
        and "| `prelu(n=3)` | 8x8 | ok |" in md
    )
    with open(f"{stem}.jsonl", "a") as fh:
        fh.write('{"cell": {"group": "activ')  # an interruption cut the last line short
    again = runner.invoke(app, [*args, "--out", str(stem), "--jobs", "1"])
    assert again.exit_code == 0 and "resumed: 13 of 13 cells" in again.stderr
    assert "journal: skipped 1 unreadable line(s)" in again.stderr
    bad = runner.invoke(app, ["sweep", "--layer", "pooling", "--out", str(stem)])
    assert bad.exit_code == 2 and "bad --layer 'pooling'" in bad.stderr
    bad = runner.invoke(app, ["sweep", "--input-size", "32xbig", "--out", str(stem)])
    assert bad.exit_code == 2 and "bad --input-size '32xbig': expected sizes like 32x32" in bad.stderr


def test_the_sweep_table_never_crops_a_count() -> None:
    """Failure kinds no cell has are left out; where the table is still too wide, one line per group
    (a cropped table showed 100 as "1…")."""
    from rich.console import Console

    from poolkit.cli.render import sweep_table
    from poolkit.sweep.result import FAILURES

    def cell(spec: str) -> Cell:
        return Cell("boundary", spec, 8, 8, "torchscript-script", None, "torchscript-cpu")

    results = [CellResult(cell(f"relu{i}"), "ok") for i in range(100)]
    results.append(CellResult(cell("elu"), "export-failed", "no", blame="exporter"))

    def shown(width: int, rs: list[CellResult]) -> str:
        console = Console(width=width, record=True)
        console.print(sweep_table(rs, width))
        return console.export_text()

    wide = shown(200, results)
    assert "│ boundary │   101 │ 100 │       0 │      1 │" in wide and "value" not in wide  # no all-zero kinds
    every = results + [CellResult(cell(k), k, "x", blame="unclear") for k in FAILURES]
    narrow = shown(60, every)
    assert "…" not in narrow and "boundary: 108 cells, 100 ok, 0 invalid, 2 export," in narrow.replace("\n", " ")
