"""OpenVINO on poolkit's ONNX files (optional: `pip install 'poolkit[openvino]'`), on the CPU.

OpenVINO chooses its own inference precision per device: on CPUs with AMX or AVX512-BF16 the
default is bf16, elsewhere f32 (`core.get_property("CPU", "INFERENCE_PRECISION_HINT")`). So every
row says what the compiled model really used (`precision`, and in `provider`, e.g.
`openvino-CPU-bf16`), read back from the compiled model, never assumed:
- `openvino`: OpenVINO's default for this CPU, whatever it is;
- `openvino-f32`: precision pinned to f32 (`INFERENCE_PRECISION_HINT=f32`), what ONNX Runtime computes;
- `openvino-bf16`: bf16 asked for; refused where OpenVINO would silently run f32 instead.
The thread count is set (`INFERENCE_NUM_THREADS`) and read back the same way. So is its mode: poolkit
times one synchronous infer request in OpenVINO's LATENCY hint (one stream), which is how a user's
`compiled(x)` loop runs; benchmark_app's default is the THROUGHPUT hint (several streams and requests
in flight), a different figure. Every row carries `mode` (hint, streams, requests) to say so.
OpenVINO's "GPU" is an Intel GPU, not CUDA: CUDA rows are refused by the registry (devices = cpu).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from poolkit.common.errors import PoolkitError
from poolkit.runtimes.base import Reads, Runtime
from poolkit.runtimes.capabilities import IdentityModel, Preloads, Reference, ReferenceLoop, plain_loop
from poolkit.runtimes.ort_session import write_identity_model

if TYPE_CHECKING:
    import numpy as np

EXTRA = "pip install 'poolkit[openvino]'"
PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}  # OpenVINO's element type -> poolkit's name


def import_openvino() -> Any:
    """OpenVINO, or a one-line error naming the extra that installs it."""
    try:
        import openvino  # lazily: optional, and heavy
    except ImportError:
        raise PoolkitError(f"runtime openvino needs OpenVINO, which is not installed: {EXTRA}") from None
    return openvino


def precision_name(element_type: Any) -> str:
    """poolkit's name for an OpenVINO element type (<Type: 'bfloat16'> -> bf16)."""
    short = getattr(element_type, "get_type_name", lambda: str(element_type))()
    return PRECISIONS.get(short, short)


class OpenVinoRuntime(Runtime, IdentityModel, ReferenceLoop, Preloads):
    name = "openvino"
    reads: Reads = "onnx"
    devices = ("cpu",)
    engine = "openvino"
    precision_hint: ClassVar[str | None] = None  # None: OpenVINO's default for the CPU

    def __init__(self, path: Path, device: str, threads: int | None = None) -> None:
        ov = import_openvino()
        core = ov.Core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}  # said, not left to the version's default
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if self.precision_hint:
            config["INFERENCE_PRECISION_HINT"] = self.precision_hint
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.precision = precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        wanted = PRECISIONS.get(self.precision_hint or "", self.precision)
        if wanted != self.precision:
            raise PoolkitError(
                f"runtime {self.name}: OpenVINO {ov.__version__} runs {self.precision} on this CPU, not {wanted} "
                f"(its CPU capabilities: {', '.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))})"
            )
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS")) or None
        self.device = device
        self.provider = f"openvino-CPU-{self.precision}"
        self.request = self.compiled.create_infer_request()
        self.n_inputs = len(self.compiled.inputs)
        self.mode = {
            "performance_hint": str(self.compiled.get_property("PERFORMANCE_HINT")),
            "streams": int(self.compiled.get_property("NUM_STREAMS")),
            "infer_requests": 1,
            "calls": "synchronous",
        }

    @classmethod
    def cuda_problem(cls) -> str | None:
        return "OpenVINO runs on Intel devices, not CUDA"

    def prepare(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> Any:
        arrays = batch if isinstance(batch, tuple) else (batch,)
        if len(arrays) != self.n_inputs:
            raise PoolkitError(f"the ONNX file takes {self.n_inputs} input(s), given {len(arrays)}")
        return dict(enumerate(arrays))

    def infer(self, prepared: Any) -> Any:
        return self.request.infer(prepared)  # synchronous: returns when the outputs are ready

    def to_numpy(self, outputs: Any) -> list[np.ndarray]:
        return [value.copy() for value in outputs.to_tuple()]  # the request reuses its output buffers

    def close(self) -> None:
        self.request = self.compiled = None

    @classmethod
    def preload(cls) -> None:
        import_openvino()

    @classmethod
    def reference_loop(cls, source: Any, threads: int, batch: np.ndarray, warmup: int, iters: int) -> Reference:
        """The loop a user would write, nothing of poolkit: `ov.compile_model` with the same precision
        hint and threads, `compiled(batch)` (a fresh infer request each call), perf_counter around each."""
        ov = import_openvino()
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if cls.precision_hint:
            config["INFERENCE_PRECISION_HINT"] = cls.precision_hint
        compiled = ov.compile_model(str(source), "CPU", config)
        return plain_loop("a plain compiled_model(x) loop", lambda: compiled(batch), warmup, iters)

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Path:
        return write_identity_model(Path(folder) / "identity.onnx", sample_shape)


class OpenVinoF32Runtime(OpenVinoRuntime):
    name = "openvino-f32"
    precision_hint: ClassVar[str | None] = "f32"


class OpenVinoBf16Runtime(OpenVinoRuntime):
    name = "openvino-bf16"
    precision_hint: ClassVar[str | None] = "bf16"
