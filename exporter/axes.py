"""Which input axes an artifact leaves open: the one decision, for every format.

- batch: unless `--static-batch`;
- height and width: a spec whose layers take any image size (`models.shape_agnostic`), or a
  user's module whose eager forward runs at a second image size (`runs_at_another_size`), unless
  `--static-shape`;
- channels too for a spec that is channel-agnostic: only pools and activations (no Conv, Linear or
  per-channel PReLU), so the tutorials' 1-channel examples run through its files as they wrote them.
"""

from __future__ import annotations

from typing import Any

from poolkit.exporter.spec import ModelSpec

# Layer kinds whose parameters do not depend on the channel count.
CHANNEL_FREE = frozenset(
    {
        "maxpool", "avgpool", "adaptiveavgpool", "adaptivemaxpool", "relu", "sigmoid", "tanh", "leaky_relu",
        "elu", "softmax", "log_softmax",
    }
)  # fmt: skip
AXIS_NAMES = {0: "batch", 1: "channels", 2: "height", 3: "width"}


def open_axes(batch: bool, spatial: bool, channels: bool = False) -> dict[int, str]:
    """Input axis -> name of the axes an artifact leaves open (NCHW)."""
    wanted = {0: batch, 1: channels, 2: spatial, 3: spatial}
    return {i: AXIS_NAMES[i] for i, is_open in wanted.items() if is_open}


def channel_agnostic(spec: ModelSpec, input_shape: tuple[int, ...]) -> bool:
    """Images in (CxHxW), and every layer a pool or an activation (a PReLU with one parameter too)."""
    if len(input_shape) != 3 or not spec.layers:
        return False
    for layer in spec.layers:
        if layer.kind == "prelu" and int(layer.kwargs().get("num_parameters", 1)) == 1:
            continue
        if layer.kind not in CHANNEL_FREE:
            return False
    return True


def another_size(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The second image size a user's module is tried at: three quarters of each side (at least 1)."""
    c, h, w = shape
    return (c, max(1, h * 3 // 4), max(1, w * 3 // 4))


def runs_at_another_size(module: Any, shapes: list[tuple[int, ...]]) -> bool:
    """Whether a user's module (one image input) runs eagerly at a second image size: then its
    artifacts can leave height and width open. Anything it raises means no."""
    import torch

    if len(shapes) != 1 or len(shapes[0]) != 3:
        return False
    try:
        with torch.inference_mode():
            module(torch.rand((2, *another_size(shapes[0])), generator=torch.Generator().manual_seed(0)))
    except Exception:  # noqa: BLE001 - a module that refuses another size keeps its size
        return False
    return True
