"""Autocast variants (export --precision bf16-autocast): the fp32 model under torch.autocast, captured or failed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from poolkit.common.errors import PoolkitError
from poolkit.common.files import sha256_file
from poolkit.exporter.autocast import check_captured
from poolkit.exporter.export import export_models
from poolkit.exporter.formats.torchscript import export_torchscript
from poolkit.exporter.layers import autocast_variant
from poolkit.exporter.manifest import load_manifest, save_manifest
from poolkit.exporter.options import ExportOptions
from poolkit.exporter.precision import parse_precisions, variant_problem
from poolkit.exporter.zoo import resolve_models
from poolkit.services.artifacts import open_artifacts
from poolkit.services.cifar10 import load_images
from poolkit.verify.variants import verify_precisions


def test_autocast_names_and_the_formats_that_take_it() -> None:
    assert parse_precisions(["autocast", "fp16-autocast", "autocast-bf16"]) == ("bf16-autocast", "fp16-autocast")
    assert variant_problem("torchscript", "bf16-autocast") is None and variant_problem("aoti", "fp16-autocast") is None
    assert (variant_problem("onnx", "bf16-autocast") or "").endswith(
        "torch-side formats only (torchscript, pt2, aoti); for onnx use --precision bf16"
    )


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()


def test_a_scripted_autocast_file_is_refused_with_torchs_reason(tmp_path: Path) -> None:
    module, x = autocast_variant(_conv(), "bfloat16"), torch.rand(2, 3, 8, 8)
    export_torchscript(module, x, tmp_path / "s.pt", "script")
    with pytest.raises(PoolkitError) as info:
        check_captured("torchscript", tmp_path / "s.pt", module, x, "bf16-autocast")
    assert str(info.value) == (
        "the torchscript file does not run under autocast: RuntimeError: Autocast device argument must be a constant"
        " (torch.jit.script keeps no CPU autocast: export it with --method trace)"
    )
    export_torchscript(module, x, tmp_path / "t.pt", "trace")
    assert check_captured("torchscript", tmp_path / "t.pt", module, x, "bf16-autocast") == 0.0
    export_torchscript(module.inner, x, tmp_path / "fp32.pt", "trace")  # autocast dropped: a float32 file
    with pytest.raises(PoolkitError, match=r"the torchscript file computes in float32: the exporter dropped"):
        check_captured("torchscript", tmp_path / "fp32.pt", module, x, "bf16-autocast")


@pytest.fixture(scope="module")
def autocast_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("autocast")
    options = ExportOptions(formats=("torchscript", "pt2"), precisions=("fp32", "bf16-autocast"))
    run = export_models(resolve_models(["tudui", "conv"]), out, options)
    assert not run.failed, [r.error for r in run.failed]
    return out


@pytest.mark.slow
def test_autocast_variants_are_recorded_and_judged_on_eager_under_autocast(autocast_dir: Path) -> None:
    records = {r.key: r for r in load_manifest(autocast_dir)}
    ts, pt2 = records[("tudui", "torchscript", "bf16-autocast")], records[("tudui", "pt2", "bf16-autocast")]
    assert (ts.path, ts.method, pt2.path, pt2.method) == (
        "tudui.bf16-autocast.torchscript.pt", "trace", "tudui.bf16-autocast.pt2", "export")  # fmt: skip
    assert records[("tudui", "torchscript")].method == "script"  # the fp32 file keeps its own method
    assert pt2.dynamic_dims == {"batch": "Dim [0, inf]"} and pt2.compile_seconds is None  # its own export's
    rows = {
        (m.name, r.format): r
        for m in open_artifacts(autocast_dir)
        for r in verify_precisions(m, load_images("cifar10"))
    }
    assert set(rows) == {("tudui", "torchscript"), ("tudui", "pt2"), ("conv", "torchscript"), ("conv", "pt2")}
    for row in rows.values():
        assert row.status == "passed" and row.reference == "eager under bfloat16 autocast", row.reason
        assert row.rms == row.budget_rms and row.max_abs == row.budget_max  # the same casts as eager: bit for bit
        assert row.rms is not None and row.fp32_rms is not None and row.rms > 50 * row.fp32_rms  # really bf16
        assert row.images == 512
    assert rows[("tudui", "pt2")].top1 == 1.0 and rows[("conv", "pt2")].top1 is None


@pytest.mark.slow
def test_a_file_that_runs_in_float32_fails_verify(autocast_dir: Path, tmp_path: Path) -> None:
    """The pt2 autocast record pointed at the fp32 file (re-hashed): verify says it ran in float32."""
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(autocast_dir, folder)
    records = load_manifest(folder)
    fp32 = next(r for r in records if r.key == ("conv", "pt2"))
    shutil.copyfile(folder / str(fp32.path), folder / "conv.bf16-autocast.pt2")
    records = [replace(r, sha256=sha256_file(folder / str(r.path))) if r.key == ("conv", "pt2", "bf16-autocast")
               else r for r in records]  # fmt: skip
    save_manifest(folder, records)
    (model,) = open_artifacts(folder, ["conv"])
    (row,) = [r for r in verify_precisions(model, load_images("cifar10")) if r.format == "pt2"]
    assert row.status == "failed" and "the file ran in float32, not bf16-autocast" in (row.reason or ""), row.reason


def test_bench_times_eager_and_each_file_against_its_own_fp32(autocast_dir: Path) -> None:
    """eager runs the module under autocast; TorchScript and pt2 their autocast files: each a row beside its fp32 row,
    outputs checked at bf16's rounding, its speed-up against its own runtime's fp32."""
    from poolkit.bench.measurement import BenchSettings
    from poolkit.bench.run import run_bench
    from poolkit.services.cifar10 import load_images

    settings = BenchSettings(
        runtimes=("eager", "torchscript", "export"),
        batch_sizes=(4,),
        warmup=1,
        iters=14,
        threads=1,
        in_process=True,
        precision=True,
    )
    report = run_bench(autocast_dir, ["conv"], settings, load_images("cifar10").images[:16])
    rows = {(m.runtime, m.precision): m for m in report.measurements}
    assert list(rows) == [(r, p) for r in ("eager", "torchscript", "export") for p in ("fp32", "bf16-autocast")]
    assert [rows[(r, "bf16-autocast")].artifact for r in ("eager", "torchscript", "export")] == [
        "module under bf16-autocast",
        "conv.bf16-autocast.torchscript.pt",
        "conv.bf16-autocast.pt2",
    ]
    for (runtime, precision), m in rows.items():
        assert (m.status, m.outputs_matched, m.outputs_checked) == ("ok", True, 2), (runtime, precision, m.reason)
        fp32 = rows[(runtime, "fp32")]
        if precision != "fp32":
            assert m.speedup_vs_fp32 == pytest.approx(fp32.latency_ms.p50 / m.latency_ms.p50)


def test_a_bf16_row_is_judged_by_eager_under_bf16_autocast_not_fp32() -> None:
    """A runtime that computes in bf16 (OpenVINO's default on a bf16 CPU) on ±16 inputs: honest bf16 passes
    against eager under bf16 autocast; judged by fp32 eager's error it would fail; a real defect still fails."""
    from poolkit.runtimes.base import precision_tolerance
    from poolkit.verify.precision import Fp64Reference, RoundingDecision, judge_batch

    module = _conv()
    x = (torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 32 - 16).numpy()
    with torch.inference_mode():
        expected = module(torch.from_numpy(x)).numpy()
        honest = autocast_variant(module, "bfloat16")(torch.from_numpy(x)).numpy()
    tol = precision_tolerance("bf16", 1e-5, 1e-5)
    assert tol == (2.0**-6, 2.0**-6)
    fp32_judged, own = RoundingDecision(), RoundingDecision()
    judge_batch(fp32_judged, Fp64Reference(module), "edge", 0, x, [expected], [honest], *tol)
    assert fp32_judged.elements > 0 and not fp32_judged.within  # fp32 eager's error is far too small a yardstick
    judge_batch(own, Fp64Reference(module), "edge", 0, x, [expected], [honest], *tol,
                own=Fp64Reference(module, "bf16"))  # fmt: skip
    assert own.within and own.reference == "bf16" and (own.images, own.elements, own.beyond) == (3, 3, 0)
    assert 0 < own.artifact_error <= own.eager_error  # the same casts as eager under autocast: within its error
    assert "eager under bf16 autocast by up to" in own.summary
    broken = RoundingDecision()
    judge_batch(broken, Fp64Reference(module), "edge", 0, x, [expected], [honest * np.float32(1.05)], *tol,
                own=Fp64Reference(module, "bf16"))  # fmt: skip
    assert not broken.within and broken.beyond > 0


def test_bench_checks_a_bf16_row_at_its_own_rounding() -> None:
    from poolkit.bench.outputs import OutputCheck

    expected = [[np.full((2, 3), 10.0, dtype=np.float32)]]
    assert OutputCheck(expected).differs(0, [expected[0][0] + 0.004], 13) is not None  # fp32's 1e-4
    assert OutputCheck(expected, "bf16").differs(0, [expected[0][0] + 0.004], 13) is None
    assert OutputCheck(expected, "bf16").differs(0, [expected[0][0] + 1.0], 13) is not None  # still wrong
