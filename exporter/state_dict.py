"""Loading a state dict into a user's module (`--weights`, and rebuilding a user's model for verify).

A weights file is data: it is read with `weights_only=True`, so it can never run code, and every
mismatch with the module is named before anything is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from poolkit.common.errors import DataError, one_line

if TYPE_CHECKING:
    from torch import nn


def load_weights(model: nn.Module, weights: Path, what: str) -> None:
    """A state dict into `model`; `weights_only=True`: a weights file is data and must never run code."""
    import torch

    weights = Path(weights)
    if not weights.is_file():
        raise DataError(f"weights file not found: {weights}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a broken or unsafe file
        raise DataError(f"cannot read weights {weights}: {one_line(exc)}") from None
    if not isinstance(state, dict):
        raise DataError(f"weights {weights} hold a {type(state).__name__}, not a state dict")
    own = model.state_dict()
    problems = [
        f"{k} is {tuple(state[k].shape)}, the model's is {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems += [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(f"weights {weights} do not fit {what}: {'; '.join(problems[:3])}{more}")
    model.load_state_dict(state)
