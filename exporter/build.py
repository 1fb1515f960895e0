"""Turn a `ModelSpec` into a Tudui-style `nn.Module` with seeded, reproducible weights."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.common.errors import SpecError, one_line
from poolkit.common.limits import MAX_PARAMETERS, check_batch, check_sample
from poolkit.exporter.spec import UNPOOL_OF, LayerSpec, ModelSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_SEED = 0


def _tudui_class() -> type[nn.Module]:
    from torch import nn

    class Tudui(nn.Sequential):
        """The seeds' `Tudui(nn.Module)`: named layers (conv1, maxpool1, ...) run in order.

        A Sequential subclass so that TorchScript scripts it and verify can run a prefix of it
        to find the first layer that diverges.
        """

    return Tudui


def build_layer(layer: LayerSpec) -> nn.Module:
    """One torch layer; a constructor that rejects the values is a SpecError naming the layer."""
    from torch import nn

    from poolkit.exporter.dtypes import torch_dtype
    from poolkit.exporter.layers import CHAIN_LAYERS  # imports torch: loaded only when a model is built

    name = layer.layer_kind.torch_name
    cls = CHAIN_LAYERS.get(name) or getattr(nn, name)
    kwargs = layer.kwargs()
    if "dtype" in kwargs:
        kwargs["dtype"] = torch_dtype(kwargs["dtype"])
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise SpecError(f"'{layer.label}': {one_line(exc).split(': ', 1)[-1]}") from None


def build_model(
    spec: ModelSpec, input_shape: tuple[int, ...], seed: int = DEFAULT_SEED, dtype: str | None = None
) -> nn.Module:
    """Build the model in eval mode, checking that each layer accepts what the previous one gives.

    The weights come from `torch.manual_seed(seed)`, so the same spec and seed give the same
    numbers on any machine; the exporter saves them anyway next to the artifacts. `dtype` (--dtype)
    converts the whole model after it is built; a model not in float32 starts with an InputCast,
    so it still takes CIFAR10's float32 batches.
    """
    import torch

    from poolkit.exporter.dtypes import DEFAULT_DTYPE, torch_dtype
    from poolkit.exporter.layers import InputCast

    check_sample(tuple(input_shape))
    check_parameters(spec)
    counts: dict[str, int] = {}
    named: OrderedDict[str, torch.nn.Module] = OrderedDict()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in spec.layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
            named[f"{layer.kind}{counts[layer.kind]}"] = build_layer(layer)
    wanted = dtype or spec.dtype
    if wanted != DEFAULT_DTYPE:
        named = OrderedDict([("cast_in", InputCast(torch_dtype(wanted))), *named.items()])
    model = _tudui_class()(named).eval()
    if dtype is not None:
        model = model.to(torch_dtype(dtype))
    check_chain(spec, model, input_shape)
    return model


def model_dtype(spec: ModelSpec, dtype: str | None) -> str:
    """The dtype a spec model is built in: --dtype, else the spec's own."""
    return dtype or spec.dtype


def check_parameters(spec: ModelSpec) -> None:
    """Refuse a spec whose weights alone would not fit, before torch allocates them."""
    total = 0
    for layer in spec.layers:
        kw = layer.kwargs()
        if layer.kind == "conv":
            k = kw["kernel_size"] if isinstance(kw["kernel_size"], tuple) else (kw["kernel_size"],) * 2
            groups = max(int(kw.get("groups", 1)), 1)
            total += kw["in_channels"] * kw["out_channels"] * abs(k[0] * k[1]) // groups + kw["out_channels"]
        elif layer.kind == "linear":
            total += kw["in_features"] * kw["out_features"] + kw["out_features"]
        if total > MAX_PARAMETERS:
            raise SpecError(f"'{layer.label}': the model would have over {MAX_PARAMETERS:,} parameters (the limit)")


def check_chain(spec: ModelSpec, model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Run one zero sample through the layers one by one; the first that refuses is named."""
    import torch

    x: Any = torch.zeros((1, *input_shape))
    children = list(model.children())
    if len(children) > len(spec.layers):  # the InputCast of a model not in float32
        x, children = children[0](x), children[1:]
    pooled: tuple[int, ...] = ()  # what the last max pool took: its indices point into a tensor this size
    with torch.inference_mode():
        for layer, module in zip(spec.layers, children, strict=True):
            shape = tuple((x[0] if isinstance(x, tuple) else x).shape)  # a pool's (values, indices) before an unpool
            kw = layer.kwargs()
            if layer.kind == "conv" and (len(shape) != 4 or shape[1] != kw["in_channels"]):
                got = f"{shape[1]} channels" if len(shape) == 4 else f"a {len(shape)}-d tensor {shape}"
                raise SpecError(f"'{layer.label}' expects in_channels={kw['in_channels']} but gets {got}")
            if layer.kind == "linear" and shape[-1] != kw["in_features"]:
                raise SpecError(
                    f"'{layer.label}' expects in_features={kw['in_features']} but gets {shape[-1]}"
                    f" (input to it has shape {shape})"
                )
            try:
                x = module(x)
            except (RuntimeError, ValueError, IndexError) as exc:
                raise SpecError(f"'{layer.label}' cannot take input of shape {shape}: {_reason(exc)}") from None
            if layer.kind in UNPOOL_OF:
                check_unpool(layer, pooled, tuple(x.shape))
            pooled = shape


def check_unpool(layer: LayerSpec, pooled: tuple[int, ...], out: tuple[int, ...]) -> None:
    """MaxUnpool's output must hold every position its pool can pick: torch checks this only on data
    (zeros pass, real images fail with "Found an invalid max index"), so poolkit checks the sizes."""
    spatial = len(out) - 2
    if any(o < p for o, p in zip(out[2:], pooled[-spatial:], strict=True)):
        size, took = "x".join(map(str, out[2:])), "x".join(map(str, pooled[-spatial:]))
        raise SpecError(
            f"'{layer.label}' gives {size}, smaller than the {took} its pool took: the pool's indices can point"
            " outside it (torch fails on such input); change the input size, or the pool's kernel/stride"
        )


def _reason(exc: BaseException) -> str:
    return one_line(exc).split(": ", 1)[-1]


def output_shapes(model: nn.Module, input_shape: tuple[int, ...], batch: int) -> list[tuple[int, ...]]:
    """Shapes of every output for a batch (several when a pool returns indices).

    Run on one sample, every layer's output recorded: a batch whose activations anywhere in the
    model exceed the batch limit is refused naming it (a wide conv at --batch-size 65536 would ask
    the allocator for 100 GB), and the shapes for `batch` follow from the sample's.
    """
    import torch

    seen: list[tuple[int, ...]] = []

    def record(_module: Any, _inputs: Any, output: Any) -> None:
        outs = output if isinstance(output, tuple) else (output,)
        seen.extend(tuple(o.shape[1:]) for o in outs if isinstance(o, torch.Tensor) and o.dim() > 0)

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    try:
        with torch.inference_mode():
            out = model(torch.zeros((1, *input_shape)))
    finally:
        for hook in hooks:
            hook.remove()
    for shape in seen:
        check_batch(batch, shape)
    outs = out if isinstance(out, tuple) else (out,)
    return [(batch, *o.shape[1:]) for o in outs]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rebuild_model(
    spec_text: str, sample_shape: tuple[int, ...], seed: int, weights: Path | None, dtype: str | None = None
) -> nn.Module:
    """The exact module that was exported: same spec, seed and --dtype, weights loaded from the saved file.

    `weights_only=True`: a weights file is data, and must never be able to run code.
    """
    import torch

    from poolkit.exporter.spec import parse_spec

    model = build_model(parse_spec(spec_text), sample_shape, seed=seed, dtype=dtype)
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()
