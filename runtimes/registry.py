"""The one place that knows which runtimes exist: a name -> class dict, and how to open one.

Adding a runtime is one new file beside this one plus one line in `RUNTIMES`. Every command
(verify, bench, show, sweep) and the CLI's option parsing read names, formats and devices from here.
Backend modules import nothing heavy at the top, so importing this costs nothing.
"""

from __future__ import annotations

from typing import Any

from poolkit.common.errors import DeviceError, PoolkitError
from poolkit.exporter.formats.registry import FORMATS
from poolkit.runtimes.aoti import AotiRuntime
from poolkit.runtimes.base import DEVICES, LayerOutputs, Runtime
from poolkit.runtimes.capabilities import HasLayerOutputs
from poolkit.runtimes.compiled import CompiledRuntime
from poolkit.runtimes.eager import EagerRuntime
from poolkit.runtimes.eager_cl import ChannelsLastRuntime
from poolkit.runtimes.export_program import ExportedProgramRuntime
from poolkit.runtimes.onnxruntime import OnnxRuntime
from poolkit.runtimes.openvino import OpenVinoBf16Runtime, OpenVinoF32Runtime, OpenVinoRuntime
from poolkit.runtimes.tensorrt import TensorRTRuntime
from poolkit.runtimes.torchscript import TorchScriptRuntime

RUNTIMES: dict[str, type[Runtime]] = {
    cls.name: cls for cls in (EagerRuntime, TorchScriptRuntime, OnnxRuntime, CompiledRuntime, TensorRTRuntime)
}
RUNTIMES[ChannelsLastRuntime.name] = ChannelsLastRuntime
RUNTIMES[ExportedProgramRuntime.name] = ExportedProgramRuntime
RUNTIMES[AotiRuntime.name] = AotiRuntime
RUNTIMES[OpenVinoRuntime.name] = OpenVinoRuntime
RUNTIMES[OpenVinoF32Runtime.name] = OpenVinoF32Runtime
RUNTIMES[OpenVinoBf16Runtime.name] = OpenVinoBf16Runtime
DEFAULT_RUNTIMES = ("eager", "torchscript", "onnxruntime")
# Spellings of earlier releases, accepted (and not shown in --help) for one release.
ALIASES = {"onnx": "onnxruntime", "ort": "onnxruntime", "ts": "torchscript", "trt": "tensorrt"}


def runtime_class(name: str) -> type[Runtime]:
    """The class registered under `name` (or one of its old spellings); unknown names are a usage error."""
    cls = RUNTIMES.get(ALIASES.get(name, name))
    if cls is None:
        raise PoolkitError(f"unknown runtime '{name}' (known: {', '.join(RUNTIMES)})")
    return cls


def canonical_runtime(name: str) -> str:
    return runtime_class(name).name


def open_runtime(name: str, source: Any, device: str, threads: int | None = None) -> Runtime:
    """Open runtime `name` on `source` (a module or a file, as the class `reads`) on `device`.

    Use it as a context manager. Raises DeviceError when that device cannot really run it.
    """
    cls = runtime_class(name)
    if device not in DEVICES:
        raise PoolkitError(f"unknown device '{device}' ({' or '.join(DEVICES)})")
    if device not in cls.devices:
        raise DeviceError(f"the {cls.name} runtime runs on --device {' or '.join(cls.devices)} only")
    return cls(source, device, threads)


def has_layer_outputs(name: str) -> bool:
    """Whether runtime `name` can show each layer's output (the `HasLayerOutputs` capability)."""
    return issubclass(runtime_class(name), HasLayerOutputs)


def layer_outputs(name: str, source: Any, batch: Any) -> LayerOutputs:
    """Each top-level layer's output of `source` as runtime `name` runs it, on the CPU (verify's divergence finder)."""
    cls = runtime_class(name)
    if not issubclass(cls, HasLayerOutputs):
        raise PoolkitError(f"runtime '{cls.name}' cannot report layer outputs")
    return cls.layer_outputs(source, batch)


def cuda_problem(names: list[str] | tuple[str, ...]) -> str | None:
    """Why CUDA rows cannot run for these runtimes, or None: torch's CUDA and/or ORT's CUDA provider."""
    problems: list[str] = []
    for name in names:
        problem = runtime_class(name).cuda_problem()
        if problem and problem not in problems:
            problems.append(problem)
    return "; ".join(problems) or None


def require_cuda(names: list[str] | tuple[str, ...], asked_by: str = "--device cuda") -> None:
    """No silent fallback: CUDA asked for where it cannot run is a DeviceError (exit 2) naming the missing piece."""
    problem = cuda_problem(names)
    if problem:
        raise DeviceError(f"{asked_by}: {problem}")


def formats_read(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The artifact formats these runtimes read, in order (eager and the like read a module: none)."""
    return tuple(dict.fromkeys(RUNTIMES[n].reads for n in names if n in RUNTIMES and RUNTIMES[n].reads in FORMATS))


def reader_of(fmt: str) -> str:
    """The runtime that runs artifacts of format `fmt` by default (the first of DEFAULT_RUNTIMES, else of RUNTIMES)."""
    for name in (*DEFAULT_RUNTIMES, *RUNTIMES):
        if RUNTIMES[name].reads == fmt:
            return name
    raise PoolkitError(f"no runtime reads {fmt} files (runtimes: {', '.join(RUNTIMES)})")
