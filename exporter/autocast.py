"""Whether an autocast variant's file really computes under autocast: run once at export, never trusted blind.

`torch.autocast` is a context of the Python process, not a property of a module: an exporter that
does not record the casts it makes writes a float32 file (or one that cannot run), and nothing in
the file says so. So after a `bf16-autocast` / `fp16-autocast` artifact is written, it is loaded as
its runtime would load it and run on the export's example, and must give what the module under
autocast gives in eager, not what float32 gives. Measured with torch 2.14.1 on the CPU:
`torch.jit.trace` records the casts (`aten::to` before every conv and linear), torch.export records
a `wrap_with_autocast` region that AOTInductor compiles; `torch.jit.script` compiles the context
but cannot run it (with the device taken from the input, as `layers.Autocast` does: "Autocast
device argument must be a constant"; with a constant "cpu" it makes no casts: "Input type
(c10::BFloat16) and bias type (float) should be the same"), so poolkit traces TorchScript autocast
variants, and a scripted one is a failed record naming `--method trace`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poolkit.common.capture import captured_output
from poolkit.common.errors import PoolkitError, one_line


def _load_torchscript(path: Path) -> Callable[[Any], Any]:
    import torch  # lazily, as every torch import of the exporter: `poolkit --help` stays instant

    return torch.jit.load(str(path), map_location="cpu")


def _load_pt2(path: Path) -> Callable[[Any], Any]:
    import torch

    return torch.export.load(str(path)).module()


def _load_aoti(path: Path) -> Callable[[Any], Any]:
    from torch._inductor import aoti_load_package

    return aoti_load_package(str(path))


LOADERS: dict[str, Callable[[Path], Callable[[Any], Any]]] = {
    "torchscript": _load_torchscript,
    "pt2": _load_pt2,
    "aoti": _load_aoti,
}
HINTS = {"torchscript": " (torch.jit.script keeps no CPU autocast: export it with --method trace)"}


def _first(out: Any) -> Any:
    return (out[0] if isinstance(out, tuple | list) else out).float()


def check_captured(fmt: str, path: Path, module: Any, example: Any, precision: str) -> float:
    """Raise PoolkitError unless the file at `path` computes what `module` (an `Autocast`) does; returns
    the largest difference from eager under autocast (0.0 where the casts are the same)."""
    import torch

    load = LOADERS.get(fmt)
    if load is None:
        raise PoolkitError(f"{precision} {fmt}: poolkit cannot check that this format captures autocast")
    args = example if isinstance(example, tuple) else (example,)
    with torch.inference_mode():
        want, fp32 = _first(module(*args)), _first(module.inner(*args))
        try:
            # Loaded from a copy named as the format names its files (aoti_load_package wants .pt2),
            # which stays until the run is done.
            with tempfile.TemporaryDirectory(prefix=".autocast-check-") as tmp, captured_output():
                copy = Path(tmp) / "model.pt2"
                shutil.copyfile(path, copy)
                got = _first(load(copy)(*args))
        except Exception as exc:  # noqa: BLE001 - the exporter wrote a file that cannot run: its reason
            raise PoolkitError(
                f"the {fmt} file does not run under autocast: {one_line(exc)}{HINTS.get(fmt, '')}"
            ) from None
    to_autocast = float((got - want).abs().max()) if got.numel() else 0.0
    to_fp32 = float((got - fp32).abs().max()) if got.numel() else 0.0
    spread = float((want - fp32).abs().max()) if want.numel() else 0.0
    if spread > 0 and to_fp32 == 0.0:
        raise PoolkitError(
            f"the {fmt} file computes in float32: the exporter dropped torch.autocast (eager under {precision}"
            f" differs from float32 by {spread:.3g}, the file not at all){HINTS.get(fmt, '')}"
        )
    if spread > 0 and to_autocast > 0.5 * spread:
        raise PoolkitError(
            f"the {fmt} file is {to_autocast:.3g} from eager under {precision}, more than half its distance "
            f"from float32 ({spread:.3g}): it does not compute what autocast computes"
        )
    return to_autocast
