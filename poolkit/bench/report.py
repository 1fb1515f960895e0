"""Bench results on disk (JSON, CSV, the PNG charts, written atomically) and `--baseline`: the changes since an old run."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolkit.bench.charts import write_chart, write_roofline
from poolkit.bench.measurement import BENCH_SCHEMA, BenchReport, Measurement
from poolkit.bench.stats import shift_test
from poolkit.common.errors import DataError
from poolkit.common.files import to_plain, write_json_atomic, write_text_atomic
from poolkit.common.limits import MAX_BATCH, MAX_ITERS, MAX_SECONDS, MAX_THREADS

MIN_COMPARE_SCHEMA = 2  # schema 1 kept summaries only: nothing to test a change on; rows before 5 are fp32

CSV_COLUMNS = [
    "model", "runtime", "precision", "device", "batch_size", "status", "provider", "mode", "artifact", "threads",
    "load_ms", "first_run_ms",
    "p50_ms", "p90_ms", "p99_ms", "p90_reliable", "p99_reliable", "min_ms", "mean_ms", "std_ms", "ci95_low_ms",
    "ci95_high_ms", "iters", "e2e_p50_ms", "device_p50_ms", "overhead_ms", "images_per_s", "speedup_vs_eager",
    "speedup_vs_fp32", "gflops_per_s", "gb_per_s", "bandwidth_share", "compute_share", "flops", "bytes_moved", "cv",
    "iqr_rel", "outputs_checked", "outputs_matched", "peak_rss_mb", "notes", "reason",
]  # fmt: skip


def csv_row(m: Measurement, report: BenchReport) -> dict[str, Any]:
    s, e = m.latency_ms, m.end_to_end_ms
    row = {k: getattr(m, k) for k in CSV_COLUMNS if hasattr(m, k)}
    row.update(bandwidth_share=report.bandwidth_share(m), compute_share=report.compute_share(m))
    row["mode"] = "; ".join(f"{k} {v}" for k, v in m.mode.items())
    if s:
        row.update(p50_ms=s.p50, p90_ms=s.p90, p99_ms=s.p99, min_ms=s.min, mean_ms=s.mean, std_ms=s.std)
        row.update(ci95_low_ms=s.ci95_low, ci95_high_ms=s.ci95_high, iters=s.n)
        row.update(p90_reliable=s.p90_reliable, p99_reliable=s.p99_reliable, cv=s.cv, iqr_rel=s.iqr_rel)
    if e:
        row["e2e_p50_ms"] = e.p50
    if m.device_ms:
        row["device_p50_ms"] = m.device_ms.p50
    row["notes"] = "; ".join(m.notes + [f.message for f in m.flags])
    return row


def write_reports(report: BenchReport, out_dir: Path, stem: str = "bench") -> dict[str, Path]:
    """results/bench.json, .csv and .png; each appears whole or not at all."""
    out_dir = Path(out_dir)
    paths = {"json": write_json_atomic(out_dir / f"{stem}.json", report)}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for m in report.measurements:
        writer.writerow(csv_row(m, report))
    paths["csv"] = write_text_atomic(out_dir / f"{stem}.csv", buf.getvalue())
    chart = write_chart(report, out_dir / f"{stem}.png")
    if chart:
        paths["png"] = chart
    roofline = write_roofline(report, out_dir / f"{stem}_roofline.png")
    if roofline:
        paths["roofline"] = roofline
    return paths


def load_report(path: Path, what: str = "--baseline") -> list[Measurement]:
    """Measurements of a saved bench JSON (for --baseline), rebuilt from their raw samples.

    Only what the comparison reads is kept (the row's key, status and samples), and each of those is
    checked: a negative, NaN or absurd sample, or a row without samples, would otherwise become a
    confident "regression" or "improvement" after the whole timing ran.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise DataError(f"{what} {path}: not a poolkit bench JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("measurements"), list):
        raise DataError(f"{what} {path}: not a poolkit bench JSON (no 'measurements' list)")
    schema = data.get("schema")
    if type(schema) is not int or not MIN_COMPARE_SCHEMA <= schema <= BENCH_SCHEMA:
        raise DataError(
            f"{what} {path}: bench JSON schema {schema!r}; this poolkit reads schemas "
            f"{MIN_COMPARE_SCHEMA} to {BENCH_SCHEMA} (files that keep raw samples)"
        )
    return [_baseline_row(path, i, row, what) for i, row in enumerate(data["measurements"])]


def _baseline_row(path: Path, index: int, row: Any, what: str = "--baseline") -> Measurement:
    def bad(why: str) -> DataError:
        return DataError(f"{what} {path}: measurement {index} {why}")

    if not isinstance(row, dict):
        raise bad("is not an object")
    defaults = {"status": "ok", "precision": "fp32"}  # rows written before schema 5 are fp32 rows
    for key in ("model", "runtime", "device", "status", "precision"):
        if not isinstance(row.get(key, defaults.get(key)), str):
            raise bad(f"has a bad {key} {row.get(key)!r}")
    size = row.get("batch_size")
    if type(size) is not int or not 0 < size <= MAX_BATCH:
        raise bad(f"has a bad batch_size {size!r}")
    samples = row.get("samples_ms", [])
    if not isinstance(samples, list) or len(samples) > MAX_ITERS:
        raise bad(f"has bad samples_ms (a list of at most {MAX_ITERS:,} times in ms)")
    for value in samples:
        if type(value) not in (int, float) or not 0 < value <= MAX_SECONDS * 1000:
            raise bad(f"has a bad sample {value!r}: times are milliseconds above 0, at most {MAX_SECONDS * 1000:,.0f}")
    status = row.get("status", "ok")
    if status == "ok" and not samples:
        raise bad("is 'ok' but has no samples_ms")
    threads = row.get("threads")
    if threads is not None and (type(threads) is not int or not 0 < threads <= MAX_THREADS):
        raise bad(f"has a bad threads {threads!r}")
    precision = row.get("precision", "fp32")
    samples_ms = tuple(float(v) for v in samples)
    return Measurement(
        row["model"], row["runtime"], row["device"], size, threads, precision, status=status, samples_ms=samples_ms
    )


@dataclass(frozen=True)
class Change:
    model: str
    runtime: str
    device: str
    batch_size: int
    precision: str
    old_p50_ms: float
    new_p50_ms: float
    change_pct: float
    verdict: str  # regression | improvement | within noise
    p_value: float | None = None  # Mann-Whitney U, two-sided, on the raw samples
    shift_ms: float | None = None  # Hodges-Lehmann shift new - old
    shift_low_ms: float | None = None  # its 95 % interval
    shift_high_ms: float | None = None
    old_n: int = 0
    new_n: int = 0


def changes_since(old: list[Measurement], new: list[Measurement]) -> list[Change]:
    """Rows present in both runs, tested on their raw samples (Mann-Whitney U, Hodges-Lehmann shift).

    A change is called only when the test rejects at 5 % and the shift's 95 % interval excludes
    zero; its sign says regression or improvement. This has far more power than asking whether the
    two medians' intervals overlap.
    """
    previous = {(m.key, m.threads): m for m in old if m.latency_ms}
    changes = []
    for m in new:
        before = previous.get((m.key, m.threads)) or previous.get((m.key, None))
        if before is None or m.latency_ms is None:
            continue
        a, b = before.latency_ms, m.latency_ms
        assert a is not None  # only rows with samples were kept
        test = shift_test(before.samples_ms, m.samples_ms)
        verdict = "within noise"
        if test.significant:
            verdict = "regression" if test.shift > 0 else "improvement"
        pct = (b.p50 / a.p50 - 1) * 100 if a.p50 else 0.0
        model, runtime, device, batch, precision = m.key
        shift = (test.p_value, test.shift, test.shift_low, test.shift_high, test.n_a, test.n_b)
        changes.append(Change(model, runtime, device, batch, precision, a.p50, b.p50, pct, verdict, *shift))
    return changes


def compare_files(old: Path, new: Path) -> list[Change]:
    """Two saved bench JSON files compared row by row on their raw samples, nothing timed: how
    `poolkit report --runs A B` sets runs (of one machine or two) side by side."""
    return changes_since(load_report(old, "bench run"), load_report(new, "bench run"))


__all__ = ["write_reports", "load_report", "changes_since", "compare_files", "Change", "to_plain"]
