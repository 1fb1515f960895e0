"""One row while it is measured (`OpenRow`): fold each batch in, then conclude its verdict.

A row stops at the first batch it cannot run or whose outputs cannot be compared at all; a batch
size or image size its file cannot take is skipped and said why, never counted as compared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poolkit.common.errors import one_line
from poolkit.runtimes.base import Runtime, precision_tolerance, run_batch
from poolkit.services.artifacts import ModelArtifacts
from poolkit.services.comparator import Accumulator, fold_batch, mismatch_reason
from poolkit.verify.failure import first_diverging_layer, save_failure
from poolkit.verify.heatmap import write_heatmaps
from poolkit.verify.precision import Fp64Reference, RoundingDecision, judge_batch
from poolkit.verify.report import InputRun, VerifyOptions, VerifyRow


@dataclass
class OpenRow:
    """A row being measured: its open runtime, an accumulator list per input set, its first failing batch."""

    row: VerifyRow
    runtime: Runtime
    static_batch: int | None
    sample_shape: tuple[int, ...]
    any_size: bool
    runs: dict[str, InputRun] = field(default_factory=dict)
    accumulators: dict[str, list[Accumulator]] = field(default_factory=dict)
    first_failure: tuple[str, int, np.ndarray, list[np.ndarray], list[np.ndarray]] | None = None
    started: float = field(default_factory=time.perf_counter)
    stopped: bool = False
    fp64: Fp64Reference | None = None  # shared by the model's rows; None: no fp64 decision (several inputs)
    own: Fp64Reference | None = None  # a bf16 / fp16 row: eager under autocast in that precision, for E
    rounding: RoundingDecision = field(default_factory=RoundingDecision)


def fold_row(
    item: OpenRow, set_name: str, first: int, x: np.ndarray, expected: list[np.ndarray], options: VerifyOptions
) -> None:
    """One batch of one set through one row."""
    row = item.row
    run = item.runs.setdefault(set_name, InputRun(set_name))
    if item.stopped:
        return
    size = "x".join(map(str, x.shape[2:] or x.shape[1:]))
    if item.static_batch and len(x) != item.static_batch:
        row.skipped_images += len(x)  # a static-batch file cannot take another batch size
        note = f"batches of {len(x)}: the file's batch is fixed to {item.static_batch}"
        if note not in run.skipped:
            run.skipped.append(note)
        return
    if tuple(x.shape[1:]) != item.sample_shape and not item.any_size:
        note = f"{size}: the {row.format} file is fixed to {'x'.join(map(str, item.sample_shape))}"
        if note not in run.skipped:
            run.skipped.append(note)
        return
    try:
        actual = run_batch(item.runtime, x)
    except Exception as exc:  # noqa: BLE001 - a runtime that cannot run the file is a failed row
        row.reason = f"{row.runtime} failed to run on {set_name} ({size}): {one_line(exc)}"
        item.stopped = True
        return
    tolerance = precision_tolerance(item.runtime.precision, options.atol, options.rtol)
    accumulators = item.accumulators.setdefault(set_name, [Accumulator(*tolerance)])
    before = sum(acc.result.mismatched for acc in accumulators)
    structure = fold_batch(expected, actual, accumulators, first)
    if structure:
        row.reason = structure
        item.stopped = True
        return
    if size not in run.sizes:
        run.sizes.append(size)
    run.batches += 1
    run.images += len(x)
    row.batches += 1
    row.images += len(x)
    batch_ok = all(acc.result.mismatched == 0 and not acc.result.shape_mismatch for acc in accumulators)
    if not batch_ok and item.first_failure is None:
        item.first_failure = (set_name, first, x, expected, actual)
    shapes_ok = not any(acc.result.shape_mismatch for acc in accumulators)
    if item.fp64 is not None and shapes_ok and sum(acc.result.mismatched for acc in accumulators) > before:
        judge_batch(item.rounding, item.fp64, set_name, first, x, expected, actual, *tolerance, own=item.own)
    row.seconds = round(time.perf_counter() - item.started, 3)


def conclude_row(item: OpenRow, model: ModelArtifacts, options: VerifyOptions) -> None:
    row = item.row
    for name, run in item.runs.items():
        run.outputs = [acc.result for acc in item.accumulators.get(name, [])]
    row.inputs = list(item.runs.values())
    if row.reason:  # stopped early: could not run, or a different number of outputs
        return
    ran = [run for run in row.inputs if run.batches]
    if not ran:
        row.reason = "no batch could be compared"
        return
    failing = [run for run in ran if not run.passed]
    worst = failing[0] if failing else max(ran, key=lambda run: run.max_abs)
    row.worst_input, row.outputs = worst.name, worst.outputs
    if not failing:
        row.status = "passed"
        return
    decision = item.rounding
    mismatched = sum(c.mismatched for run in failing for c in run.outputs)
    row.rounding = decision if decision.elements or decision.unavailable else None
    if decision.within and decision.elements == mismatched and not any(c.shape_mismatch for c in row.outputs):
        row.status = "passed"  # every strict mismatch judged against fp64 eager: rounding only
        return
    kind, detail = mismatch_reason(row.outputs)
    row.reason = (
        f"output shape differs from eager on {worst.name} ({detail})"
        if kind == "shape"
        else f"{sum(c.mismatched for c in row.outputs):,} elements out of tolerance on {worst.name}"
        + (f" (and on {', '.join(r.name for r in failing[1:])})" if failing[1:] else "")
    )
    bad = row.worst
    if bad is not None and (bad.nan_actual or bad.nan_expected):
        row.reason += f" (NaN: {bad.nan_actual} in the artifact's output, {bad.nan_expected} in eager's)"
    if row.rounding is not None and kind != "shape":
        row.reason += f"; beyond {row.rounding.reference} rounding: {row.rounding.summary}"
    if item.first_failure is not None:
        set_name, first, x, expected, actual = item.first_failure
        row.failing_batch, row.replay = save_failure(row, model, first, x, expected, actual, options, set_name)
        if options.heatmaps:
            stem = Path(row.failing_batch).with_suffix("")
            title = f"{row.model} {row.format} {row.runtime} {row.device} on {set_name}"
            row.heatmap, row.tensorboard = write_heatmaps(stem, title, expected, actual, first)
        if row.device == "cpu":
            row.diverging_layer = first_diverging_layer(row.runtime, model, x, options.atol, options.rtol)
