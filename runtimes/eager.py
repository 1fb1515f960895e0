"""Eager PyTorch: the reference every artifact is compared with, run on a module in memory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.common.errors import DeviceError, PoolkitError
from poolkit.runtimes.base import Engine, LayerOutputs, Reads, Runtime, require_torch_cuda
from poolkit.runtimes.capabilities import (
    DeviceEvents,
    DeviceTimed,
    GraphReplay,
    HasLayerOutputs,
    IdentityModel,
    Preloads,
    Reference,
    ReferenceLoop,
    TimedOpen,
    TimingSettings,
    TorchCudaEvents,
)

if TYPE_CHECKING:
    import numpy as np


class TorchModuleRuntime(Runtime, TimedOpen, DeviceTimed, GraphReplay, ReferenceLoop, Preloads):
    """Shared by every torch backend: a module called under inference_mode on one device.

    torch's intra-op thread count is process-wide: it is set on open and restored on close, so a
    runtime never changes what runs after it.
    """

    engine: Engine = "torch"

    def __init__(self, source: Any, device: str, threads: int | None = None) -> None:
        import torch  # lazily in every torch backend: importing the runtimes must not load torch

        if device == "cuda":
            require_torch_cuda()
            # Full fp32 on CUDA, as on the CPU: TF32 would change the numbers verify compares.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        module = self.load(source, device)  # after the CUDA check: a loader's own error would be a traceback
        self._torch = torch
        self._saved_threads: int | None = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.device = device
        self.provider = f"torch-{device}"
        self.module = module.to(device) if hasattr(module, "to") else module
        self.cuda_graphs = False
        self._cuda: Any = None  # torch.cuda, or a fake in the tests
        self.mode: dict[str, Any] = {"grad": "inference_mode"}

    @classmethod
    def cuda_problem(cls) -> str | None:
        try:
            require_torch_cuda()
        except DeviceError as exc:
            return str(exc).removeprefix("--device cuda: ")
        return None

    def prepare(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> Any:
        if isinstance(batch, tuple):
            return tuple(self._torch.from_numpy(b).to(self.device) for b in batch)
        return self._torch.from_numpy(batch).to(self.device)

    def infer(self, prepared: Any) -> Any:
        out = self._forward(prepared)
        if self.device == "cuda":
            self._torch.cuda.synchronize()
        return out

    def to_numpy(self, outputs: Any) -> list[np.ndarray]:
        outs = outputs if isinstance(outputs, tuple | list) else (outputs,)
        return [o.detach().cpu().numpy() if hasattr(o, "detach") else o for o in outs]  # others: check_outputs says

    def close(self) -> None:
        self.module = None
        if self._saved_threads is not None:
            self._torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    # -- bench's capabilities --------------------------------------------------------------------------
    @classmethod
    def preload(cls) -> None:
        import torch
        import torch.jit  # noqa: F401

    @classmethod
    def open_timed(cls, source: Any, device: str, threads: int | None, settings: TimingSettings) -> Runtime:
        rt = cls(source, device, threads)
        rt.cuda_graphs = settings.cuda_graphs
        if device == "cuda":
            rt.mode["cuda_graph"] = rt.cuda_graphs
        return rt

    def _forward(self, prepared: Any) -> Any:
        with self._torch.inference_mode():
            return self.module(*prepared) if isinstance(prepared, tuple) else self.module(prepared)

    def timed_call(self, prepared: Any) -> Callable[[], Any]:
        """CPU: `infer`. CUDA: the forward pass without `synchronize`, so events bracket the launch."""
        if self.device != "cuda":
            return lambda: self.infer(prepared)
        return lambda: self._forward(prepared)

    def device_events(self) -> DeviceEvents | None:
        return TorchCudaEvents(cuda=self._torch_cuda()) if self.device == "cuda" else None

    def _torch_cuda(self) -> Any:
        return self._cuda if self._cuda is not None else self._torch.cuda

    def fixed_memory(self) -> bool:
        return self.cuda_graphs

    def capture_graph(self, prepared: Any) -> Callable[[], Any] | None:
        if not self.cuda_graphs:
            return None
        return capture_torch_graph(self.module, prepared, self._torch_cuda())

    def refill(self, prepared: Any, batch: np.ndarray | tuple[np.ndarray, ...]) -> None:
        """Copy new data into the prepared tensors (a captured graph reads that memory), then wait for it."""
        tensors = prepared if isinstance(prepared, tuple) else (prepared,)
        arrays = batch if isinstance(batch, tuple) else (batch,)
        for tensor, array in zip(tensors, arrays, strict=True):
            tensor.copy_(self._torch.from_numpy(array))
        if self.device == "cuda":
            self._torch_cuda().synchronize()

    @classmethod
    def load(cls, source: Any, device: str = "cpu") -> Any:
        """The module this runtime calls, from its source: the module itself, or the file loaded."""
        return source

    @classmethod
    def reference_module(cls, source: Any) -> Any | None:
        """What the reference loop times: the module as loaded (None: no plain loop means the same thing)."""
        return cls.load(source)

    @classmethod
    def reference_loop(cls, source: Any, threads: int, batch: np.ndarray, warmup: int, iters: int) -> Reference | None:
        """torch.utils.benchmark's `Timer` on the module, at `threads`, under inference_mode: `warmup` calls,
        then `iters` calls timed one each (`timeit(1)`). One call a sample, as bench samples: a block of
        calls (`blocked_autorange`) takes in the time a loaded machine descheduled the process, which
        made its median up to 2.7x poolkit's on this 2-core VM at load 6 while the fastest calls agreed."""
        import numpy as np
        import torch

        from poolkit.common.capture import captured_output

        module = cls.reference_module(source)
        if module is None:
            return None
        with captured_output():  # its import logs about CUDA_HOME on machines without CUDA
            import torch.utils.benchmark as tb

        timer = tb.Timer(
            stmt="with torch.inference_mode(): module(x)",
            globals={"module": module, "x": torch.from_numpy(batch), "torch": torch},
            num_threads=threads,
        )
        timer.timeit(warmup)
        samples = [timer.timeit(1).median * 1e3 for _ in range(iters)]
        return Reference("torch.utils.benchmark", float(np.median(samples)), iters, min(samples))


def capture_torch_graph(module: Any, static_input: Any, cuda: Any, warmup: int = 3) -> Callable[[], Any]:
    """Capture one forward pass in a CUDA graph; return its replay, which returns the graph's outputs.

    torch's documented recipe, `cuda` being `torch.cuda` (a fake in the tests): warm up on a side
    stream, capture under `cuda.graph(g)`, then every call is `g.replay()` on the same input and
    output memory (new data goes into the input by `refill`).
    """
    import torch

    def forward() -> Any:
        return module(*static_input) if isinstance(static_input, tuple) else module(static_input)

    side = cuda.Stream()
    side.wait_stream(cuda.current_stream())
    with cuda.stream(side), torch.inference_mode():
        for _ in range(warmup):
            forward()
    cuda.current_stream().wait_stream(side)
    graph = cuda.CUDAGraph()
    with cuda.graph(graph), torch.inference_mode():
        static_output = forward()

    def replay() -> Any:
        graph.replay()
        return static_output

    return replay


class EagerRuntime(TorchModuleRuntime, HasLayerOutputs, IdentityModel):
    """The module itself, as PyTorch runs it."""

    name = "eager"
    reads: Reads = "module"

    @classmethod
    def layer_outputs(cls, source: Any, batch: np.ndarray) -> LayerOutputs:
        """Only a chain of layers (an nn.Sequential, as every spec builds) can be run one layer at a
        time; a module with its own forward() (a user's model) may do anything between its layers."""
        import torch

        if not isinstance(source, torch.nn.Sequential):
            raise PoolkitError(
                f"{type(source).__name__} has its own forward(): its layers are not a chain to run one by one"
            )
        return module_layer_outputs(source, batch)

    @classmethod
    def identity_source(cls, folder: Path, sample_shape: tuple[int, ...]) -> Any:
        import torch

        return torch.nn.Identity()


def module_layer_outputs(module: Any, batch: np.ndarray) -> LayerOutputs:
    """Each top-level layer's output (conv1, maxpool1, ...), run in order on the CPU."""
    import torch

    results = []
    x: Any = torch.from_numpy(batch)
    with torch.inference_mode():
        for name, layer in module.named_children():
            x = layer(x)
            outs = x if isinstance(x, tuple) else (x,)
            results.append((name, [o.detach().cpu().numpy() for o in outs]))
    return results
