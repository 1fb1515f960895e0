"""torch.export: an `ExportedProgram` saved with `torch.export.save` (`.pt2`), read by `--runtime export`.

Dynamic axes as for ONNX (the batch, and height and width where every layer takes any size), first
as explicit `Dim`s; where torch.export refuses those (MaxPool2d(3, ceil_mode=True) guards like
`3*((h-1)//3) < h` violate a free `Dim`), again with `Dim.AUTO`, which lets torch.export derive the
range itself. What each open axis became is returned as `dims` and recorded in the manifest; an
axis asked to be open that torch.export fixes to one size is an export failure, never a quiet
static artifact.

Sizes 0 and 1 are not special-cased (`backed_size_oblivious`, torch.export's documented way to avoid
0/1 specialisation): without it a pool whose output is 1x1 on the example's path guards
`h // 3 != 1`, and the program refuses the tutorials' 5x5 input that eager takes. The price torch
names (broadcasting decided for the general case) is exactly what verify checks against eager. Loading a .pt2 runs only what `torch.export.load` runs (no pickled code).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from poolkit.common.capture import captured_output
from poolkit.common.files import write_atomic
from poolkit.exporter.formats.base import ArtifactFormat, ArtifactWritten, ExportRequest, SweepPath, dynamic_axes

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.export import ExportedProgram

REPRO_TEMPLATE = """from torch.export import Dim
example = torch.from_numpy(x[:2])
spatial = {{2: Dim.AUTO, 3: Dim.AUTO}} if example.dim() == 4 else {{}}
try:
    program = torch.export.export(model, (example,), dynamic_shapes=({{0: Dim("batch"), **spatial}},))
    torch.export.save(program, str(here / "model.pt2"))
    out = {load}(str(here / "model.pt2"))(torch.from_numpy(x))
except Exception as exc:
    sys.exit(f"REPRODUCED: torch.export fails: {{type(exc).__name__}}: {{str(exc).strip().splitlines()[0][:300]}}")
actual = [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]
declared = [[] for _ in actual]
"""


def export_program(
    module: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], request: ExportRequest
) -> tuple[ExportedProgram, dict[str, str]]:
    """torch.export.export with the request's open axes: explicit Dims, else Dim.AUTO; (program, dims)."""
    with _general_sizes():
        return _export_program(module, example, request)


def _general_sizes() -> Any:
    """torch.export without 0/1 specialisation, where this torch has the switch (else as it is)."""
    # lazily (as every torch import here): `poolkit --help` imports the format registry
    from torch.fx.experimental import _config

    if not hasattr(_config, "backed_size_oblivious"):
        return contextlib.nullcontext()
    return _config.patch(backed_size_oblivious=True)  # type: ignore[attr-defined]  # made by torch at import


def _export_program(
    module: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], request: ExportRequest
) -> tuple[ExportedProgram, dict[str, str]]:
    import torch
    from torch.export import Dim

    args = example if isinstance(example, tuple) else (example,)
    axes = [dynamic_axes(request.dynamic_batch, request.dynamic_spatial, request.dynamic_channels)]
    axes += [dynamic_axes(request.dynamic_batch, False) for _ in args[1:]]
    names = {n for per_input in axes for n in per_input.values()}
    if not names:
        with captured_output():
            return torch.export.export(module, args), {}
    # One Dim object per name, so every input shares the batch; min=1: an image may be as small as 1x1.
    explicit = {n: Dim(n) if n == "batch" else Dim(n, min=1) for n in names}
    refused = ""
    # Explicit Dims first; where torch.export refuses them (constraints violated), Dim.AUTO for the
    # image axes (the batch kept explicit), then for every axis: torch.export derives the ranges.
    for attempt in ({}, {n: Dim.AUTO for n in names if n != "batch"}, dict.fromkeys(names, Dim.AUTO)):
        if refused and not attempt:
            continue
        try:
            with captured_output():
                program = torch.export.export(module, args, dynamic_shapes=_shapes(axes, {**explicit, **attempt}))
        except torch._dynamo.exc.UserError as exc:
            if attempt == dict.fromkeys(names, Dim.AUTO):
                raise
            refused = refused or str(exc).strip().splitlines()[0].split(" For more information")[0][:160]
            continue
        auto = {n for n, d in attempt.items() if d is Dim.AUTO}
        return program, _derived(program, axes[0], auto, refused)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _shapes(axes: list[dict[int, str]], dims: dict[str, Any]) -> tuple[dict[int, Any], ...]:
    return tuple({i: dims[n] for i, n in per_input.items()} for per_input in axes)


def _derived(program: ExportedProgram, axes: dict[int, str], auto: set[str], refused: str) -> dict[str, str]:
    """Each open axis of the first input as torch.export left it: "Dim [0, inf]", or for an axis whose
    explicit Dim was refused "Dim.AUTO [2, inf] (explicit Dim refused: Constraints violated (height, width)!)".

    An axis asked to be open that came out a fixed size raises: the artifact would not take what
    the manifest says it takes.
    """
    first = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name in _user_inputs(program))
    shape = first.meta["val"].shape
    found = {}
    for index, name in axes.items():
        size = shape[index]
        if isinstance(size, int):
            raise ValueError(
                f"torch.export fixed {name} to {size} (the module does not take any {name} there); "
                "export it with --static-shape"
            )
        bounds = program.range_constraints.get(size.node.expr)
        lower, upper = (bounds.lower, bounds.upper) if bounds is not None else ("?", "?")
        text = f"{'Dim.AUTO' if name in auto else 'Dim'} [{lower}, {'inf' if str(upper) == 'int_oo' else upper}]"
        found[name] = text + (f" (explicit Dim refused: {refused})" if name in auto else "")
    return found


def _write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _user_inputs(program: ExportedProgram) -> set[str]:
    return set(program.graph_signature.user_inputs)


class Pt2Format(ArtifactFormat):
    name = "pt2"
    suffix = ".pt2"
    methods = ("export",)
    open_channels = True
    sweep_paths: ClassVar[tuple[SweepPath, ...]] = (SweepPath("pt2-export", "export", "pt2-export"),)
    sweep_default = False  # torch.export costs about a second a cell: named with --exporters
    sweep_dynamic_shapes = True  # which pool/conv configurations torch.export takes at any size
    sweep_runtime = "export"

    def export(
        self, module: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path, request: ExportRequest
    ) -> ArtifactWritten:
        import torch

        program, dims = export_program(module, example, request)
        buffer = io.BytesIO()  # torch.export.save warns about a file name not ending in .pt2 (the staging name)
        torch.export.save(program, buffer)
        write_atomic(path, lambda tmp: _write_bytes(tmp, buffer.getvalue()))
        return ArtifactWritten(dims=dims)

    def repro(self, method: str, *, provider: str, export_failed: bool, n_outputs: int, opset: int | None) -> str:
        return REPRO_TEMPLATE.format(load="lambda p: torch.export.load(p).module()")
