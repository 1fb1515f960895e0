"""ONNX Runtime on the CPU or CUDA execution provider, fed through IO binding.

The same IO-binding code runs on both devices (device type "cpu" or "cuda"), so the CUDA path's
logic is exercised on machines without a GPU. ONNX Runtime quietly falls back to the CPU
provider when CUDA cannot load; we check `session.get_providers()` and refuse instead.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from poolkit.common.capture import captured_output
from poolkit.common.errors import DeviceError, PoolkitError
from poolkit.runtimes.base import LayerOutputs, Reads, Runtime

if TYPE_CHECKING:
    import numpy as np

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def session_options(threads: int | None, spinning: bool = False) -> Any:
    """Threads set (one inter-op thread), a quiet log, and intra-op spinning off unless asked for:
    spinning threads slow down torch in the same process (onnxruntime issue 13808); bench's isolated
    workers, alone in their process, keep ORT's default (on)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3  # errors only; we report what matters ourselves
    return opts


def preload_cuda_libraries() -> None:
    """Let onnxruntime find the CUDA/cuDNN libraries that the torch wheels installed."""
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        # A missing library shows up later as a provider that did not load, with its reason.
        with captured_output(), contextlib.suppress(Exception):
            ort.preload_dlls()


def create_session(
    path: str | bytes,
    device: str,
    threads: int | None,
    provider: str | None = None,
    *,
    options: Any = None,
    provider_options: dict[str, str] | None = None,
) -> Any:
    """An InferenceSession that really runs on `device` (with `provider` when given), or a DeviceError.

    `options` replaces `session_options(threads)`; `provider_options` go to the device's provider
    (bench: a CUDA stream, CUDA graphs).
    """
    import onnxruntime as ort

    wanted = provider or PROVIDERS[device]
    if wanted not in ort.get_available_providers():
        raise DeviceError(
            f"onnxruntime {ort.__version__} has no {wanted} (installed providers: "
            f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu"
        )
    if device == "cuda":
        preload_cuda_libraries()
    first: Any = (wanted, provider_options) if provider_options else wanted
    providers = [first] if wanted == PROVIDERS["cpu"] else [first, PROVIDERS["cpu"]]
    opts = options if options is not None else session_options(threads)
    with captured_output() as out:
        try:
            session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001
            from poolkit.common.errors import one_line

            what = path if isinstance(path, str) else "the model"
            raise PoolkitError(f"onnxruntime cannot load {what}: {one_line(exc)}", exit_code=1) from None
    active = session.get_providers()
    if wanted not in active:
        said = _provider_reason(out.text, wanted)
        raise DeviceError(
            f"onnxruntime's {wanted} did not load, the session would run on {', '.join(active)} only"
            + (f" ({said})" if said else " (no GPU or CUDA/cuDNN libraries not found)")
        )
    return session


def _provider_reason(log: str, provider: str) -> str:
    """The sentence of ORT's log that says why a provider failed, without colour codes."""
    import re

    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in log.splitlines()]
    hits = [ln for ln in lines if provider in ln or "Failed" in ln] or [ln for ln in lines if ln]
    if not hits:
        return ""
    text = hits[-1]
    text = text.split("] ", 1)[-1] if text.startswith(("[E", "[W", "20")) else text
    text = text.split(" Please install", 1)[0]  # the rest is a link to the requirements page
    return text if len(text) <= 240 else text[:239] + "…"


class OnnxRuntime(Runtime):
    """One ONNX file in one session; `prepare` binds the batch on the device, `infer` runs it."""

    name = "onnxruntime"
    reads: ClassVar[Reads] = "onnx"
    engine = "onnxruntime"
    has_layer_outputs = True
    provider_name: ClassVar[str | None] = None  # None: the provider of the device (CPU or CUDA)
    # Bench binds outputs allocated once (see prepare); verify and the rest let each run allocate its own.
    preallocate_outputs: ClassVar[bool] = False

    def __init__(self, path: Path, device: str, threads: int | None = None) -> None:
        self._start(create_session(str(path), device, threads, self.provider_name), device)

    def _start(self, session: Any, device: str) -> None:
        """What every ONNX Runtime session gives the runtime: provider, threads, input and output names."""
        import onnxruntime as ort

        self._ort = ort
        self.device = device
        self.session = session
        self.provider = self.session.get_providers()[0]
        self.threads = self.session.get_session_options().intra_op_num_threads or None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_name = self.input_names[0]
        self.output_names = [o.name for o in self.session.get_outputs()]

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
        arrays = batch if isinstance(batch, tuple) else (batch,)
        if len(arrays) != len(self.input_names):
            raise PoolkitError(
                f"the ONNX file takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}), given {len(arrays)}"
            )
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
        return binding, values, outputs

    def infer(self, prepared: Any) -> Any:
        binding = prepared[0]
        self.session.run_with_iobinding(binding)  # returns when the device is done
        return binding

    def to_numpy(self, outputs: Any) -> list[np.ndarray]:
        return list(outputs.copy_outputs_to_cpu())

    def close(self) -> None:
        self.session = None

    @classmethod
    def layer_outputs(cls, source: Any, batch: np.ndarray) -> LayerOutputs:
        return onnx_layer_outputs(Path(source), batch)

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Path:
        return write_identity_model(Path(folder) / "identity.onnx", sample_shape)


def _node_layer(node: Any) -> str | None:
    """The top-level module a node came from: dynamo's name_scopes metadata, or legacy's `/conv1/Conv`."""
    import ast

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


@functools.cache
def cuda_provider_problem(provider: str | None = None) -> str | None:
    """Why ONNX Runtime's CUDA provider cannot run here (None when it can), checked on a tiny model.

    Cached: the answer cannot change within a process, and the CLI preflight, verify and bench all ask.
    """
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    try:
        create_session(model.SerializeToString(), "cuda", None, provider)
    except PoolkitError as exc:
        return str(exc)
    return None


def write_identity_model(path: Path, sample_shape: tuple[int, ...]) -> Path:
    """An ONNX Identity with a dynamic batch: timing it measures ONNX Runtime's per-call overhead."""
    import onnx
    from onnx import TensorProto, helper

    dims: list[int | str] = ["batch", *sample_shape]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    onnx.save(model, str(path))
    return path
