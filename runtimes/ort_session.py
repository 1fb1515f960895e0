"""ONNX Runtime sessions that really run where they were asked to: options, providers, the CUDA probe.

ONNX Runtime quietly falls back to the CPU provider when CUDA cannot load; `create_session` checks
`session.get_providers()` and refuses instead. Every poolkit session (verify, bench, show, sweep's
blame) is made here, so that refusal has one door. Also here: the Identity model the CUDA probe and
bench's overhead figure run, and reading a session's profile trace.
"""

from __future__ import annotations

import contextlib
import functools
import re
from pathlib import Path
from typing import Any

from poolkit.common.capture import captured_output
from poolkit.common.errors import DeviceError, PoolkitError, one_line

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def session_options(threads: int | None, spinning: bool = False) -> Any:
    """Threads set (one inter-op thread), a quiet log, and intra-op spinning off unless asked for:
    spinning threads slow down torch in the same process (onnxruntime issue 13808); bench's isolated
    workers, alone in their process, keep ORT's default (on)."""
    import onnxruntime as ort  # lazily here and below: importing the runtimes must not load onnxruntime

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
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in log.splitlines()]
    hits = [ln for ln in lines if provider in ln or "Failed" in ln] or [ln for ln in lines if ln]
    if not hits:
        return ""
    text = hits[-1]
    text = text.split("] ", 1)[-1] if text.startswith(("[E", "[W", "20")) else text
    text = text.split(" Please install", 1)[0]  # the rest is a link to the requirements page
    return text if len(text) <= 240 else text[:239] + "…"


@functools.cache
def cuda_provider_problem(provider: str | None = None) -> str | None:
    """Why ONNX Runtime's CUDA provider cannot run here (None when it can), checked on a tiny model.

    Cached: the answer cannot change within a process, and the CLI preflight, verify and bench all ask.
    """
    import onnx

    model = identity_model([1])
    onnx.checker.check_model(model)
    try:
        create_session(model.SerializeToString(), "cuda", None, provider)
    except PoolkitError as exc:
        return str(exc)
    return None


def kernel_times(events: list[dict[str, Any]]) -> dict[str, float]:
    """Kernel microseconds per op type in an ONNX Runtime profile (its JSON trace).

    Kernel events are `cat: "Node"` with a name ending in `_kernel_time`; their `args.op_name` is the
    op type and `dur` is in microseconds.
    """
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = str(e.get("args", {}).get("op_name", "?"))
            by_op[op] = by_op.get(op, 0.0) + float(e.get("dur", 0))
    return by_op


def identity_model(dims: list[int | str]) -> Any:
    """An ONNX Identity (input -> output) of float tensors of shape `dims`; a name is a dynamic axis."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    return model


def write_identity_model(path: Path, sample_shape: tuple[int, ...]) -> Path:
    """An ONNX Identity with a dynamic batch: timing it measures ONNX Runtime's per-call overhead."""
    import onnx

    onnx.save(identity_model(["batch", *sample_shape]), str(path))
    return path
