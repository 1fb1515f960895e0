"""Time one runtime on one batch: what runs inside a bench worker process (or in-process with --in-process).

A `LocalTimer` belongs to one runtime on one device. The parent (`bench.run_bench`) asks it to
`open` a model (load time, first inference and warm-up measured there), to run `round`s of counted
iterations (the parent interleaves rounds across runtimes), to time an Identity (`overhead`), to
`profile` an ONNX Runtime row, and to `close` the model. It never decides how many samples are
enough: the parent does, from the raw samples it collects.

CUDA rows also record device time with CUDA events around an un-synchronised launch (host latency
still includes the synchronisation), and `--cuda-graphs` replays a captured graph (torch) or lets
ONNX Runtime capture one (`enable_cuda_graph`). Event and graph APIs are parameters, so the same
code runs on the CPU with fakes in the tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from poolkit.common.errors import PoolkitError
from poolkit.runtimes.onnxruntime import OnnxRuntime, create_session, session_options
from poolkit.runtimes.registry import open_runtime, runtime_class

if TYPE_CHECKING:
    import numpy as np

    from poolkit.runtimes.base import Runtime
    from poolkit.services.artifacts import ModelArtifacts

Clock = Callable[[], float]


class DeviceEvents(Protocol):
    """What device timing needs: an event recorded on the runtime's stream, and ms between two of them."""

    def record(self) -> Any: ...

    def elapsed_ms(self, start: Any, end: Any) -> float: ...


class TorchCudaEvents:
    """CUDA events on one stream (torch's current stream, or the stream ONNX Runtime was given)."""

    def __init__(self, stream: Any = None) -> None:
        import torch

        self._torch = torch
        self.stream = stream if stream is not None else torch.cuda.current_stream()

    def record(self) -> Any:
        event = self._torch.cuda.Event(enable_timing=True)
        event.record(self.stream)
        return event

    def elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(start.elapsed_time(end))


@dataclass
class Opened:
    """What opening a model on a runtime cost: load, first inference, and which provider ran it."""

    load_s: float
    first_s: float
    provider: str
    warmup_s: list[float]


class BenchOnnxRuntime(OnnxRuntime):
    """OnnxRuntime with the settings a bench records: spinning, profiling, CUDA graphs, a given CUDA stream.

    The class API is OnnxRuntime's; only the session is created with bench's options. Like
    `create_session`, it refuses a session that would not run on the provider asked for.
    """

    preallocate_outputs = True

    def __init__(
        self,
        path: Path,
        device: str,
        threads: int | None = None,
        *,
        spinning: bool = True,
        cuda_graph: bool = False,
        profile_prefix: str | None = None,
        cuda_stream: int | None = None,
    ) -> None:
        if cuda_graph and device != "cuda":
            raise PoolkitError("--cuda-graphs applies to CUDA rows only")
        opts = session_options(threads, spinning)
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        provider_options: dict[str, str] = {}
        if device == "cuda":
            provider_options = {"enable_cuda_graph": "1"} if cuda_graph else {}
            if cuda_stream is not None:
                provider_options["user_compute_stream"] = str(cuda_stream)
        session = create_session(str(path), device, threads, options=opts, provider_options=provider_options)
        self._start(session, device)
        self.spinning = spinning
        self.cuda_graph = cuda_graph


def capture_torch_graph(module: Any, static_input: Any, cuda: Any, warmup: int = 3) -> Callable[[], Any]:
    """Capture one forward pass in a CUDA graph and return its replay (torch's documented recipe).

    `cuda` is `torch.cuda` (a fake in the tests): warm up on a side stream, capture under
    `cuda.graph(g)`, then every call is `g.replay()` on the same input and output memory.
    """
    import torch

    side = cuda.Stream()
    side.wait_stream(cuda.current_stream())
    with cuda.stream(side), torch.inference_mode():
        for _ in range(warmup):
            module(*static_input) if isinstance(static_input, tuple) else module(static_input)
    cuda.current_stream().wait_stream(side)
    graph = cuda.CUDAGraph()
    with cuda.graph(graph), torch.inference_mode():
        module(*static_input) if isinstance(static_input, tuple) else module(static_input)
    return graph.replay


def dominant_op(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """From an ONNX Runtime profile (its JSON trace), the op type taking most kernel time and its share.

    Kernel events are `cat: "Node"` with a name ending in `_kernel_time`; their `args.op_name` is the
    op type and `dur` is in microseconds.
    """
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = str(e.get("args", {}).get("op_name", "?"))
            by_op[op] = by_op.get(op, 0.0) + float(e.get("dur", 0))
    total = sum(by_op.values())
    if not by_op or total <= 0:
        return None
    ranked = sorted(by_op.items(), key=lambda kv: -kv[1])
    op, us = ranked[0]
    return {
        "op": op,
        "share": us / total,
        "ops": [{"op": name, "us": t, "share": t / total} for name, t in ranked],
        "kernel_us": total,
    }


def profile_onnxruntime(
    path: Path,
    device: str,
    threads: int | None,
    spinning: bool,
    batch: np.ndarray | tuple[np.ndarray, ...],
    iters: int = 20,
) -> dict[str, Any] | None:
    """Run the file `iters` times with ONNX Runtime's profiler on (SessionOptions.enable_profiling)."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="poolkit-ort-profile-") as folder:
        rt = BenchOnnxRuntime(path, device, threads, spinning=spinning, profile_prefix=str(Path(folder) / "ort"))
        with rt:
            prepared = rt.prepare(batch)
            for _ in range(iters):
                rt.infer(prepared)
            trace = rt.session.end_profiling()
            events = json.loads(Path(trace).read_text(encoding="utf-8"))
    found = dominant_op(events)
    if found is not None:
        found["iters"] = iters
    return found


class LocalTimer:
    """One runtime on one device, timed in this process."""

    def __init__(
        self,
        runtime: str,
        device: str,
        threads: int | None,
        ort_spinning: bool,
        cuda_graphs: bool = False,
        clock: Clock = time.perf_counter,
        events: DeviceEvents | None = None,
        cuda: Any = None,
    ) -> None:
        runtime_class(runtime)
        self.runtime_name, self.device, self.threads = runtime, device, threads
        self.ort_spinning, self.cuda_graphs = ort_spinning, cuda_graphs
        self.clock = clock
        self._events = events  # None: real CUDA events on CUDA rows, none on the CPU
        self._cuda = cuda  # torch.cuda, or a fake
        self._overheads: dict[tuple[int, ...], float | None] = {}
        self._artifacts: dict[tuple[str, str], ModelArtifacts] = {}
        self.rt: Runtime | None = None
        self.source: Any = None
        self.batch: np.ndarray | None = None
        self._launch: Callable[[], Any] | None = None
        self._prepared: Any = None

    # -- opening ----------------------------------------------------------------------------
    def artifacts(self, models_dir: str, name: str) -> ModelArtifacts:
        from poolkit.services.artifacts import open_artifacts

        key = (str(models_dir), name)
        if key not in self._artifacts:
            (self._artifacts[key],) = open_artifacts(Path(models_dir), [name])
        return self._artifacts[key]

    def _open_runtime(self, source: Any) -> Runtime:
        if self.runtime_name == "onnxruntime":
            stream = None
            if self.device == "cuda" and self._events is None:
                self._events = TorchCudaEvents(self._torch_cuda().Stream())
                stream = self._events.stream.cuda_stream
            return BenchOnnxRuntime(
                source, self.device, self.threads, spinning=self.ort_spinning, cuda_graph=self.cuda_graphs,
                cuda_stream=stream,
            )  # fmt: skip
        if self.cuda_graphs and self.device != "cuda":
            raise PoolkitError("--cuda-graphs applies to CUDA rows only")
        return open_runtime(self.runtime_name, source, self.device, self.threads)

    def _torch_cuda(self) -> Any:
        if self._cuda is None:
            import torch

            self._cuda = torch.cuda
        return self._cuda

    def open(self, models_dir: str, model: str, batch: np.ndarray, warmup: int, model_obj: Any = None) -> Opened:
        """Load the model (timed), prepare the batch, time the first inference, then warm up (each timed)."""
        self.close()
        artifacts = model_obj if model_obj is not None else self.artifacts(models_dir, model)
        # Load time: session creation (ORT), jit.load + freeze (TorchScript), or rebuilding the module
        # from spec and weights (eager; already built, so near zero, when timed in-process).
        t0 = self.clock()
        source = artifacts.source(self.runtime_name)  # hash checked; eager: the rebuilt module
        if runtime_class(self.runtime_name).reads == "module":
            import copy

            source = copy.deepcopy(source)  # a runtime moves its module to its device: keep the original
        else:
            t0 = self.clock()  # a file's hash check is not loading it
        self.rt = artifacts.with_extra_inputs(self._open_runtime(source))
        load = self.clock() - t0
        self.source, self.batch = source, batch
        self._prepared = self.rt.prepare(batch)
        self._launch = self._make_launch()
        t0 = self.clock()
        self.rt.infer(self._prepared)
        first = self.clock() - t0
        if self.cuda_graphs and self.rt.engine == "torch":
            self._launch = capture_torch_graph(self.rt.module, self._prepared, self._torch_cuda())  # type: ignore[union-attr]
        warm = self._timed(self._launch, warmup)[0] if warmup else []
        return Opened(load, first, self.rt.provider, warm)

    def _make_launch(self) -> Callable[[], Any]:
        """The timed call. CPU: `infer`. CUDA: the launch without its synchronisation, so events can bracket it."""
        rt, prepared = self.rt, self._prepared
        assert rt is not None
        if self.device != "cuda":
            return lambda: rt.infer(prepared)
        if isinstance(rt, OnnxRuntime):
            options = rt._ort.RunOptions()
            options.add_run_config_entry("disable_synchronize_execution_providers", "1")
            return lambda: rt.session.run_with_iobinding(prepared[0], options)
        import torch

        module = rt.module  # type: ignore[attr-defined]

        def launch() -> Any:
            with torch.inference_mode():
                return module(*prepared) if isinstance(prepared, tuple) else module(prepared)

        return launch

    # -- timing -----------------------------------------------------------------------------
    def _timed(self, call: Callable[[], Any], n: int) -> tuple[list[float], list[float]]:
        """Host seconds per call (synchronised on CUDA) and, on CUDA rows, device ms by events."""
        host: list[float] = []
        device: list[float] = []
        events = self._events if self.device == "cuda" or self._events is not None else None
        if self.device == "cuda" and events is None:
            events = self._events = TorchCudaEvents()
        for _ in range(n):
            start = events.record() if events else None
            t0 = self.clock()
            call()
            if events:
                end = events.record()
                device.append(events.elapsed_ms(start, end))  # waits for the end event: host time includes it
            host.append(self.clock() - t0)
        return host, device

    def round(self, n: int, e2e: int) -> tuple[list[float], list[float], list[float]]:
        """`n` counted model-only calls and `e2e` end-to-end calls: (host s, device ms, end-to-end s)."""
        assert self.rt is not None and self._launch is not None and self.batch is not None, "open a model first"
        rt, batch = self.rt, self.batch
        host, device = self._timed(self._launch, n)
        end_to_end = self._timed(lambda: rt.to_numpy(rt.infer(rt.prepare(batch))), e2e)[0] if e2e else []
        return host, device, end_to_end

    def overhead(self, iters: int) -> float | None:
        """p50 (ms) of an Identity on this runtime, device and batch shape: what a call costs by itself."""
        import tempfile

        from poolkit.bench.stats import summarize

        assert self.batch is not None
        key = tuple(self.batch.shape)
        if key not in self._overheads:
            with tempfile.TemporaryDirectory(prefix="poolkit-identity-") as folder:
                source = runtime_class(self.runtime_name).identity_source(Path(folder), key[1:])
                if source is None:
                    self._overheads[key] = None
                else:
                    with self._open_runtime(source) as identity:
                        prepared = identity.prepare(self.batch)
                        identity.infer(prepared)
                        samples = []
                        for _ in range(max(1, iters)):
                            t0 = self.clock()
                            identity.infer(prepared)
                            samples.append((self.clock() - t0) * 1e3)
                    self._overheads[key] = summarize(samples).p50
        return self._overheads[key]

    def profile(self, iters: int = 20) -> dict[str, Any] | None:
        """ONNX Runtime rows only: which op dominates the kernel time."""
        if self.runtime_name != "onnxruntime" or self.batch is None:
            return None
        from poolkit.services.artifacts import ExtraInputs

        inputs = self.rt.inputs(self.batch) if isinstance(self.rt, ExtraInputs) else self.batch  # every input fed
        return profile_onnxruntime(Path(self.source), self.device, self.threads, self.ort_spinning, inputs, iters)

    def close(self) -> None:
        if self.rt is not None:
            self.rt.close()
        self.rt = self._launch = self._prepared = None
        self.source = self.batch = None
