"""ONNX Runtime on the CPU or CUDA execution provider, fed through IO binding.

The same IO-binding code runs on both devices (device type "cpu" or "cuda"), so the CUDA path's
logic is exercised on machines without a GPU. Sessions come from `ort_session.create_session`,
which refuses ONNX Runtime's quiet fallback to the CPU provider.

What bench needs of ONNX Runtime lives here, as the capabilities `OnnxSession` declares: spinning
and profiling (session options), CUDA graphs and a CUDA stream for device events (provider options),
outputs allocated once and bound by value, the launch without its synchronisation, refilling a
bound input in place, a plain `session.run` for end-to-end and the self-check's reference loop.
`OnnxRuntime` adds layer outputs; TensorRT's provider (`tensorrt.py`) shares the rest.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from poolkit.common.errors import PoolkitError
from poolkit.common.outputs import check_onnx_output_types
from poolkit.runtimes.base import LayerOutputs, Reads, Runtime
from poolkit.runtimes.capabilities import (
    DeviceEvents,
    DeviceTimed,
    GraphReplay,
    HasLayerOutputs,
    HostRun,
    IdentityModel,
    KernelProfile,
    Preloads,
    Profiled,
    Reference,
    ReferenceLoop,
    Spinning,
    TimedOpen,
    TimingSettings,
    TorchCudaEvents,
    plain_loop,
)
from poolkit.runtimes.ort_session import (
    PROVIDERS,
    create_session,
    cuda_provider_problem,
    kernel_times,
    session_options,
    write_identity_model,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "PROVIDERS",
    "OnnxRuntime",
    "OnnxSession",
    "create_session",
    "session_options",
]  # the session door, for verify and sweep


class OnnxSession(
    Runtime, TimedOpen, DeviceTimed, GraphReplay, HostRun, Spinning, Profiled, IdentityModel, ReferenceLoop, Preloads
):
    """One ONNX file in one session; `prepare` binds the batch on the device, `infer` runs it."""

    reads: Reads = "onnx"
    engine = "onnxruntime"
    provider_name: ClassVar[str | None] = None  # None: the provider of the device (CPU or CUDA)

    def __init__(self, path: Path, device: str, threads: int | None = None, *, timing: TimingSettings | None = None):
        """`timing` (bench, through `open_timed`): its spinning, profiling, CUDA graph and a stream of
        our own for device events; outputs pre-allocated. Without it (verify and the rest): spinning
        off, each run allocates its outputs."""
        import onnxruntime as ort  # lazily: importing the runtimes (the CLI's option parsing) must not load it

        options, provider_options = None, {}
        self._events: TorchCudaEvents | None = None
        if timing is not None:
            options = session_options(threads, timing.spinning)
            if timing.profile_prefix:
                options.enable_profiling = True
                options.profile_file_prefix = timing.profile_prefix
            if device == "cuda":
                self._events = TorchCudaEvents.on_new_stream()
                provider_options["user_compute_stream"] = str(self._events.stream.cuda_stream)
                if timing.cuda_graphs:
                    provider_options["enable_cuda_graph"] = "1"
        self.preallocate_outputs = timing is not None and timing.preallocate_outputs
        self.cuda_graph = timing is not None and timing.cuda_graphs
        session = create_session(
            str(path), device, threads, self.provider_name, options=options, provider_options=provider_options or None
        )
        self._ort = ort
        self.device = device
        self.session = session
        self.provider = self.session.get_providers()[0]
        said = session.get_session_options()  # read back: what the session really does
        self.threads = said.intra_op_num_threads or None
        self.mode = {
            "spinning": said.get_session_config_entry("session.intra_op.allow_spinning") != "0",
            "io_binding": True,
            "outputs": "bound once" if self.preallocate_outputs else "allocated per call",
        }
        if device == "cuda":
            self.mode["cuda_graph"] = self.cuda_graph
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_name = self.input_names[0]
        self.output_names = [o.name for o in self.session.get_outputs()]
        check_onnx_output_types([(o.name, o.type) for o in self.session.get_outputs()])
        self._graph_prepared: Any = None

    @classmethod
    def open_timed(cls, source: Any, device: str, threads: int | None, settings: TimingSettings) -> Runtime:
        return cls(source, device, threads, timing=settings)

    @classmethod
    def cuda_problem(cls) -> str | None:
        return cuda_provider_problem(cls.provider_name)

    def prepare(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> Any:
        """Copy the batch to the device once and bind it with the outputs: the timed call is the model.

        A tuple binds one array per graph input, in the file's input order. With
        `preallocate_outputs` (bench), one run here allocates the outputs, which are then bound by
        value: a timed `infer` neither allocates them nor moves them (what CUDA graphs need). Their
        shapes come from that run, never from the shapes the file declares, which can be wrong.
        """
        arrays = self._arrays(batch)
        binding = self.session.io_binding()
        values = [self._ort.OrtValue.ortvalue_from_numpy(a, self.device, 0) for a in arrays]
        for name, value in zip(self.input_names, values, strict=True):
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, self.device, 0)
        if not self.preallocate_outputs:
            return binding, values, None  # keep the OrtValues alive as long as the binding
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        for name, out in zip(self.output_names, outputs, strict=True):
            binding.bind_ortvalue_output(name, out)
        if self.cuda_graph:
            self._graph_prepared = (binding, values, outputs)  # the one binding the graph was captured on
        return binding, values, outputs

    def _arrays(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        arrays = batch if isinstance(batch, tuple) else (batch,)
        if len(arrays) != len(self.input_names):
            raise PoolkitError(
                f"the ONNX file takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}), given {len(arrays)}"
            )
        return arrays

    def infer(self, prepared: Any) -> Any:
        binding = prepared[0]
        self.session.run_with_iobinding(binding)  # returns when the device is done
        return binding

    def to_numpy(self, outputs: Any) -> list[np.ndarray]:
        return list(outputs.copy_outputs_to_cpu())

    def close(self) -> None:
        self.session = None
        self._graph_prepared = None

    # -- bench's side of the interface --------------------------------------------------------------
    @classmethod
    def preload(cls) -> None:
        import onnxruntime  # noqa: F401

    def spins(self) -> bool:
        return bool(self.mode["spinning"])

    def timed_call(self, prepared: Any) -> Callable[[], Any]:
        """CPU: `infer`. CUDA: `run_with_iobinding` without its synchronisation, so events bracket the launch."""
        if self.device != "cuda":
            return lambda: self.infer(prepared)
        options = self._ort.RunOptions()
        options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        binding = prepared[0]

        def launch() -> Any:
            self.session.run_with_iobinding(binding, options)
            return binding

        return launch

    def device_events(self) -> DeviceEvents | None:
        return self._events

    def fixed_memory(self) -> bool:
        return self.cuda_graph  # ORT's graph replays on the addresses it was captured with

    def refill(self, prepared: Any, batch: np.ndarray | tuple[np.ndarray, ...]) -> None:
        """Copy new data into the bound inputs' memory (`OrtValue.update_inplace`): a captured graph reads there."""
        for value, array in zip(prepared[1], self._arrays(batch), strict=True):
            value.update_inplace(array)

    def run_host(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> list[np.ndarray]:
        """`session.run` with numpy in and out, as a user's loop does (it copies to and from the device).
        A session with a CUDA graph only runs through IO binding: refill its binding, run, copy out."""
        arrays = self._arrays(batch)
        if self._graph_prepared is not None:
            self.refill(self._graph_prepared, arrays)
            return self.to_numpy(self.infer(self._graph_prepared))
        return list(self.session.run(self.output_names, dict(zip(self.input_names, arrays, strict=True))))

    def end_profile(self) -> KernelProfile:
        """Stop the profiler (opened with `profile_prefix`) and sum its kernel time per op type (µs)."""
        trace = Path(self.session.end_profiling())
        return KernelProfile("ONNX Runtime profile", kernel_times(json.loads(trace.read_text(encoding="utf-8"))))

    @classmethod
    def reference_loop(cls, source: Any, threads: int, batch: np.ndarray, warmup: int, iters: int) -> Reference:
        """The loop a user would write, nothing of poolkit: a session with ONNX Runtime's defaults
        (spinning on), `run` with numpy in and out, perf_counter around each call."""
        import onnxruntime as ort  # lazily, as above

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(source), sess_options=opts, providers=[PROVIDERS["cpu"]])
        feed = {session.get_inputs()[0].name: batch}
        return plain_loop("a plain session.run loop", lambda: session.run(None, feed), warmup, iters)

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Path:
        return write_identity_model(Path(folder) / "identity.onnx", sample_shape)


class OnnxRuntime(OnnxSession, HasLayerOutputs):
    """ONNX Runtime on the CPU or CUDA provider, with verify's layer outputs (run on the CPU)."""

    name = "onnxruntime"

    @classmethod
    def layer_outputs(cls, source: Any, batch: np.ndarray) -> LayerOutputs:
        return onnx_layer_outputs(Path(source), batch)


def _node_layer(node: Any) -> str | None:
    """The top-level module a node came from: dynamo's name_scopes metadata, or legacy's `/conv1/Conv`."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)
            return scopes[1] if len(scopes) > 1 and scopes[1] else None
    if node.name.startswith("/") and node.name.count("/") >= 2:
        return node.name.split("/")[1]
    return None


def onnx_layer_outputs(path: Path, batch: np.ndarray) -> LayerOutputs:
    """Expose each layer's output tensor as a graph output and run the file once on the CPU.

    A layer's output is what its nodes produce for a node of another layer (or the graph output).
    Layers the exporter folded away have no nodes and are left out.
    """
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    graph = proto.graph
    layer_of = {out: _node_layer(n) for n in graph.node for out in n.output}
    graph_outputs = {o.name for o in graph.output}
    boundaries: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            src = layer_of.get(name)
            if src and src != _node_layer(node) and name not in boundaries.setdefault(src, []):
                boundaries[src].append(name)
    for name in graph_outputs:
        src = layer_of.get(name)
        if src and name not in boundaries.setdefault(src, []):
            boundaries[src].append(name)
    order = []
    for node in graph.node:
        layer = _node_layer(node)
        if layer and layer not in order:
            order.append(layer)
    exposed = [t for layer in order for t in boundaries.get(layer, []) if t not in graph_outputs]
    for tensor in exposed:
        graph.output.append(onnx.ValueInfoProto(name=tensor))
    session = ort.InferenceSession(proto.SerializeToString(), session_options(None), providers=[PROVIDERS["cpu"]])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, {session.get_inputs()[0].name: batch}), strict=True))
    return [(layer, [values[t] for t in boundaries[layer]]) for layer in order if boundaries.get(layer)]
