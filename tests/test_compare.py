"""The comparator: every metric is a field, the verdict is bool(), NaN never passes."""

from __future__ import annotations

import math

import numpy as np

from poolkit.services.comparator import Accumulator, compare


def test_identical_outputs_pass() -> None:
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    c = compare(x, x.copy())
    assert c and c.max_abs == 0 and c.mismatched == 0 and c.cosine == 1.0 and c.elements == 12


def test_worst_element_location_and_values() -> None:
    e = np.zeros((2, 3, 4, 4), dtype=np.float32)
    a = e.copy()
    a[1, 2, 3, 0] = 0.5
    c = compare(e, a, atol=1e-5, rtol=1e-5)
    assert not c
    assert (c.max_abs, c.mismatched, c.worst_location) == (0.5, 1, [1, 2, 3, 0])
    assert (c.worst_expected, c.worst_actual) == (0.0, 0.5)
    assert math.isclose(c.mean_abs, 0.5 / 96)


def test_tolerance_is_allclose() -> None:
    e = np.array([[1.0, 100.0]], dtype=np.float32)
    assert compare(e, e + np.float32(1.5e-5), atol=1e-5, rtol=1e-5)  # 1.5e-5 <= 1e-5 + 1e-5 * 1
    assert not compare(e, e + np.float32([[3e-5, 0]]), atol=1e-5, rtol=1e-5)


def test_nan_never_passes() -> None:
    e = np.ones((1, 4), dtype=np.float32)
    a = e.copy()
    a[0, 2] = np.nan
    c = compare(e, a, atol=1.0, rtol=1.0)
    assert not c and c.nan_actual == 1 and c.mismatched == 1 and c.worst_location == [0, 2]
    both = compare(a, a.copy())
    assert not both and both.nan_expected == 1 and both.nan_actual == 1


def test_matching_infinities_pass_others_fail() -> None:
    e = np.array([[-np.inf, 0.0]], dtype=np.float32)
    assert compare(e, e.copy())
    c = compare(e, np.array([[np.inf, 0.0]], dtype=np.float32))
    assert not c and c.inf_actual == 1


def test_shape_mismatch_fails() -> None:
    c = compare(np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 3, 3)))
    assert not c and c.shape_mismatch


def test_batches_fold_into_one_result_with_global_image_index() -> None:
    acc = Accumulator(1e-5, 1e-5)
    e = np.zeros((4, 10), dtype=np.float32)
    e[:, 3] = 1.0
    a = e.copy()
    assert acc.add(e, a, first_image=0)
    a2 = e.copy()
    a2[1, 3], a2[1, 7] = 0.0, 2.0  # image 5 now predicts class 7
    assert not acc.add(e, a2, first_image=4)
    r = acc.result
    assert r.worst_location == [5, 7] and r.max_abs == 2.0 and r.elements == 80
    assert r.top1_agreement == 7 / 8
