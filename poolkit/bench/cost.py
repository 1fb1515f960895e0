"""FLOPs and bytes a model needs for one batch, so a timing can be read against the machine's limits.

Counting rules (fp32, no fusion assumed):
- Conv2d: 2 * (C_in / groups) * kH * kW multiply-adds per output element, plus 1 for the bias.
- Linear: 2 * in_features per output element, plus 1 for the bias.
- Pools: one operation per window element per output (max or add); adaptive pools: one per input.
- Activations: one operation per element (ReLU, LeakyReLU, PReLU); four for Sigmoid, Tanh, ELU;
  five for Softmax / LogSoftmax (max, subtract, exp, sum, divide). These are conventions, stated.
- Bytes: each layer reads its input and its parameters and writes its output once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

ELEMENTWISE_OPS = {
    "ReLU": 1,
    "LeakyReLU": 1,
    "PReLU": 1,
    "Sigmoid": 4,
    "Tanh": 4,
    "ELU": 4,
    "Softmax": 5,
    "LogSoftmax": 5,
}


@dataclass
class Cost:
    flops: int | None  # None: the model cannot be run on one zero input to count them
    bytes: int | None


def _numel(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def layer_flops(module: Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """Operations of one leaf layer (a torch module, read through its attributes) for one call."""
    kind = type(module).__name__
    out = _numel(out_shape)
    if kind == "Conv2d":
        kh, kw = _pair(module.kernel_size)
        per_output = 2 * (module.in_channels // module.groups) * kh * kw
        return out * (per_output + (1 if module.bias is not None else 0))
    if kind == "Linear":
        return out * (2 * module.in_features + (1 if module.bias is not None else 0))
    if kind in ("MaxPool2d", "AvgPool2d"):
        kh, kw = _pair(module.kernel_size)
        return out * kh * kw
    if kind in ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d"):
        return _numel(in_shape)
    return out * ELEMENTWISE_OPS.get(kind, 0)


def model_cost(model: nn.Module, sample_shape: tuple[int, ...], batch: int) -> Cost:
    """Run one batch of zeros through the model, recording each leaf layer's shapes as it runs.

    Hooks, not a walk over the children, so a user's own forward() (a flatten between layers, a
    layer used twice) is counted as it really runs. A model that cannot run on one zero input (it
    takes several) has no cost figures: None, shown as a dash, never a made-up number.
    """
    import torch  # lazily: an ONNX Runtime worker never needs torch; only the parent counts costs

    flops = 0
    moved = 0

    def count(layer: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        nonlocal flops, moved
        x = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if x is None:
            return
        outs = out if isinstance(out, tuple | list) else (out,)
        out_bytes = sum(o.numel() * o.element_size() for o in outs if isinstance(o, torch.Tensor))
        param_bytes = sum(p.numel() * p.element_size() for p in layer.parameters())
        flops += layer_flops(layer, tuple(x.shape), tuple(outs[0].shape))
        moved += _numel(x.shape) * 4 + param_bytes + out_bytes

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [leaf.register_forward_hook(count) for leaf in leaves]
    try:
        with torch.inference_mode():
            model(torch.zeros((batch, *sample_shape)))
    except (TypeError, RuntimeError, ValueError, IndexError):
        return Cost(flops=None, bytes=None)
    finally:
        for handle in handles:
            handle.remove()
    return Cost(flops=flops, bytes=moved)
