"""Bench 3.0 (issue 22), without timing: settling spinning threads, end to end run once, a robust unstable
flag, outputs checked while timed over rotating inputs (fake runtimes that cache, or replay stale memory),
channels_last eager, the host's roofs, thread lists and peak memory."""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from typer.testing import CliRunner

from poolkit.bench import process
from poolkit.bench.charts import write_roofline
from poolkit.bench.inputs import bench_batches
from poolkit.bench.loop import timed_loop
from poolkit.bench.measurement import BenchReport, BenchSettings, Measurement
from poolkit.bench.outputs import CHECK_EVERY, ROTATE
from poolkit.bench.roofs import HostRoofs, measure_host_roofs
from poolkit.bench.run import run_bench
from poolkit.bench.stats import summarize
from poolkit.bench.timer import LocalTimer
from poolkit.cli import app
from poolkit.common.files import to_plain
from poolkit.runtimes import registry
from poolkit.runtimes.capabilities import TimingSettings
from poolkit.runtimes.eager import EagerRuntime
from poolkit.runtimes.onnxruntime import OnnxRuntime
from poolkit.services.artifacts import open_artifacts
from tests.helpers import measurement

runner = CliRunner()


# -- 1. a spinning runtime's worker waits for its threads to idle before the next runtime's round ----------
def test_settle_sleeps_until_a_window_passes_with_the_process_idle() -> None:
    used = iter([0.0, 0.006, 0.006, 0.012, 0.012, 0.0125])  # 6 ms of CPU in two 10 ms windows, then 0.5 ms
    sleeps: list[float] = []
    waited = process.settle(cpu=lambda: next(used), sleep=sleeps.append, window_s=0.01)
    assert sleeps == [0.01, 0.01, 0.01] and waited == pytest.approx(0.03)
    busy = process.settle(cpu=iter(range(1000)).__next__, sleep=lambda s: None, window_s=0.01, limit_s=0.05)
    assert busy == pytest.approx(0.05)  # a thread that never idles: give up at the limit


def test_only_a_spinning_runtime_settles_after_its_warmup_and_its_rounds(zoo_dir: Path) -> None:
    """The warm-up spins ONNX Runtime's threads as a round does: unsettled, they ran on into the next
    runtime's first round (eager's p99 beside ONNX Runtime was 5x its p99 alone, at 2 threads here)."""
    (model,) = open_artifacts(zoo_dir, ["relu"])
    batch = np.zeros((2, 3, 32, 32), dtype=np.float32)
    calls: list[str] = []
    for runtime, spinning in (("onnxruntime", True), ("onnxruntime", False), ("eager", True)):
        timer = LocalTimer(runtime, "cpu", 1, spinning=spinning, settle=lambda r=runtime: calls.append(r) or 0.25)
        before = len(calls)
        timer.open(str(zoo_dir), "relu", "fp32", [batch], warmup=2, model_obj=model)
        assert len(calls) - before == (1 if (runtime, spinning) == ("onnxruntime", True) else 0)
        got = timer.round("fp32", 2, 1)
        timer.close()
        assert got.settle_s == (0.25 if (runtime, spinning) == ("onnxruntime", True) else 0.0)
    assert calls == ["onnxruntime", "onnxruntime"]  # after the warm-up, after the round; never for the others


def test_the_timed_loop_frees_each_output_before_the_next_call() -> None:
    """A user's loop drops each output before the next call; the loop held it over, so every call
    allocated its output beside the last one in fresh pages (eager conv's p50 2-3x torch.utils.benchmark's)."""
    alive: list[bool] = []

    class Output:
        pass

    last: list[weakref.ref[Output]] = []

    def call(i: int) -> Output:
        alive.append(bool(last) and last[-1]() is not None)
        out = Output()
        last.append(weakref.ref(out))
        return out

    seen: list[int] = []
    timed_loop(call, 4, after=lambda i, out: seen.append(i) if isinstance(out, Output) else None)
    assert seen == [0, 1, 2, 3]  # `after` still sees every output
    assert alive == [False, False, False, False]  # was [False, True, True, True]


# -- 2. end to end runs the model once per call -------------------------------------------------------------
class CountingSession:
    """An ONNX Runtime session that counts how often the model runs."""

    def __init__(self, session: Any) -> None:
        self.session, self.runs = session, 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        return self.session.run(*args, **kwargs)

    def run_with_iobinding(self, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        return self.session.run_with_iobinding(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def test_end_to_end_runs_an_onnx_model_once_per_call(zoo_dir: Path) -> None:
    (model,) = open_artifacts(zoo_dir, ["conv"])
    timer = LocalTimer("onnxruntime", "cpu", 1, spinning=False)
    timer.open(str(zoo_dir), "conv", "fp32", [np.ones((2, 3, 32, 32), dtype=np.float32)], warmup=0, model_obj=model)
    rt: Any = timer.slots["fp32"].rt
    counting = rt.session = CountingSession(rt.session)
    got = timer.round("fp32", 0, 3)
    timer.close()
    assert len(got.e2e_s) == 3 and counting.runs == 3  # was 6: prepare ran the model to allocate outputs


# -- 3. the unstable flag on IQR/median, the CV kept ---------------------------------------------------------
def test_one_tail_sample_does_not_make_a_row_unstable() -> None:
    steady = [1.0 + (i % 5) / 100 for i in range(99)] + [40.0]
    s = summarize(steady)
    assert s.cv > 0.10 and s.iqr_rel == pytest.approx(0.02 / 1.02) and not s.unstable  # p25 1.01, p75 1.03
    assert "unstable" not in [f.kind for f in measurement(steady).flags]
    data = measurement(steady).__json__()["latency_ms"]
    assert data.cv == s.cv and data.iqr_rel == s.iqr_rel  # both recorded
    spread = summarize([1.0, 1.2, 1.0, 1.2] * 10)
    assert spread.iqr_rel == pytest.approx(0.2) and spread.unstable


# -- 4. outputs checked while timed, over rotating inputs --------------------------------------------------
class CachingRuntime(EagerRuntime):
    """Answers every call with the first batch's outputs: fast, and wrong for every other batch."""

    name = "caching"

    def infer(self, prepared: Any) -> Any:
        if not hasattr(self, "_cached"):
            self._cached = super().infer(prepared)
        return self._cached

    def run_host(self, batch: Any) -> list[np.ndarray]:
        return self.to_numpy(self.infer(self.prepare(batch)))


class FixedMemoryRuntime(EagerRuntime):
    """A CUDA graph's contract on the CPU: every call reads one prepared buffer, new data comes by refill.
    With `stale`, refill forgets to copy (a graph replayed on the old batch)."""

    name = "fixed"
    stale = False

    def fixed_memory(self) -> bool:
        return True

    def capture_graph(self, prepared: Any) -> Any:
        return lambda: self.infer(prepared)  # "replay": always the captured buffer

    def refill(self, prepared: Any, batch: Any) -> None:
        self.refills = getattr(self, "refills", 0) + 1
        if not self.stale:
            super().refill(prepared, batch)


class StaleFixedRuntime(FixedMemoryRuntime):
    name = "stale-fixed"
    stale = True


@pytest.fixture
def fake_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in (CachingRuntime, FixedMemoryRuntime, StaleFixedRuntime):
        monkeypatch.setitem(registry.RUNTIMES, cls.name, cls)


def test_rotating_batches_are_distinct() -> None:
    data = np.arange(10 * 3 * 2 * 2, dtype=np.float32).reshape(10, 3, 2, 2)
    batches = bench_batches(data, (3, 2, 2), 2)
    assert len(batches) == ROTATE and len({b.tobytes() for b in batches}) == ROTATE
    big = bench_batches(data, (3, 2, 2), 8)  # more than the data holds in 4 disjoint batches: offsets still differ
    assert [b.shape for b in big] == [(8, 3, 2, 2)] * ROTATE and len({b.tobytes() for b in big}) == ROTATE
    noise = bench_batches(data, (1, 4, 4), 3)
    assert len({b.tobytes() for b in noise}) == ROTATE


def test_a_runtime_that_caches_its_answer_fails_its_row(zoo_dir: Path, fake_runtimes: None) -> None:
    images = np.random.default_rng(1).random((64, 3, 32, 32), dtype=np.float32)
    settings = BenchSettings(runtimes=("eager", "caching"), batch_sizes=(4,), warmup=0, iters=40, in_process=True)
    eager, caching = run_bench(zoo_dir, ["conv"], settings, images).measurements
    assert (eager.status, eager.outputs_matched) == ("ok", True) and eager.outputs_checked >= 40 // CHECK_EVERY
    assert (caching.status, caching.outputs_matched, caching.samples_ms) == ("failed", False, ())
    # call 0 (batch 1, the cached one) matched; call 13 (an end-to-end call on batch 2) did not
    assert caching.reason.startswith(
        "outputs checked while timed: call 13 (batch 2 of 4): output 0 differs from eager (max abs difference"
    )
    row = json.loads(json.dumps(to_plain(caching)))
    assert (row["outputs_checked"], row["outputs_matched"]) == (caching.outputs_checked, False)


def test_fixed_memory_rotates_by_refill_and_a_stale_graph_is_caught(zoo_dir: Path, fake_runtimes: None) -> None:
    """The CUDA-graph path on the CPU: one prepared buffer, refilled outside the clock, outputs checked."""
    (model,) = open_artifacts(zoo_dir, ["relu"])
    batches = [np.full((2, 3, 32, 32), v - 1.5, dtype=np.float32) for v in range(ROTATE)]
    expected = [[np.maximum(b, 0)] for b in batches]

    class Events:  # device events stand-in: 0.5 ms a call
        t = 0.0

        def record(self) -> float:
            self.t += 0.5
            return self.t

        def elapsed_ms(self, start: float, end: float) -> float:
            return end - start

    good = LocalTimer("fixed", "cpu", 1, spinning=False, events=Events())
    good.open(str(zoo_dir), "relu", "fp32", batches, warmup=0, expected=expected, model_obj=model)
    n = 2 * CHECK_EVERY + 1  # checks calls 0, 13 and 26: batches 1, 2 and 3
    got = good.round("fp32", n, 0)
    slot, rt = good.slots["fp32"], cast(Any, good.slots["fp32"].rt)
    assert (got.checked, got.mismatch, len(slot.prepared)) == (3, None, 1)
    assert got.device_ms == [0.5] * n and rt.refills == n - 1  # every call but the first: a new batch
    good.close()
    stale = LocalTimer("stale-fixed", "cpu", 1, spinning=False)
    stale.open(str(zoo_dir), "relu", "fp32", batches, warmup=0, expected=expected, model_obj=model)
    got = stale.round("fp32", n, 0)
    stale.close()
    # batch 2 (-0.5) gives relu 0 like batch 1: only batch 3 (0.5) shows the replay on the old memory
    assert (got.checked, got.mismatch) == (
        3,
        "call 26 (batch 3 of 4): output 0 differs from eager (max abs difference 0.5)",
    )


def test_onnx_io_binding_refills_its_bound_input_in_place(zoo_dir: Path) -> None:
    """What ONNX Runtime's CUDA graph replays on: the bound OrtValue, rewritten by update_inplace."""
    rt = OnnxRuntime.open_timed(zoo_dir / "relu.onnx", "cpu", 1, TimingSettings())
    first, second = np.full((2, 3, 32, 32), -1.0, dtype=np.float32), np.full((2, 3, 32, 32), 2.0, dtype=np.float32)
    prepared = rt.prepare(first)
    assert rt.to_numpy(rt.infer(prepared))[0].max() == 0.0
    rt.refill(prepared, second)
    assert rt.to_numpy(rt.infer(prepared))[0].min() == 2.0
    assert rt.run_host(second)[0].min() == 2.0  # end to end: session.run, numpy in and out
    rt.close()


# -- 5. eager in channels_last --------------------------------------------------------------------------
def test_eager_cl_gives_checked_rows(zoo_dir: Path) -> None:
    images = np.random.default_rng(2).random((16, 3, 32, 32), dtype=np.float32)
    settings = BenchSettings(runtimes=("eager", "eager-cl"), batch_sizes=(4,), warmup=1, iters=17, in_process=True)
    eager, cl = run_bench(zoo_dir, ["maxpool_floor"], settings, images).measurements
    assert (cl.status, cl.provider, cl.outputs_matched) == ("ok", "torch-cpu-channels_last", True)
    assert cl.latency_ms.n == 17 and cl.speedup_vs_eager is not None and eager.outputs_matched


# -- 6. the host's roofs, shares and roofline ------------------------------------------------------------
def test_host_roofs_are_measured_and_shared_by_cpu_rows(tmp_path: Path) -> None:
    roofs = measure_host_roofs(1, llc_bytes=2**20, gemm_n=64)
    assert roofs.gb_per_s > 0 and roofs.gflops_per_s > 0 and roofs.triad_mb_per_array == 64.0  # the floor
    m = Measurement("relu", "eager", "cpu", 64, samples_ms=(2.0,) * 3, flops=4_000_000_000, bytes_moved=1_000_000_000)
    report = BenchReport({"cpu": "test"}, BenchSettings(), "", [m])
    assert report.bandwidth_share(m) is None and write_roofline(report, tmp_path / "r.png") is None  # no roofs
    report.machine["host_roofs"] = HostRoofs(2000.0, 8000.0, 2, 64.0, 768, 0.2)  # once per report, not per row
    shares = (report.bandwidth_share(m), report.compute_share(m))
    assert (m.gb_per_s, m.gflops_per_s, m.arithmetic_intensity, *shares) == (500.0, 2000.0, 4.0, 0.25, 0.25)
    assert write_roofline(report, tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    row = to_plain(report)["measurements"][0]
    assert (row["bandwidth_share"], row["compute_share"]) == (0.25, 0.25) and "peak_gb_per_s" not in row


# -- 7. thread lists in one table, peak memory per worker --------------------------------------------------
def test_threads_list_times_every_row_at_each_count(zoo_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["bench", "--models", str(zoo_dir), "-m", "relu", "-r", "eager", "--threads", "1,2", "--iters", "3",
              "--warmup", "0", "--in-process", "--out", str(tmp_path), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["report"]
    rows = data["measurements"]
    assert [(r["runtime"], r["threads"], r["status"]) for r in rows] == [("eager", 1, "ok"), ("eager", 2, "ok")]
    assert data["settings"]["thread_counts"] == [1, 2] and data["machine"]["host_roofs"]["gb_per_s"] > 0
    assert all(r["peak_rss_mb"] > 10 and r["bandwidth_share"] is not None for r in rows)
    assert (tmp_path / "bench_roofline.png").exists()
    bad = runner.invoke(app, ["bench", "--models", str(zoo_dir), "--threads", "1,0"])
    assert bad.exit_code == 2 and "bad --threads '1,0'" in bad.stderr


def test_bench_feeds_real_images_fitted_to_the_model_input() -> None:
    """A 1x4x4 model gets the images resized and made grayscale (as verify and show feed them), not noise."""
    from poolkit.bench.inputs import fitted_data

    data = np.empty((8, 3, 8, 8), dtype=np.float32)
    data[:, 0], data[:, 1], data[:, 2] = 0.2, 0.6, 1.0  # constant colour images: resizing keeps them constant
    fitted, steps = fitted_data(data, (1, 4, 4), 2)
    assert fitted.shape == (8, 1, 4, 4)  # batch 2 x 4 rotating batches
    np.testing.assert_allclose(fitted, 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0, rtol=1e-3)
    assert steps == [
        "resized 8x8 → 4x4 (torchvision transforms.v2.Resize, bilinear, antialias)",
        "converted to grayscale (transforms.v2.Grayscale, ITU-R 601-2 luma)",
    ]  # the report's notes say what was fed
    same, none = fitted_data(data, (3, 8, 8), 2)
    assert same is data and none == []  # the model's own shape: the images as they are
    noise, said = fitted_data(data, (2, 4, 4), 2)
    assert noise is data and said == ["seeded noise at 2x4x4 (not an image of 1 or 3 channels)"]
