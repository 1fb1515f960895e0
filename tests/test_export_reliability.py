"""Nothing lost: interrupts, failed and partial re-exports, concurrent writers, cached artifacts, file modes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from poolkit.common.errors import PoolkitError
from poolkit.common.files import write_text_atomic
from poolkit.exporter.ensure import ensure_exported
from poolkit.exporter.export import ExportOptions, export_models
from poolkit.exporter.formats import onnx as onnx_format
from poolkit.exporter.manifest import ExportRecord, load_manifest, update_manifest
from poolkit.exporter.zoo import resolve_models
from poolkit.services.artifacts import open_artifacts

from .helpers import records_by_key


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".manifest.lock"}


@pytest.fixture
def relu_dir(tmp_path: Path) -> Path:
    """relu exported in both formats (dynamo ONNX), a few seconds."""
    out = tmp_path / "models"
    run = export_models(resolve_models(["relu"]), out, ExportOptions())
    assert not run.failed and not run.cached
    return out


def test_second_export_is_cached_and_rewrites_nothing(relu_dir: Path) -> None:
    before = snapshot(relu_dir)
    mtimes = {p.name: p.stat().st_mtime_ns for p in relu_dir.iterdir()}
    run = export_models(resolve_models(["relu"]), relu_dir, ExportOptions())
    assert [(r.format, r.cached, r.ok) for r in run.records] == [
        ("torchscript", True, True),
        ("onnx", True, True),
        ("pt2", True, True),
    ]
    assert snapshot(relu_dir) == before
    assert {p.name: p.stat().st_mtime_ns for p in relu_dir.iterdir() if p.name != ".manifest.lock"} == {
        k: v for k, v in mtimes.items() if k != ".manifest.lock"
    }
    assert "cached" not in (relu_dir / "manifest.json").read_text()  # a run's view, never stored
    # a changed option (seed) is not current: exported again
    run = export_models(resolve_models(["relu"]), relu_dir, ExportOptions(formats=("torchscript",), seed=1))
    assert [(r.cached, r.seed) for r in run.records] == [(False, 1)]
    # --force exports a current artifact again
    run = export_models(resolve_models(["relu"]), relu_dir, ExportOptions(formats=("torchscript",), seed=1, force=True))
    assert [r.cached for r in run.records] == [False]


def test_a_changed_file_is_not_cached(relu_dir: Path) -> None:
    (relu_dir / "relu.onnx").write_bytes(b"tampered")
    run = export_models(resolve_models(["relu"]), relu_dir, ExportOptions())
    assert {r.format: r.cached for r in run.records} == {"torchscript": True, "onnx": False, "pt2": True}
    assert open_artifacts(relu_dir, ["relu"])[0].problem("onnxruntime") is None


def test_reexporting_one_format_keeps_the_other_record_true(tmp_path: Path) -> None:
    out = tmp_path / "models"
    export_models(resolve_models(["conv"]), out, ExportOptions())
    weights_before = (out / "conv.weights.pt").read_bytes()
    run = export_models(resolve_models(["conv"]), out, ExportOptions(formats=("onnx",), force=True))
    assert [(r.format, r.cached, r.ok) for r in run.records] == [("onnx", False, True)]
    assert (out / "conv.weights.pt").read_bytes() == weights_before  # equal weights are not rewritten
    (model,) = open_artifacts(out, ["conv"])
    assert model.problem("torchscript") is None and model.problem("onnxruntime") is None
    assert (
        records_by_key(out)[("conv", "torchscript")].weights_sha256
        == records_by_key(out)[("conv", "onnx")].weights_sha256
    )


def test_a_failed_reexport_keeps_the_previous_good_file_and_record(
    relu_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(relu_dir)
    good = records_by_key(relu_dir)[("relu", "onnx")]

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_format, "export_onnx", broken)
    run = export_models(resolve_models(["relu"]), relu_dir, ExportOptions(formats=("onnx",), force=True))
    (failed,) = run.failed
    assert failed.error == "RuntimeError: exporter exploded"
    assert snapshot(relu_dir) == before  # the .onnx, the weights and the manifest are untouched
    assert records_by_key(relu_dir)[("relu", "onnx")] == good
    assert not [p for p in relu_dir.iterdir() if "staged" in p.name or p.suffix == ".tmp"]


def test_an_interrupted_reexport_leaves_everything_in_place(relu_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(relu_dir)
    real = onnx_format.export_onnx

    def interrupted(model, example, path, **kwargs):  # type: ignore[no-untyped-def]
        real(model, example, path, **kwargs)  # the staged file is complete...
        raise KeyboardInterrupt  # ...and Ctrl-C arrives before it is renamed into place

    monkeypatch.setattr(onnx_format, "export_onnx", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_models(resolve_models(["relu"]), relu_dir, ExportOptions(force=True, seed=5))
    assert snapshot(relu_dir) == before
    assert not [p for p in relu_dir.iterdir() if "staged" in p.name or p.suffix == ".tmp"]
    (model,) = open_artifacts(relu_dir, ["relu"])
    assert model.problem("torchscript") is None and model.problem("onnxruntime") is None


def test_an_opset_the_exporter_does_not_write_is_a_failed_row(relu_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = onnx_format.export_onnx
    monkeypatch.setattr(onnx_format, "export_onnx", lambda *a, **kw: real(*a, **{**kw, "opset": None}))
    run = export_models(resolve_models(["relu"]), relu_dir, ExportOptions(formats=("onnx",), opset=17))
    (failed,) = run.failed
    assert failed.error is not None and "--opset 17 asked for, but the dynamo exporter wrote opset" in failed.error
    assert records_by_key(relu_dir)[("relu", "onnx")].opset_requested is None  # the good record stays


def test_an_opset_onnx_does_not_know_is_refused_before_export(tmp_path: Path) -> None:
    with pytest.raises(PoolkitError, match=r"--opset 999: onnx .* writes opsets 7 to \d+"):
        export_models(resolve_models(["relu"]), tmp_path, ExportOptions(opset=999))
    assert not (tmp_path / "manifest.json").exists()


def test_concurrent_manifest_updates_all_land(tmp_path: Path) -> None:
    """Forty writers at once through the locked read-modify-write: none is lost."""

    def record(i: int) -> ExportRecord:
        return ExportRecord(f"m{i}", "relu", "onnx", "dynamo", "failed", ["batch", 3, 32, 32], error="x")

    threads = [threading.Thread(target=update_manifest, args=(tmp_path, [record(i)])) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.name for r in load_manifest(tmp_path)) == sorted(f"m{i}" for i in range(40))


def test_two_export_processes_into_one_folder_both_land(tmp_path: Path) -> None:
    out = tmp_path / "models"
    groups = (["relu", "sigmoid", "tanh"], ["conv", "maxpool_ceil", "maxpool_floor"])
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from poolkit.cli import app; app()",
                "export",
                "-f",
                "torchscript",
                "--out",
                str(out),
                "--json",
            ]
            + [a for m in names for a in ("-m", m)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for names in groups
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    assert sorted(r.name for r in load_manifest(out)) == sorted(groups[0] + groups[1])
    for model in open_artifacts(out):
        assert model.problem("torchscript") is None


def test_failed_models_are_not_exported_again_by_ensure_exported(relu_dir: Path) -> None:
    records = load_manifest(relu_dir)
    onnx = next(r for r in records if r.format == "onnx")
    onnx.status, onnx.error, onnx.path, onnx.sha256 = "failed", "RuntimeError: no", None, None
    from poolkit.exporter.manifest import save_manifest

    save_manifest(relu_dir, records)
    assert ensure_exported(resolve_models(["relu"]), relu_dir) == []
    (model,) = open_artifacts(relu_dir, ["relu"])
    assert model.problem("onnxruntime") == "export failed: RuntimeError: no"  # said, never run from another file


def test_files_get_the_users_umask_not_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "report.json", "{}")
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        assert write_text_atomic(tmp_path / "other.json", "{}").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_new_weights_mark_the_other_format_stale_not_silently_broken(tmp_path: Path) -> None:
    """Another seed writes other weights: the TorchScript file still holds the old ones, and says so."""
    export_models(resolve_models(["conv"]), tmp_path, ExportOptions())
    run = export_models(resolve_models(["conv"]), tmp_path, ExportOptions(formats=("onnx",), seed=5))
    assert [(r.format, r.ok) for r in run.records] == [("onnx", True)]
    records = records_by_key(tmp_path)
    stale = records[("conv", "torchscript")]
    assert stale.status == "failed" and stale.error is not None
    assert stale.error.startswith("stale: a later export of onnx replaced the weights this torchscript file")
    (model,) = open_artifacts(tmp_path, ["conv"])
    assert model.problem("torchscript") == f"export failed: {stale.error}"
    assert model.problem("onnxruntime") is None


def test_ensure_exported_never_replaces_what_the_user_exported(tmp_path: Path) -> None:
    """bench/show export only models with no record: a static-batch ONNX-only export stays as it is."""
    export_models(resolve_models(["relu"]), tmp_path, ExportOptions(formats=("onnx",), dynamic_batch=False))
    before = snapshot(tmp_path)
    assert ensure_exported(resolve_models(["relu"]), tmp_path) == []
    assert snapshot(tmp_path) == before
    assert records_by_key(tmp_path)[("relu", "onnx")].input_shape[0] == 64
