"""The fp64 decision: a strict mismatch that is fp32 rounding passes, with its figures; a real defect fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from poolkit.runtimes.registry import open_runtime
from poolkit.services.cifar10 import load_cifar10
from poolkit.verify import VerifyOptions, verify
from poolkit.verify.precision import ROUNDING_MARGIN, Fp64Reference, RoundingDecision, judge_batch
from poolkit.verify.report import VerifyRow
from poolkit.verify.rows import OpenRow, conclude_row, fold_row
from tests.test_verify import tampered_copy

ATOL = RTOL = 1e-5


class AddSub(nn.Module):
    """(x + 1e4) - 1e4: exact in fp64, rounded to fp32's grid at 1e4 (2**-10) in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1e4) - 1e4


# 0.25 + 2**-12 rounds to 0.25 and 0.75 + 2**-11 (a tie) to 0.75 on that grid; 0.5 and 1.0 are exact.
X = np.array([0.25 + 2**-12, 0.5, 0.75 + 2**-11, 1.0], dtype=np.float32).reshape(1, 1, 2, 2)


def judged(actual: np.ndarray) -> RoundingDecision:
    module = AddSub()
    expected = module(torch.from_numpy(X)).numpy()
    np.testing.assert_array_equal(expected.ravel(), [0.25, 0.5, 0.75, 1.0])
    decision = RoundingDecision()
    judge_batch(decision, Fp64Reference(module), "raw", 0, X, [expected], [actual], ATOL, RTOL)
    return decision


def test_a_rounding_only_mismatch_is_within_fp32_rounding() -> None:
    """An artifact that computes the exact answer differs from fp32 eager by eager's own rounding."""
    d = judged(X.copy())
    assert (d.images, d.elements, d.beyond) == (1, 2, 0) and d.within
    assert d.eager_error == 2**-11 and d.artifact_error == 0.0
    assert d.summary == (
        "against fp64 eager the artifact is off by up to 0, fp32 eager by up to 0.00049 on the same 1 image; "
        "allowed 2x that (0.00098)"
    )


def test_a_real_defect_is_beyond_fp32_rounding() -> None:
    d = judged((X * np.float32(1.01)).astype(np.float32))
    assert (d.images, d.elements, d.beyond) == (1, 4, 4) and not d.within
    assert d.eager_error == 2**-11 and d.artifact_error == pytest.approx(0.01, rel=1e-5)
    assert d.summary.endswith("; 4 of 4 mismatched elements beyond")


@pytest.mark.parametrize(("factor", "within"), [(1.9, True), (2.1, False)])
def test_the_margin_is_twice_fp32_eagers_own_error(factor: float, within: bool) -> None:
    """Off the exact answer by 1.9x eager's worst error passes; by 2.1x fails."""
    assert ROUNDING_MARGIN == 2
    actual = X.astype(np.float64).copy()
    actual[0, 0, 0, 0] += factor * 2**-11  # the exact answer is X itself
    d = judged(actual.astype(np.float32))
    assert d.within is within and d.artifact_error == pytest.approx(factor * 2**-11, rel=1e-4)


def test_indices_and_nan_are_never_rounding() -> None:
    d = RoundingDecision()
    idx = np.array([[0, 1]])

    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, torch.zeros(1, 2, dtype=torch.int64)

    judge_batch(d, Fp64Reference(Pair()), "raw", 0, X, [X, idx], [X, idx[:, ::-1].copy()], ATOL, RTOL)
    assert (d.elements, d.beyond) == (2, 2)
    nan = X.copy()
    nan[0, 0, 0, 1] = np.nan
    d = judged(nan)
    assert d.beyond == 1 and d.artifact_error == float("inf")


def test_a_row_decided_within_rounding_passes_and_says_so() -> None:
    """Through the row machinery: strict mismatches, all within rounding -> passed (within fp32 rounding)."""
    row = VerifyRow("addsub", "module", "eager", "cpu", "user", "failed")
    with open_runtime("eager", nn.Identity(), "cpu") as artifact:  # the exact answer, computed another way
        item = OpenRow(row, artifact, None, (1, 2, 2), True, fp64=Fp64Reference(AddSub()))
        expected = [AddSub()(torch.from_numpy(X)).numpy()]
        fold_row(item, "raw", 0, X, expected, VerifyOptions())
    conclude_row(item, None, VerifyOptions())  # type: ignore[arg-type] - a passing row never opens the model
    assert row.status == "passed" and row.verdict == "passed (within fp32 rounding)"
    assert row.outputs[0].mismatched == 2 and row.rounding is not None and row.rounding.eager_error == 2**-11


def test_a_one_percent_conv_weight_change_fails_beyond_rounding(zoo_dir: Path, tmp_path: Path) -> None:
    models = tampered_copy(zoo_dir, tmp_path / "models", "tudui", "conv1.weight", lambda w: w.__imul__(1.01))
    report = verify(models, load_cifar10(), VerifyOptions(batches=1, sensitivity=False, results_dir=tmp_path))
    rows = {r.format: r for r in report.rows}
    assert rows["torchscript"].passed and rows["torchscript"].verdict == "passed"
    bad = rows["onnx"]
    assert bad.status == "failed" and bad.rounding is not None and bad.rounding.beyond > 0
    assert "; beyond fp32 rounding: against fp64 eager the artifact is off by up to" in (bad.reason or "")
    assert bad.rounding.artifact_error > 100 * bad.rounding.eager_error  # orders beyond, not a near miss
