"""Compare an artifact's outputs with eager PyTorch's: every metric a field, the verdict `bool()`.

An element passes when |actual - expected| <= atol + rtol * |expected| (numpy's allclose).
NaN never passes, on either side. Infinities pass only where both sides have the same one.
Batches are folded into one `Comparison` with `Accumulator`, so the worst element is found over
the whole data set and its location names the image, not the position inside a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DEFAULT_ATOL = 1e-5  # Polygraphy's and Optimum's fp32 default
DEFAULT_RTOL = 1e-5


@dataclass
class Comparison:
    """One output of one artifact against eager, over every batch seen."""

    atol: float
    rtol: float
    shape_expected: list[int] = field(default_factory=list)  # per batch, the last one seen
    shape_actual: list[int] = field(default_factory=list)
    elements: int = 0
    mismatched: int = 0  # elements out of tolerance (NaN included)
    max_abs: float = 0.0
    max_rel: float = 0.0
    mean_abs: float = 0.0
    cosine: float = 1.0
    nan_expected: int = 0
    nan_actual: int = 0
    inf_expected: int = 0
    inf_actual: int = 0
    worst_location: list[int] = field(default_factory=list)  # (image, channel, y, x) or (image, class)
    worst_expected: float | None = None
    worst_actual: float | None = None
    top1_agreement: float | None = None  # classifier outputs (N, classes) only
    shape_mismatch: bool = False
    # Tolerance guidance: the smallest atol that passes at this rtol, the smallest rtol at this atol.
    min_atol: float = 0.0
    min_rtol: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.shape_mismatch and self.elements > 0 and self.mismatched == 0

    def __bool__(self) -> bool:
        return self.passed


class Accumulator:
    """Folds batch after batch into one Comparison."""

    def __init__(self, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> None:
        self.result = Comparison(atol=atol, rtol=rtol)
        self._sum_abs = 0.0
        self._dot = 0.0
        self._norm_e = 0.0
        self._norm_a = 0.0
        self._top1_same = 0
        self._top1_total = 0

    def add(self, expected: np.ndarray, actual: np.ndarray, first_image: int = 0) -> bool:
        """Compare one batch; returns whether this batch passed."""
        r = self.result
        r.shape_expected, r.shape_actual = list(expected.shape), list(actual.shape)
        if expected.shape != actual.shape:
            r.shape_mismatch = True
            return False
        if expected.size and np.isfinite(expected).all() and np.isfinite(actual).all():
            if np.array_equal(expected, actual):
                return self._add_equal(expected, actual, first_image)
            e64, a64 = expected.astype(np.float64, copy=False), actual.astype(np.float64, copy=False)
            return self._add_finite(expected, actual, e64, a64, first_image)
        e = expected.astype(np.float64, copy=False)
        a = actual.astype(np.float64, copy=False)
        nan_e, nan_a = np.isnan(e), np.isnan(a)
        inf_e, inf_a = np.isinf(e), np.isinf(a)
        r.nan_expected += int(nan_e.sum())
        r.nan_actual += int(nan_a.sum())
        r.inf_expected += int(inf_e.sum())
        r.inf_actual += int(inf_a.sum())

        with np.errstate(invalid="ignore"):
            diff = np.abs(a - e)
        same_inf = inf_e & inf_a & (e == a)
        diff = np.where(same_inf, 0.0, diff)
        diff = np.where(nan_e | nan_a, np.inf, diff)  # NaN never passes and always ranks worst
        diff = np.where((inf_e | inf_a) & ~same_inf, np.inf, diff)
        finite_e = np.where(np.isfinite(e), np.abs(e), 0.0)
        bad = diff > r.atol + r.rtol * finite_e
        r.mismatched += int(bad.sum())
        r.elements += int(e.size)

        if e.size:
            self._note_worst(diff, expected, actual, first_image)
            finite = np.isfinite(diff)
            rel = diff[finite] / (finite_e[finite] + 1e-12)
            if rel.size:
                r.max_rel = max(r.max_rel, float(rel.max()))
            if not finite.all():
                r.max_rel = math.inf
            slack = diff - r.rtol * finite_e  # what atol must cover at this rtol
            r.min_atol = max(r.min_atol, float(slack.max()))
            over = diff > r.atol
            if over.any():
                with np.errstate(divide="ignore", invalid="ignore"):
                    need = np.where(finite_e[over] > 0, (diff[over] - r.atol) / finite_e[over], np.inf)
                r.min_rtol = max(r.min_rtol, float(need.max()))
            self._sum_abs += float(diff[finite].sum())
            ok = np.isfinite(e) & np.isfinite(a)
            self._dot += float((e[ok] * a[ok]).sum())
            self._norm_e += float((e[ok] ** 2).sum())
            self._norm_a += float((a[ok] ** 2).sum())
            r.mean_abs = self._sum_abs / r.elements if r.max_abs != math.inf else math.inf
            denominator = math.sqrt(self._norm_e) * math.sqrt(self._norm_a)
            r.cosine = self._dot / denominator if denominator else (1.0 if self._norm_e == self._norm_a else 0.0)
        self._top1(expected, actual)
        return not bad.any()

    def _note_worst(self, diff: np.ndarray, expected: np.ndarray, actual: np.ndarray, first_image: int) -> float:
        """Keep the batch's worst element when it beats the data set's so far; returns the batch's worst.

        Its location names the image in the whole data set, not its position in the batch."""
        r = self.result
        flat = int(np.argmax(diff))
        worst = float(diff.flat[flat])
        if worst > r.max_abs or r.worst_expected is None:
            idx = list(np.unravel_index(flat, diff.shape))
            idx[0] += first_image
            r.max_abs = worst
            r.worst_location = [int(i) for i in idx]
            r.worst_expected, r.worst_actual = float(expected.flat[flat]), float(actual.flat[flat])
        return worst

    def _add_equal(self, expected: np.ndarray, actual: np.ndarray, first_image: int) -> bool:
        """Bit-equal outputs (most TorchScript rows, every pooling): the figures without a diff pass."""
        r = self.result
        r.elements += int(expected.size)
        if r.worst_expected is None:  # the worst of all-equal elements is the first, as argmax says
            r.worst_location = [first_image] + [0] * (expected.ndim - 1)
            r.worst_expected = r.worst_actual = float(expected.flat[0])
        flat = expected.reshape(-1)
        square = float(np.einsum("i,i->", flat, flat, dtype=np.float64))
        self._dot += square
        self._norm_e += square
        self._norm_a += square
        r.mean_abs = self._sum_abs / r.elements if r.max_abs != math.inf else math.inf
        denominator = math.sqrt(self._norm_e) * math.sqrt(self._norm_a)
        r.cosine = self._dot / denominator if denominator else (1.0 if self._norm_e == self._norm_a else 0.0)
        self._top1(expected, actual)
        return True

    def _add_finite(
        self, expected: np.ndarray, actual: np.ndarray, e: np.ndarray, a: np.ndarray, first_image: int
    ) -> bool:
        """The usual case, no NaN or infinity on either side: the same figures in a few vectorised passes."""
        r = self.result
        diff = np.abs(a - e)
        abs_e = np.abs(e)
        bad = diff > r.atol + r.rtol * abs_e
        n_bad = int(np.count_nonzero(bad))
        r.mismatched += n_bad
        r.elements += int(e.size)
        worst = self._note_worst(diff, expected, actual, first_image)
        if worst > 0:
            r.max_rel = max(r.max_rel, float((diff / (abs_e + 1e-12)).max()))
        r.min_atol = max(r.min_atol, float((diff - r.rtol * abs_e).max()))  # the atol this rtol needs
        if worst > r.atol:
            over = diff > r.atol
            with np.errstate(divide="ignore", invalid="ignore"):
                need = np.where(abs_e[over] > 0, (diff[over] - r.atol) / abs_e[over], np.inf)
            r.min_rtol = max(r.min_rtol, float(need.max()))
        ef, af = e.ravel(), a.ravel()
        self._sum_abs += float(diff.sum())
        # einsum, not np.dot: BLAS threads spin against torch's on a busy CPU (10 ms instead of 0.3 ms)
        self._dot += float(np.einsum("i,i->", ef, af))
        self._norm_e += float(np.einsum("i,i->", ef, ef))
        self._norm_a += float(np.einsum("i,i->", af, af))
        r.mean_abs = self._sum_abs / r.elements if r.max_abs != math.inf else math.inf
        denominator = math.sqrt(self._norm_e) * math.sqrt(self._norm_a)
        r.cosine = self._dot / denominator if denominator else (1.0 if self._norm_e == self._norm_a else 0.0)
        self._top1(expected, actual)
        return n_bad == 0

    def _top1(self, expected: np.ndarray, actual: np.ndarray) -> None:
        r = self.result
        e = expected
        if e.ndim == 2 and e.shape[1] > 1:
            self._top1_same += int((np.argmax(expected, axis=1) == np.argmax(actual, axis=1)).sum())
            self._top1_total += e.shape[0]
            r.top1_agreement = self._top1_same / self._top1_total


def compare(
    expected: np.ndarray, actual: np.ndarray, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL
) -> Comparison:
    """Compare one pair of arrays; `if not compare(...)` reads as 'they differ'."""
    acc = Accumulator(atol, rtol)
    acc.add(expected, actual)
    return acc.result


def fold_batch(
    expected: list[np.ndarray], actual: list[np.ndarray], accumulators: list[Accumulator], first_image: int = 0
) -> str | None:
    """Fold one batch of every output into its accumulator.

    Returns why the outputs cannot be compared at all (a different number of outputs), else None;
    shapes and values are judged by each output's Comparison. Verify and sweep both go through here.
    """
    if len(actual) != len(expected):
        return f"{len(actual)} outputs, eager gives {len(expected)}"
    while len(accumulators) < len(expected):
        accumulators.append(Accumulator(accumulators[0].result.atol, accumulators[0].result.rtol))
    for acc, e, a in zip(accumulators, expected, actual, strict=True):
        acc.add(e, a, first_image)
    return None


def mismatch_reason(comparisons: list[Comparison]) -> tuple[str, str]:
    """(kind, one line) for outputs that did not pass: `shape` or `value`, naming the first bad output."""
    for i, c in enumerate(comparisons):
        if c.shape_mismatch:
            return "shape", f"output {i}: {tuple(c.shape_actual)}, eager gives {tuple(c.shape_expected)}"
    for i, c in enumerate(comparisons):
        if not c:
            where = ",".join(map(str, c.worst_location))
            return "value", (
                f"output {i}: {c.mismatched:,} of {c.elements:,} elements differ; worst at ({where}): "
                f"eager {c.worst_expected:.6g}, artifact {c.worst_actual:.6g}"
            )
    return "value", "no element was compared"
