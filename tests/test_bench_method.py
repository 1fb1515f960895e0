"""bench's method without timing: interleaved rounds, adaptive stop, cold start, tails, the two-sample test,
ORT profile parsing, CUDA events and graphs with fakes, machine load, and the table at 80/120/200 columns."""

from __future__ import annotations

import contextlib
import itertools
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from scipy.stats import mannwhitneyu
from typer.testing import CliRunner

from poolkit.bench.explain import dominant_op
from poolkit.bench.measurement import BenchReport, BenchSettings, Measurement, with_speedups
from poolkit.bench.report import changes_since
from poolkit.bench.run import needs_profile, run_bench
from poolkit.bench.scheduler import OpenRow, round_counts, sample_interleaved
from poolkit.bench.stats import hodges_lehmann, shift_test, summarize
from poolkit.bench.timer import LocalTimer, Round
from poolkit.cli import app
from poolkit.cli.bench_render import bench_table, changes_table
from poolkit.common.errors import PoolkitError
from poolkit.runtimes.capabilities import TimingSettings
from poolkit.runtimes.eager import capture_torch_graph
from poolkit.runtimes.onnxruntime import OnnxRuntime, kernel_times
from poolkit.services.environment import load_warning, peak_bandwidth_gb_s
from tests.helpers import measurement

runner = CliRunner()


# -- interleaving and adaptive sampling, with fake timers ------------------------------------------
class FakeTimer:
    """Answers rounds with scripted samples (seconds) and logs who ran when."""

    def __init__(self, name: str, log: list[str], samples: Any) -> None:
        self.name, self.log, self.samples = name, log, samples

    def round(self, slot: str, n: int, e2e: int) -> Round:
        self.log.append(f"{self.name}{n}")
        host = [next(self.samples) for _ in range(n)]
        return Round(host, [], [2 * h for h in host[:e2e]])


def rows_of(names: str, log: list[str], samples: dict[str, Any], estimate_s: float = 0.001) -> list[OpenRow]:
    return [OpenRow(measurement([], runtime=n), FakeTimer(n, log, samples[n]), estimate_s) for n in names]


def test_rounds_are_interleaved_and_rotated() -> None:
    assert round_counts(10, 5) == [2, 2, 2, 2, 2] and round_counts(7, 3) == [3, 2, 2] and round_counts(2, 5) == [1, 1]
    log: list[str] = []
    rows = rows_of("abc", log, {n: itertools.repeat(0.001) for n in "abc"})
    settings = BenchSettings(iters=6, rounds=3, in_process=True)
    sample_interleaved(rows, settings)
    assert log == ["a2", "b2", "c2", "b2", "c2", "a2", "c2", "a2", "b2"]  # each round starts one runtime later
    done = [r.finish() for r in rows]
    assert all(m.latency_ms.n == 6 and m.end_to_end_ms.n == 6 for m in done)
    assert done[0].samples_ms == (1.0,) * 6 and done[0].e2e_samples_ms == (2.0,) * 6


def test_adaptive_stops_when_the_median_interval_is_narrow_or_time_runs_out() -> None:
    log: list[str] = []
    steady = itertools.repeat(0.01)  # 10 ms, no spread: the interval has zero width once min-time is reached
    noisy = itertools.cycle([0.005, 0.01, 0.02, 0.04])  # wide interval for ever: stops at max-time, flagged
    rows = rows_of("sn", log, {"s": steady, "n": noisy}, estimate_s=0.01)  # rounds of 50 ms / 10 ms = 5 calls
    rows = [replace(row, opened=replace(row.opened, ci_target=0.05)) for row in rows]
    settings = BenchSettings(iters=None, min_time_s=0.2, max_time_s=1.0, ci_target=0.05, in_process=True)
    finished: list[str] = []
    sample_interleaved(rows, settings, lambda row, units: finished.append(row.opened.runtime))
    steady_row, noisy_row = (row.finish() for row in rows)
    assert finished == ["s", "n"]  # the progress bar moves a unit as each adaptive row is done
    assert sum(steady_row.samples_ms) == pytest.approx(200.0) and len(steady_row.samples_ms) == 20
    assert steady_row.latency_ms.ci95_rel_width == 0 and "imprecise" not in [f.kind for f in steady_row.flags]
    assert 1000 <= sum(noisy_row.samples_ms) < 1000 + 50 * 40  # one round past the limit at most
    assert [f.kind for f in noisy_row.flags if f.kind == "imprecise"] == ["imprecise"]
    assert "wide (target 5.0%) when the time ran out" in noisy_row.flags[-1].message


def test_a_failing_round_fails_its_row_only() -> None:
    class Dies(FakeTimer):
        def round(self, slot: str, n: int, e2e: int) -> Any:
            raise PoolkitError("the onnxruntime worker process died (exit code -11)", exit_code=1)

    log: list[str] = []
    rows = rows_of("a", log, {"a": itertools.repeat(0.001)})
    rows.append(OpenRow(measurement([], runtime="b"), Dies("b", log, None), 0.001))
    settings = BenchSettings(iters=4, rounds=2, in_process=True)
    units: list[str] = []
    sample_interleaved(rows, settings, lambda row, n: units.append(row.opened.runtime))
    ok, died = (row.finish() for row in rows)
    assert len(ok.samples_ms) == 4 and ok.status == "ok"
    assert (died.status, died.reason, died.samples_ms) == (
        "failed",
        "the onnxruntime worker process died (exit code -11)",
        (),
    )
    assert units == ["a", "b", "b", "a"]  # a failed row's rounds still count: the bar reaches its end


# -- cold start, device time and CUDA graphs on the CPU with fakes -----------------------------------
class FakeEvents:
    """CUDA events stand-in: each record is a tick 0.25 ms after the last."""

    def __init__(self) -> None:
        self.t = 0.0

    def record(self) -> float:
        self.t += 0.25
        return self.t

    def elapsed_ms(self, start: float, end: float) -> float:
        return end - start


def ms_clock(step_s: float = 0.001) -> Any:
    now = [0.0]

    def clock() -> float:
        now[0] += step_s
        return now[0]

    return clock


def test_local_timer_measures_load_first_steady_and_device_time(zoo_dir: Path) -> None:
    from poolkit.services.artifacts import open_artifacts

    (model,) = open_artifacts(zoo_dir, ["relu"])
    batch = np.zeros((4, 3, 32, 32), dtype=np.float32)
    timer = LocalTimer("onnxruntime", "cpu", 1, spinning=False, clock=ms_clock(), events=FakeEvents())
    opened = timer.open(str(zoo_dir), "relu", "fp32", [batch], warmup=3, model_obj=model)
    assert (opened.load_s, opened.first_s, opened.provider) == (
        pytest.approx(0.001),
        pytest.approx(0.001),
        "CPUExecutionProvider",
    )
    assert opened.warmup_s == pytest.approx([0.001] * 3)
    got = timer.round("fp32", 5, 2)
    assert got.host_s == pytest.approx([0.001] * 5) and got.device_ms == [0.25] * 5
    assert got.e2e_s == pytest.approx([0.001] * 2)
    assert opened.mode == {"spinning": False, "io_binding": True, "outputs": "bound once"}  # read back from the session
    timer.close()
    spinning = LocalTimer("onnxruntime", "cpu", 1, spinning=True)
    assert spinning.open(str(zoo_dir), "relu", "fp32", [batch], warmup=0, model_obj=model).mode["spinning"] is True
    session = spinning.slots["fp32"].rt.session  # type: ignore[attr-defined]
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"
    spinning.close()


def test_cuda_graphs_are_refused_on_cpu_rows(zoo_dir: Path) -> None:
    from poolkit.services.artifacts import open_artifacts

    (model,) = open_artifacts(zoo_dir, ["relu"])
    batch = np.zeros((2, 3, 32, 32), dtype=np.float32)
    for runtime in ("eager", "onnxruntime"):
        timer = LocalTimer(runtime, "cpu", 1, spinning=False, cuda_graphs=True)
        with pytest.raises(PoolkitError, match="--cuda-graphs applies to CUDA rows only"):
            timer.open(str(zoo_dir), "relu", "fp32", [batch], warmup=0, model_obj=model)
    result = runner.invoke(app, ["bench", "--models", str(zoo_dir), "-m", "relu", "--cuda-graphs"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --cuda-graphs applies to CUDA rows only: add --device cuda or --device all"


def test_torch_cuda_graph_capture_and_replay_follow_the_recipe() -> None:
    import torch

    calls: list[str] = []

    class FakeStream:
        def wait_stream(self, other: Any) -> None:
            calls.append("wait_stream")

    class FakeGraph:
        def replay(self) -> None:
            calls.append("replay")

    class FakeCuda:
        Stream = FakeStream

        def current_stream(self) -> FakeStream:
            return FakeStream()

        def CUDAGraph(self) -> FakeGraph:  # noqa: N802 - torch.cuda's name
            calls.append("graph")
            return FakeGraph()

        @contextlib.contextmanager
        def stream(self, s: Any) -> Any:
            calls.append("side stream")
            yield

        @contextlib.contextmanager
        def graph(self, g: Any) -> Any:
            calls.append("capture")
            yield
            calls.append("captured")

    def module(x: Any) -> Any:
        calls.append("forward")
        return x + 1

    replay = capture_torch_graph(module, torch.zeros(1), FakeCuda(), warmup=2)
    assert replay().tolist() == [1.0]  # the graph's static output, as captured
    assert calls == ["wait_stream", "side stream", "forward", "forward", "wait_stream", "graph", "capture",
                     "forward", "captured", "replay"]  # fmt: skip


def test_peak_bandwidth_and_share_for_cuda_rows() -> None:
    class H100Props:
        memory_clock_rate = 2_619_000  # kHz
        memory_bus_width = 5120  # bits

    assert peak_bandwidth_gb_s(H100Props()) == pytest.approx(3352.32)
    assert peak_bandwidth_gb_s(object()) is None
    device = (0.8, 0.9, 0.8)
    m = Measurement("relu", "eager", "cuda", 64, samples_ms=(1.0,) * 3, device_samples_ms=device, bytes_moved=10**9)
    report = BenchReport({"gpu_peak_gb_per_s": 2000.0}, BenchSettings(), "", [m])  # the GPU's, once per report
    assert (m.gb_per_s, report.bandwidth_share(m), report.compute_share(m), m.device_ms.p50) == (1000.0, 0.5, None, 0.8)


# -- pre-allocated IO-binding outputs ---------------------------------------------------------------
def test_ort_outputs_are_allocated_once_and_reused(zoo_dir: Path) -> None:
    rt = OnnxRuntime.open_timed(zoo_dir / "tudui.onnx", "cpu", 1, TimingSettings())
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    prepared = rt.prepare(x)
    binding, _, outputs = prepared
    (out,) = outputs
    assert out.shape() == [3, 10]
    address = out.data_ptr()
    first = rt.to_numpy(rt.infer(prepared))[0]
    second = rt.to_numpy(rt.infer(prepared))[0]
    assert binding.get_outputs()[0].data_ptr() == address  # the same buffer, every call
    assert first.shape == (3, 10) and np.array_equal(first, second)
    rt.close()


# -- profile of a slow ONNX Runtime row --------------------------------------------------------------
def test_dominant_op_from_a_profile_trace() -> None:
    events = [
        {"cat": "Session", "name": "model_run", "dur": 999},
        {"cat": "Node", "name": "n1_kernel_time", "dur": 90, "args": {"op_name": "Softmax"}},
        {"cat": "Node", "name": "n1_fence_before", "dur": 5, "args": {"op_name": "Softmax"}},
        {"cat": "Node", "name": "n2_kernel_time", "dur": 6, "args": {"op_name": "Transpose"}},
        {"cat": "Node", "name": "n1_kernel_time", "dur": 90, "args": {"op_name": "Softmax"}},
        {"cat": "Node", "name": "n3_kernel_time", "dur": 14, "args": {"op_name": "Transpose"}},
    ]
    found = {"tool": "ONNX Runtime profile", **dominant_op(kernel_times(events))}
    assert (found["op"], found["share"], found["kernel_us"]) == ("Softmax", 0.9, 200.0)
    assert [(o["op"], o["us"]) for o in found["ops"]] == [("Softmax", 180.0), ("Transpose", 20.0)]
    assert dominant_op(kernel_times([{"cat": "Session", "name": "x", "dur": 1}])) is None
    m = measurement([1.5] * 5, model="softmax", profile={**found, "iters": 20})
    assert m.notes == [
        "ONNX Runtime profile (20 runs): Softmax takes 90% of kernel time, 0.009 ms per run (then Transpose 10%)"
    ]


def test_profile_names_softmax_and_is_asked_only_for_slow_rows(zoo_dir: Path) -> None:
    from poolkit.services.artifacts import open_artifacts

    (model,) = open_artifacts(zoo_dir, ["softmax"])
    timer = LocalTimer("onnxruntime", "cpu", 1, spinning=False)
    batches = [np.zeros((2, 3, 32, 32), dtype=np.float32)]
    timer.open(str(zoo_dir), "softmax", "fp32", batches, warmup=0, model_obj=model)
    found = timer.profile("fp32", iters=3)
    timer.close()
    assert (found["tool"], found["op"], found["iters"]) == ("ONNX Runtime profile", "Softmax", 3)
    assert 0.5 < found["share"] <= 1.0
    assert needs_profile([1.6] * 5, 1.0) and not needs_profile([1.4] * 5, 1.0)
    assert not needs_profile([9.0] * 5, None)


# -- tails and the two-sample test --------------------------------------------------------------------
def test_tails_say_how_many_samples_back_them() -> None:
    assert [(summarize([1.0] * n).p90_reliable, summarize([1.0] * n).p99_reliable) for n in (63, 64, 661, 662)] == [
        (False, False),
        (True, False),
        (True, False),
        (True, True),
    ]


def test_hodges_lehmann_shift_and_interval_by_hand() -> None:
    # differences b_j - a_i of [1,2,3] and [11,12,14]: 8,9,10,9,10,11,11,12,13 -> median 10
    shift, low, high = hodges_lehmann([1.0, 2.0, 3.0], [11.0, 12.0, 14.0])
    assert shift == 10.0
    assert (low, high) == (8.0, 13.0)  # k = floor(4.5 - 1.96 * sqrt(2.25)) = 1: the extremes at this size


def test_mann_whitney_finds_a_shift_that_overlapping_intervals_miss() -> None:
    a = [1.0 + (i * 37 % 200) / 200 for i in range(200)]  # uniform over [1, 2)
    b = [x + 0.1 for x in a]
    sa, sb = summarize(a), summarize(b)
    assert sb.ci95_low < sa.ci95_high  # the old rule would say "within noise"
    test = shift_test(a, b)
    assert test.p_value == pytest.approx(mannwhitneyu(b, a, alternative="two-sided").pvalue)
    assert test.p_value < 0.05 and test.shift == pytest.approx(0.1) and test.shift_low > 0 and test.significant
    (change,) = changes_since([measurement([x * 1e3 for x in a])], [measurement([x * 1e3 for x in b])])
    assert change.verdict == "regression" and change.shift_ms == pytest.approx(100.0)
    assert (change.old_n, change.new_n) == (200, 200)
    same = shift_test(a, a)
    assert same.shift == 0.0 and not same.significant


# -- machine state --------------------------------------------------------------------------------------
def test_load_warning_fires_only_when_something_else_ran() -> None:
    assert load_warning((0.3, 0.2, 0.1), (1.9, 0.9, 0.4), threads=2, cores=2) is None
    warning = load_warning((2.41, 1.4, 0.7), (2.38, 1.6, 0.8), threads=2, cores=2)
    assert warning.startswith("1-minute load average before 2.41, after 2.38 on 2 cores, 2 timed threads: another")
    assert load_warning((0.2, 0, 0), (3.1, 0, 0), threads=2, cores=2) is not None
    assert load_warning(None, None, threads=2, cores=2) is None


# -- the table at 80, 120 and 200 columns ---------------------------------------------------------------
LONG = "spec_conv2d_32x3x3_maxpool"


def synthetic_report() -> BenchReport:
    rows = []
    for model in ("maxpool_floor", "relu", LONG):
        for runtime, p50 in (("eager", 0.2567), ("torchscript", 12.3456), ("onnxruntime", 1234.5678)):
            cost = {"flops": 209_123, "bytes_moved": 879_400, "load_ms": 886.4, "first_run_ms": 27.8}
            rows.append(measurement([p50] * 5, model=model, runtime=runtime, **cost))
    rows.append(Measurement(LONG, "onnxruntime", "cuda", 64, status="unavailable", reason="no GPU"))
    rows.append(Measurement("relu", "torchscript", "cuda", 64, status="failed", reason="boom"))
    return BenchReport({"cpu": "AMD EPYC 7B13 64-Core Processor"}, BenchSettings(), "synthetic", with_speedups(rows))


@pytest.mark.parametrize("width", [80, 120, 200])
def test_table_names_every_row_and_never_cuts_a_number(width: int) -> None:
    report = synthetic_report()
    console = Console(width=width, record=True, color_system=None)
    console.print(bench_table(report, width))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == len(report.measurements)
    for line, m in zip(body, report.measurements, strict=True):
        assert line.split("│")[1].strip() == m.model  # the whole name, on every row
        assert f"{m.runtime} {m.device}" in line
    assert "…" not in text
    numbers = re.findall(r"[\d,.]+", "".join(body))
    for expected in ("0.257", "12.3", "1234.6", "0.02"):
        assert expected in numbers, expected
    assert "unavailable" in text and "failed" in text
    if width == 200:
        assert "FLOPs" in text and "left out" not in text
    else:
        assert "left out at this width:" in text


def test_cli_table_at_80_columns_names_every_model(zoo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from poolkit.cli import output

    monkeypatch.setattr(output.console, "width", 80)  # what COLUMNS=80 gives the console at start-up
    result = runner.invoke(
        app, ["bench", "--models", str(zoo_dir), "-m", "relu", "--iters", "3", "--warmup", "0", "--in-process",
              "--out", str(zoo_dir / "bench80")],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    body = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(body) == 3 and all(line.split("│")[1].strip() == "relu" for line in body)
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_compare_table_shows_shift_and_p_value() -> None:
    a = [1.0 + (i % 10) / 100 for i in range(100)]
    changes = changes_since([measurement(a)], [measurement([2 * x for x in a])])
    console = Console(width=200, record=True, color_system=None)
    console.print(changes_table(changes, "old.json"))
    text = console.export_text()
    assert "regression" in text and "+1.045 [+1.030, +1.060]" in text


def test_in_process_run_records_its_settings(zoo_dir: Path) -> None:
    images = np.zeros((4, 3, 32, 32), dtype=np.float32)
    settings = BenchSettings(runtimes=("onnxruntime",), batch_sizes=(4,), warmup=0, iters=4, in_process=True,
                             ort_spinning=True)  # fmt: skip
    report = run_bench(zoo_dir, ["relu"], settings, images)
    (row,) = report.measurements
    assert (report.settings.process, row.mode["spinning"], row.latency_ms.n, row.load_ms > 0, row.first_run_ms > 0) == (
        "in-process",
        True,
        4,
        True,
        True,
    )


@pytest.mark.cuda
def test_cuda_rows_carry_device_time_graphs_and_bandwidth(zoo_dir: Path) -> None:
    """Real CUDA only (skips here): isolated workers, CUDA events, graphs, bandwidth share."""
    from poolkit.services.environment import environment

    images = np.zeros((64, 3, 32, 32), dtype=np.float32)
    settings = BenchSettings(devices=("cuda",), warmup=2, iters=10, cuda_graphs=True)
    report = run_bench(zoo_dir, ["tudui"], settings, images, environment())
    for m in report.measurements:
        assert m.status == "ok", m.reason
        assert m.mode["cuda_graph"] and m.device_ms is not None and m.device_ms.n == 10
        share = report.bandwidth_share(m)
        assert share is not None and 0 < share < 1
