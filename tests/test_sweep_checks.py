"""sweep 2.0: boundary cases, declared shapes, bit-exact indices, blame, bundles, newest opset, journal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.sweep import blame as sweep_blame
from poolkit.sweep.blame import blame_cell, exact_integer_problems
from poolkit.sweep.cell import run_cell
from poolkit.sweep.grid import Cell, boundary_layers, build_grid, window_conditions
from poolkit.sweep.journal import Journal
from poolkit.sweep.opsets import newest_opsets, probe_opset
from poolkit.sweep.report import column_labels, markdown
from poolkit.sweep.result import CellResult
from poolkit.sweep.run import run_sweep
from tests.sweep_helpers import interrupt_or_pass, must_not_run

runner = CliRunner()


def test_window_conditions_follow_pytorchs_output_size_rule() -> None:
    # AvgPool2d(3, 2, padding=1, ceil_mode=True) on 6: floor gives 3 windows, ceil 4 (the 4th starts at 6 < 6+1).
    assert window_conditions(6, 3, 2, 1, 1, True) == {
        "windows-do-not-tile",
        "stride!=kernel",
        "padding",
        "ceil-adds-partial-window",
    }
    # Kernel 2, stride 3, padding 1 on 4: the ceil window would start at 6 >= 4+1, inside the padding: dropped.
    assert "ceil-window-starts-in-padding" in window_conditions(4, 2, 3, 1, 1, True)
    assert "input<=kernel" in window_conditions(3, 3, 2, 1, 1, False)
    assert "dilation+ceil" in window_conditions(7, 3, 2, 1, 2, True)
    assert window_conditions(1, 3, 1, 0, 1, False) is None  # no output at all: not generated


def test_boundary_generator_reaches_three_change_cells_and_every_condition() -> None:
    layers = boundary_layers()
    specs = {s for s, _ in layers}
    assert "avgpool(k=3,s=2,p=1,ceil=true)" in specs  # kernel 3, stride 2, padding 1, ceil_mode
    assert "avgpool(k=3,s=2,p=1,ceil=true,include_pad=false)" in specs  # ... and count_include_pad
    assert any(s.startswith("maxpool(") and "d=2" in s and "ceil=true" in s for s in specs)
    sizes = {n for _, n in layers}
    assert {1, 2, 3} <= sizes and any(n % 2 for n in sizes)
    seen = set()
    for spec, n in layers:
        args = dict(kv.split("=") for kv in spec[spec.index("(") + 1 : -1].split(","))
        flags = window_conditions(
            n, int(args["k"]), int(args["s"]), int(args.get("p", 0)), int(args.get("d", 1)), "ceil" in args
        )
        seen |= flags or set()
    assert {"ceil-window-starts-in-padding", "ceil-adds-partial-window", "windows-do-not-tile"} <= seen
    assert {"input<=kernel", "stride!=kernel", "dilation+ceil"} <= seen
    cells = build_grid(("boundary",), ("onnx-legacy",), (17,), ((32, 32),))
    assert len(cells) == len(layers) and {(c.height, c.width) for c in cells} == {(n, n) for _, n in layers}


def test_one_and_three_d_pools_have_their_own_input_shapes() -> None:
    cells = build_grid(("pool1d", "pool3d"), ("torchscript-trace",), (17,), ((32, 32), (31, 31)))
    one = next(c for c in cells if c.spec.startswith("avgpool1d"))
    three = next(c for c in cells if c.spec.startswith("maxpool3d"))
    assert one.sample_shape == (3, 31) and one.input_label == "31"  # the odd size only
    assert three.sample_shape == (3, 7, 31, 31) and three.input_label == "7x31x31"
    assert "maxpool1d(k=3,indices=true,ceil=true)" in {c.spec for c in cells}
    assert run_cell(three).outcome == "ok"


def test_declared_shape_mismatch_is_its_own_failure_with_ort_words_blame_and_a_repro(tmp_path: Path) -> None:
    # A depth of 2 under a 3-deep kernel with padding and ceil_mode: the legacy exporter declares
    # a depth of 2, PyTorch and ONNX Runtime give 1.
    cell = Cell("pool3d", "maxpool3d(k=3,p=1,ceil=true)", 9, 9, "onnx-legacy", 17, "onnxruntime", "cpu", 2)
    r = run_cell(cell, bundles=str(tmp_path))
    assert r.outcome == "declared-shape-mismatch" and r.failed and r.opset_used == 17
    assert r.reason.startswith("output 0: file declares (batch,3,2,4,4), runtime gives (3,3,1,4,4)")
    assert "Expected shape from model of {-1,3,2,4,4} does not match actual shape of {3,3,1,4,4}" in r.reason
    assert r.blame == "exporter" and r.votes["reference"] == "produces PyTorch's shapes, not the declared ones"
    bundle = Path(r.bundle)
    assert sorted(p.name for p in bundle.rglob("*") if p.is_file()) == [
        "cell.json",
        "input_0.pb",
        "model.onnx",
        "output_0.pb",
        "repro.py",
    ]
    out = _repro(bundle)
    assert out.returncode == 1 and "REPRODUCED: output 0: the file declares shape ['batch', 3, 2, 4, 4]" in out.stderr
    assert out.stdout.startswith("torch 2.")


def test_value_and_export_failures_get_blame_and_repros_that_reproduce(tmp_path: Path) -> None:
    dropped = run_cell(Cell("avgpool", "avgpool(k=3,divisor=2)", 8, 8, "onnx-legacy", 17, "onnxruntime"), str(tmp_path))
    assert dropped.outcome == "value-mismatch" and dropped.blame == "exporter"
    assert dropped.votes == {
        "reference": "agrees with onnxruntime, not PyTorch",
        "onnxruntime-unoptimised": "agrees with onnxruntime, not PyTorch",
    }
    refused = run_cell(Cell("adaptive", "adaptivemaxpool(5)", 8, 8, "onnx-legacy", 17, "onnxruntime"), str(tmp_path))
    assert refused.outcome == "export-failed" and refused.blame == "exporter"
    assert not (Path(refused.bundle) / "model.onnx").exists()
    repro = (Path(dropped.bundle) / "repro.py").read_text()
    imports = {ln.split()[1] for ln in repro.splitlines() if ln.startswith(("import ", "from "))}
    assert imports == {"pathlib", "sys", "onnx", "onnxruntime", "torch"}
    out = _repro(Path(dropped.bundle))
    assert out.returncode == 1 and "REPRODUCED: output 0: max abs difference" in out.stderr
    out = _repro(Path(refused.bundle))
    assert out.returncode == 1 and "REPRODUCED: export fails: " in out.stderr and "adaptive_max_pool2d" in out.stderr


def _repro(bundle: Path) -> subprocess.CompletedProcess[str]:
    """Run a bundle's repro.py on its own: another folder, no poolkit on the path."""
    return subprocess.run(
        [sys.executable, "-I", str(bundle / "repro.py")], cwd=bundle.parent, capture_output=True, text=True, timeout=300
    )


def test_indices_are_compared_bit_exactly_with_a_maxunpool_round_trip() -> None:
    values = np.array([[[5.0, 7.0]]], dtype=np.float32)
    indices = np.array([[[0, 3]]], dtype=np.int64)
    assert exact_integer_problems([values, indices], [values, indices.copy()]) is None
    moved = np.array([[[1, 3]]], dtype=np.int64)
    assert exact_integer_problems([values, indices], [values, moved]) == (
        "output 1 (indices): 1 of 2 differ (compared bit-exactly); MaxUnpool round trip: 2 unpooled elements differ"
    )
    assert exact_integer_problems([values, indices], [values, indices.astype(np.int32)]) == (
        "output 1: dtype int32, PyTorch gives int64"
    )


@pytest.mark.parametrize(
    ("ref", "plain", "label"),
    [
        ("torch", "actual", "runtime"),  # the reference agrees with PyTorch
        ("actual", "actual", "exporter"),  # the reference agrees with ONNX Runtime
        ("actual", "torch", "optimiser"),  # only optimised ONNX Runtime differs
        ("other", "actual", "unclear"),  # three answers
        (None, "actual", "unclear"),  # the reference fails
    ],
)
def test_blame_labels_follow_the_votes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ref, plain, label) -> None:
    torch_out, actual, other = [np.ones(3, np.float32)], [np.zeros(3, np.float32)], [np.full(3, 2, np.float32)]
    pick = {"torch": torch_out, "actual": actual, "other": other}

    def reference(path: Path, x: np.ndarray) -> list[np.ndarray]:
        if ref is None:
            raise RuntimeError("Pool: not implemented")
        return pick[ref]

    monkeypatch.setattr(sweep_blame, "run_reference", reference)
    monkeypatch.setattr(sweep_blame, "run_ort", lambda path, device, x, optimise: pick[plain])
    (tmp_path / "m.onnx").write_bytes(b"")
    got, votes = blame_cell(tmp_path / "m.onnx", "cpu", np.zeros(1), torch_out, actual, "value-mismatch")
    assert got == label
    if ref is None:
        assert votes["reference"] == "failed: RuntimeError: Pool: not implemented"


def test_a_cuda_vote_refuses_a_cpu_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Blame opens its sessions through create_session: when CUDA cannot load, ONNX Runtime quietly
    runs on the CPU provider; the unoptimised vote must then fail, never agree on the CPU's behalf."""
    import onnxruntime as ort

    from poolkit.common.errors import DeviceError
    from poolkit.runtimes import onnxruntime as ort_backend
    from poolkit.runtimes import ort_session

    path = ort_backend.write_identity_model(tmp_path / "m.onnx", (1, 2, 2))
    real_session = ort.InferenceSession
    asked: list[list[str]] = []

    class FallsBackToCpu:  # what ONNX Runtime does when the CUDA provider's libraries do not load
        def __init__(self, model: str, sess_options: object = None, providers: list[str] | None = None) -> None:
            asked.append(list(providers or []))
            self._session = real_session(model, sess_options=sess_options, providers=["CPUExecutionProvider"])

        def __getattr__(self, name: str) -> object:
            return getattr(self._session, name)

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FallsBackToCpu)
    monkeypatch.setattr(ort_session, "preload_cuda_libraries", lambda: None)
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    refused = "CUDAExecutionProvider did not load, the session would run on CPUExecutionProvider only"
    with pytest.raises(DeviceError, match=refused):
        sweep_blame.run_ort(path, "cuda", x, optimise=False)
    label, votes = blame_cell(path, "cuda", x, [x], [x + 1], "value-mismatch")
    assert asked[0] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert votes["onnxruntime-unoptimised"].startswith("failed: ") and refused in votes["onnxruntime-unoptimised"]
    assert votes["reference"] == "agrees with PyTorch" and label == "runtime"  # the CPU-only vote was not counted


def test_newest_opset_is_measured_per_exporter(tmp_path: Path) -> None:
    import onnx

    found = newest_opsets(("onnx-legacy",), 17)["onnx-legacy"]
    assert 17 < found <= onnx.defs.onnx_opset_version()
    assert probe_opset("legacy", found, tmp_path)
    if found < onnx.defs.onnx_opset_version():
        assert not probe_opset("legacy", found + 1, tmp_path)


def test_columns_say_which_opset_ran_and_failures_are_grouped_by_blame() -> None:
    cell = Cell("avgpool", "avgpool(k=3)", 8, 8, "onnx-dynamo", 17, "onnxruntime")
    converted = CellResult(cell, "ok", opset_used=18)
    assert column_labels([converted]) == {"dynamo-17 ort-cpu": "dynamo-17→18 ort-cpu"}
    failing = CellResult(
        Cell("avgpool", "avgpool(k=3,divisor=2)", 8, 8, "onnx-dynamo", 17, "onnxruntime"),
        "value-mismatch",
        "output 0: 36 of 36 elements differ",
        1.5,
        opset_used=18,
        blame="exporter",
        bundle="conformance-bundles/avgpool-x",
    )
    md = markdown([converted, failing], {"torch": "2"})
    assert "| layer | input | dynamo-17→18 ort-cpu |" in md and "0 unclear" in md and "1 exporter" in md
    assert "| `avgpool(k=3)` | 8x8 | ok (opset 18) |" in md
    assert "### exporter (1)" in md and "bundle `conformance-bundles/avgpool-x`" in md
    assert "**value-mismatch** (1.5e+00) [exporter]" in md and "one vote, not ground truth" in md


# ---------------------------------------------------------------- journal


def test_a_cut_off_last_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    cells = [Cell("activation", s, 8, 8, "torchscript-script", None, "torchscript") for s in ("relu", "tanh")]
    journal.append(CellResult(cells[0], "ok"))
    with open(journal.path, "a") as fh:
        fh.write('{"cell": {"group": "activation", "sp')  # killed mid-write
    journal.append(CellResult(cells[1], "ok"))
    assert set(journal.read()) == {cells[0].id, cells[1].id} and journal.skipped == 1
    with open(journal.path, "a") as fh:
        fh.write('[1, 2]\n"text"\n{"cell": {"group": 3}, "outcome": "ok"}\n\xff\xfe not json\n')
    assert len(journal.read()) == 2 and journal.skipped == 5


def test_interrupted_workers_are_not_journaled_and_resume_reruns_them(tmp_path: Path) -> None:
    cells = [Cell("activation", s, 8, 8, "torchscript-script", None, "torchscript") for s in ("relu", "tanh", "elu")]
    journal = Journal(tmp_path / "j.jsonl")
    results, _ = run_sweep(cells, journal, jobs=2, timeout_s=60, cell_fn=interrupt_or_pass)
    assert [(r.cell.spec, r.outcome) for r in results] == [("relu", "ok"), ("elu", "ok")]  # tanh: Ctrl-C
    assert cells[1].id not in journal.read()
    # A journal from before this fix stored Ctrl-C as a crash: that is not a measurement either.
    journal.append(CellResult(cells[1], "crashed", "worker died (exit code -2)"))
    journal.append(CellResult(cells[0], "crashed", "worker died (exit code 3)"))  # a real crash stays
    results, resumed = run_sweep(cells, journal, jobs=1, timeout_s=60, cell_fn=must_not_run)
    assert resumed == 2 and results[1].reason == "this cell was run again instead of resumed"
    assert results[0].reason == "worker died (exit code 3)"


def test_an_unreadable_journal_is_one_line_error(tmp_path: Path) -> None:
    stem = tmp_path / "conformance"
    Path(f"{stem}.jsonl").mkdir()
    result = runner.invoke(
        app, ["sweep", "--layer", "activation", "--exporters", "torchscript-trace", "--out", str(stem)]
    )
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot read the sweep journal ")
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_cli_sweep_writes_bundles_and_json_records_blame_and_opset(tmp_path: Path) -> None:
    stem = tmp_path / "c"
    args = ["sweep", "--layer", "avgpool", "--exporters", "onnx-legacy", "--opsets", "17", "--input-size", "8x8"]
    result = runner.invoke(app, [*args, "--out", str(stem), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(Path(f"{stem}.json").read_text())
    failed = [c for c in data["cells"] if c["outcome"] not in ("ok", "invalid")]
    assert failed and all(c["blame"] and c["bundle"] for c in failed)
    assert all(c["opset_used"] == 17 for c in data["cells"] if c["outcome"] != "invalid")
    assert {c["cell"]["spec"] for c in failed} >= {"avgpool(k=3,divisor=2)"}
    assert all((stem.parent / c["bundle"] / "repro.py").exists() for c in failed)
    assert data["blame"]["exporter"] >= 1 and "## Failures by blame" in Path(f"{stem}.md").read_text()
