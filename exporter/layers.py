"""The two modules poolkit adds to torch's own layers: an input cast and a chainable MaxUnpool.

Imported only when a model is built (it imports torch at module level; spec parsing and `zoo --help`
never load it). Both are plain modules at module level, so TorchScript compiles them and both ONNX
exporters trace them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from poolkit.exporter.dtypes import name_of


class InputCast(nn.Module):
    """Casts the model's input to the dtype its parameters hold (CIFAR10 batches arrive as float32).

    The first layer of every model whose dtype is not float32, so every artifact still takes float32
    input. It follows the model through `.to()`, `.double()` and `.half()`: verify's float64 twin of
    a float16 model casts to float64, not back to float16.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        self.dtype = fn(torch.empty(0, dtype=self.dtype)).dtype
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return name_of(self.dtype)


class CastInputs(nn.Module):
    """A model of your own exported with --dtype: its floating inputs cast to that dtype first.

    Wrapped only where it runs or is exported; its weights are saved from `inner`, so weights files keep
    the user's own keys.
    """

    def __init__(self, inner: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = inner
        self.cast = InputCast(dtype)

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.inner(*(self.cast(x) if x.is_floating_point() else x for x in inputs))


class Float32Out(nn.Module):
    """A torch-side precision variant: the model in a lower dtype, float32 in and float32 out.

    As onnxconverter-common's keep_io_types does for ONNX: callers keep feeding float32 and reading
    float32, and the casts at the edges are part of what is exported and timed.
    """

    def __init__(self, inner: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.cast = InputCast(dtype)
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.cast(x)).float()


class CastIn(nn.Module):
    """A torch-side precision variant of a model with several outputs (a pool's values and indices):
    float32 in, its outputs as they come (indices are integers; values stay in the lower dtype)."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.cast = InputCast(dtype)
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner(self.cast(x))


class Autocast(nn.Module):
    """A torch-side autocast variant: the float32 model run under `torch.autocast(device, dtype)`.

    Unlike `.to(dtype)`, the weights stay float32 and autocast picks per op what runs in `dtype`
    (convolutions and matmuls) and what stays float32 (softmax, reductions); floating outputs come
    back float32, integer ones (a pool's indices) as they are. torch.jit.trace and torch.export
    record the casts autocast makes, so the artifact computes what this module computes.
    """

    def __init__(self, inner: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = inner
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> Any:
        with torch.autocast(x.device.type, dtype=self.dtype):
            out = self.inner(x)
        if isinstance(out, tuple):
            return tuple(o.float() if o.is_floating_point() else o for o in out)
        return out.float()

    def extra_repr(self) -> str:
        return f"autocast {name_of(self.dtype)}"


def autocast_variant(module: nn.Module, dtype: str) -> nn.Module:
    """`module` (float32, not copied: autocast changes no weight) run under autocast to `dtype`."""
    from poolkit.exporter.dtypes import torch_dtype

    return Autocast(module, torch_dtype(dtype)).eval()


def precision_variant(module: nn.Module, dtype: str, n_outputs: int = 1) -> nn.Module:
    """A copy of `module` whose parameters and arithmetic are in `dtype`; float32 at the edges.

    A model with several outputs (a pool's indices) keeps its outputs as they come: indices are
    integers, and the values stay in `dtype`.
    """
    import copy

    from poolkit.exporter.dtypes import torch_dtype

    inner = copy.deepcopy(module).to(torch_dtype(dtype)).eval()
    if n_outputs == 1:
        return Float32Out(inner, torch_dtype(dtype)).eval()
    return CastIn(inner, torch_dtype(dtype)).eval()


class _Unpool(nn.Module):
    """MaxUnpool as a chain link: it takes the (values, indices) pair the max pool before it returns.

    torch's MaxUnpool2d takes them as two arguments, which nn.Sequential cannot pass; the sizes are
    stored as lists so TorchScript types them as torch's functional form wants.
    """

    dims = 2

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        self.kernel_size: list[int] = _expand(kernel_size, self.dims)
        self.stride: list[int] = _expand(kernel_size if stride is None else stride, self.dims)
        self.padding: list[int] = _expand(padding, self.dims)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _expand(value: Any, dims: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, tuple | list) else [int(value)] * dims


class MaxUnpool1d(_Unpool):
    dims = 1

    def forward(self, pooled: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.max_unpool1d(pooled[0], pooled[1], self.kernel_size, self.stride, self.padding)


class MaxUnpool2d(_Unpool):
    dims = 2

    def forward(self, pooled: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.max_unpool2d(pooled[0], pooled[1], self.kernel_size, self.stride, self.padding)


class MaxUnpool3d(_Unpool):
    dims = 3

    def forward(self, pooled: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.max_unpool3d(pooled[0], pooled[1], self.kernel_size, self.stride, self.padding)


def convert_user_model(module: nn.Module, dtype: str) -> nn.Module:
    """A model of your own in `dtype` (--dtype): every parameter and buffer converted, as `.to()` does."""
    from poolkit.exporter.dtypes import torch_dtype

    return module.to(torch_dtype(dtype))


def with_input_cast(module: nn.Module, dtype: str) -> nn.Module:
    """`module` as it runs and exports: wrapped in CastInputs when it is not in float32."""
    from poolkit.exporter.dtypes import DEFAULT_DTYPE, torch_dtype

    return module if dtype == DEFAULT_DTYPE else CastInputs(module, torch_dtype(dtype)).eval()


def with_dtype(module: nn.Module, dtype: str) -> nn.Module:
    """A rebuilt model of your own as it was exported with --dtype: converted, inputs cast."""
    from poolkit.exporter.dtypes import DEFAULT_DTYPE

    return module if dtype == DEFAULT_DTYPE else with_input_cast(convert_user_model(module, dtype), dtype)


CHAIN_LAYERS: dict[str, type[nn.Module]] = {
    "MaxUnpool1d": MaxUnpool1d,
    "MaxUnpool2d": MaxUnpool2d,
    "MaxUnpool3d": MaxUnpool3d,
}
