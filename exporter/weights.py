"""The state dict saved beside a model's artifacts, written only when its tensors changed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from poolkit.common.files import sha256_file, write_bytes_atomic
from poolkit.exporter.transaction import staged_name

if TYPE_CHECKING:
    from torch import nn


def weights_filename(name: str) -> str:
    return f"{name}.weights.pt"


def stage_weights(module: nn.Module, path: Path) -> tuple[str, Path | None]:
    """The sha256 the weights at `path` will have, and the staged file holding them (None when
    `path` already holds exactly these tensors); the caller renames it into place with the rest.

    torch.save stamps every file with a random serialization id, so rewriting equal weights would
    change the hash that the model's other records keep: equal weights are not rewritten.
    """
    import torch  # lazily: `poolkit --help` imports the exporter and must stay instant

    if weights_match(module, path):
        return sha256_file(path), None
    buffer = io.BytesIO()  # torch.save into a file aborts the whole process on a full disk
    torch.save(module.state_dict(), buffer)
    staged = staged_name(path)
    write_bytes_atomic(staged, buffer.getvalue())
    return sha256_file(staged), staged


def weights_match(module: nn.Module, path: Path) -> bool:
    """Whether `path` already holds exactly this module's tensors (a user's weights can change without
    its spec changing, so a cached user model needs this check too)."""
    import torch  # lazily, as above

    if not path.is_file():
        return False
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable or foreign: not a match
        return False
    state = module.state_dict()
    return (
        isinstance(saved, dict)
        and saved.keys() == state.keys()
        and all(
            isinstance(saved[k], torch.Tensor) and saved[k].dtype == v.dtype and torch.equal(saved[k], v)
            for k, v in state.items()
        )
    )
