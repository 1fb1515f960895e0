"""Your own models: `--model PATH.py:NAME` or `--model package.module:NAME`, any `nn.Module`.

NAME is an `nn.Module` subclass constructed with no arguments, or a function that returns a
module. Loading it runs the user's file, as `python PATH.py` would: that is expected, and `--help`
says so. The weights are the user's (the constructor's, or a `--weights` state dict): poolkit never
re-seeds them, and saves them beside the artifacts. The manifest records where the code came from
and the sha256 of that file, so verify rebuilds exactly the same module later, or refuses.

Every mistake a user makes here is a one-line `SpecError` naming the file, the name and the line.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.common.errors import DataError, SpecError, one_line
from poolkit.common.files import sha256_file
from poolkit.common.limits import check_parameters, check_sample
from poolkit.exporter.state_dict import load_weights

if TYPE_CHECKING:
    import torch
    from torch import nn

EXAMPLE_INPUT = "example_input"  # a function or attribute beside NAME (or on it) giving example inputs


def is_user_model(text: str) -> bool:
    """`net.py:Net`, `dir/net.py:Net` or `pkg.mod:Net`; spec strings never contain ':'."""
    if ":" not in text:
        return False
    where, name = text.rsplit(":", 1)
    return bool(where) and name.isidentifier()


@dataclass(frozen=True)
class UserModelRef:
    """Where a user's model lives: a file (absolute path) or an importable module, and the name in it."""

    import_path: str  # an absolute path ending in .py, or a dotted module name
    object_name: str

    @property
    def is_file(self) -> bool:
        return self.import_path.endswith(".py") or "/" in self.import_path

    @property
    def text(self) -> str:
        return f"{self.import_path}:{self.object_name}"

    @property
    def artifact_name(self) -> str:
        """What the artifacts of this model are called (file-safe): `net.py:Net` -> `net_Net`, and
        `torchvision.models:resnet18` -> `resnet18` (a package names its models well already)."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.object_name if not self.is_file else self.qualified_name)

    @property
    def qualified_name(self) -> str:
        """`net.py:Net` -> `net_Net`, `mynets.cnn:SmallCNN` -> `cnn_SmallCNN`: the name with its module."""
        stem = Path(self.import_path).stem if self.is_file else self.import_path.rsplit(".", 1)[-1]
        return re.sub(r"[^A-Za-z0-9_-]", "_", f"{stem}_{self.object_name}")


def parse_user_model(text: str) -> UserModelRef:
    """`PATH.py:NAME` (path made absolute, not yet read) or `package.module:NAME`."""
    where, name = text.strip().rsplit(":", 1)
    if where.endswith(".py") or "/" in where:
        return UserModelRef(str(Path(where).expanduser().resolve()), name)
    if not all(part.isidentifier() for part in where.split(".")):
        raise SpecError(f"bad --model '{text}': expected PATH.py:NAME or package.module:NAME")
    return UserModelRef(where, name)


def source_file(ref: UserModelRef) -> Path:
    """The file whose sha256 the manifest records: the user's file, or the module's own source."""
    if ref.is_file:
        path = Path(ref.import_path)
        if not path.is_file():
            raise SpecError(f"model file not found: {path}")
        return path
    try:
        spec = importlib.util.find_spec(ref.import_path)
    except (ImportError, ValueError) as exc:
        raise SpecError(f"cannot find module '{ref.import_path}': {one_line(exc)}") from None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise SpecError(f"cannot find module '{ref.import_path}' (is its package installed or on PYTHONPATH?)")
    return Path(spec.origin)


def source_sha256(ref: UserModelRef) -> str:
    return sha256_file(source_file(ref))


def _where_in(exc: BaseException, path: Path) -> str:
    """`net.py line 7`: the deepest line of the user's file in the traceback (or a SyntaxError's own)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{Path(exc.filename).name} line {exc.lineno}"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    return f"{path.name} line {lines[-1]}" if lines else path.name


@contextlib.contextmanager
def _user_code() -> Iterator[None]:
    """The user's prints go to stderr (`--json` stays JSON); an `os._exit` in it is an error, not exit 0."""

    def refused(code: int = 0) -> None:
        raise SpecError(f"the code called os._exit({code}): poolkit does not let a model end the process")

    real_exit = os._exit
    os._exit = refused  # type: ignore[assignment]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        os._exit = real_exit


def _reason(exc: BaseException) -> str:
    """The exception in one line; a SyntaxError without its `(file, line n)` tail, said once by the caller."""
    if isinstance(exc, SyntaxError) and exc.msg:
        return f"{type(exc).__name__}: {exc.msg}"
    return one_line(exc)


def import_user_module(ref: UserModelRef) -> Any:
    """Run the user's file (or import the module) and return it; any error in it names its line."""
    path = source_file(ref)
    if not ref.is_file:
        try:
            with _user_code():
                return importlib.import_module(ref.import_path)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code may raise anything while importing
            raise SpecError(f"importing {ref.import_path} failed: {_reason(exc)} ({_where_in(exc, path)})") from None
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"poolkit_user_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    # Registered so that torch.jit.script and dataclasses find the module's source and globals;
    # the file's folder is on sys.path while it runs, as with `python PATH.py`.
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))
    try:
        with _user_code():
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code may raise anything while importing
        sys.modules.pop(module_name, None)
        raise SpecError(f"importing {path} failed: {_reason(exc)} ({_where_in(exc, path)})") from None
    finally:
        with contextlib.suppress(ValueError):  # the user's code may have taken it out itself
            sys.path.remove(str(path.parent))
    return module


def construct(ref: UserModelRef, module: Any | None = None) -> nn.Module:
    """NAME() from the user's module, in eval mode; the culprit named when it is not a usable module."""
    from torch import nn

    module = module if module is not None else import_user_module(ref)
    where = Path(ref.import_path).name if ref.is_file else ref.import_path
    obj = getattr(module, ref.object_name, None)
    if obj is None:
        found = sorted(
            k
            for k, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__
        )
        hint = f" (modules defined there: {', '.join(found)})" if found else ""
        raise SpecError(f"'{ref.object_name}' is not defined in {where}{hint}")
    if not callable(obj):
        raise SpecError(f"'{ref.object_name}' in {where} is not an nn.Module class or a function (it is {_kind(obj)})")
    try:
        required = [
            p.name
            for p in inspect.signature(obj).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    except (TypeError, ValueError):
        required = []
    if required:
        raise SpecError(
            f"'{ref.object_name}' in {where} needs arguments ({', '.join(required)}): poolkit calls it with none;"
            " give defaults, or a function that returns the module built as you want it"
        )
    try:
        with _user_code():
            model = obj()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's constructor may raise anything
        raise SpecError(
            f"{ref.object_name}() in {where} failed: {one_line(exc)} ({_where_in(exc, source_file(ref))})"
        ) from None
    if not isinstance(model, nn.Module):
        raise SpecError(f"'{ref.object_name}()' in {where} gives {_kind(model)}, not an nn.Module")
    check_parameters(sum(p.numel() for p in model.parameters()), f"{ref.object_name}() in {where}")
    return model.eval()  # BatchNorm uses its running statistics, Dropout does nothing


def _kind(obj: Any) -> str:
    return f"a value of type {type(obj).__name__}"


def example_shapes(ref: UserModelRef, module: Any) -> list[tuple[int, ...]] | None:
    """Per-sample input shapes from `example_input` on NAME or beside it, or None when there is none.

    It may be a tensor (batch axis first), a tuple of tensors (one per input), or a function giving one.
    """
    import torch

    obj = getattr(module, ref.object_name, None)
    found = getattr(obj, EXAMPLE_INPUT, None)
    if found is None:
        found = getattr(module, EXAMPLE_INPUT, None)
    if found is None:
        return None
    if callable(found):
        try:
            with _user_code():
                found = found()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's function may raise anything
            raise SpecError(f"{EXAMPLE_INPUT}() for {ref.object_name} failed: {one_line(exc)}") from None
    inputs = tuple(found) if isinstance(found, tuple | list) else (found,)
    if not inputs or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in inputs):
        raise SpecError(f"{EXAMPLE_INPUT} for {ref.object_name} must be a tensor (batch axis first) or a tuple of them")
    bad = [str(t.dtype) for t in inputs if t.dtype != torch.float32]
    if bad:
        raise SpecError(f"{EXAMPLE_INPUT} for {ref.object_name} has {bad[0]} inputs: poolkit feeds float32 only")
    shapes = [tuple(t.shape[1:]) for t in inputs]
    for shape in shapes:
        check_sample(shape, f"{EXAMPLE_INPUT} of {ref.object_name}")
    return shapes


def example_batch(shapes: list[tuple[int, ...]], batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand((batch, *shape), generator=gen) for shape in shapes)


def check_forward(model: nn.Module, shapes: list[tuple[int, ...]], what: str, batch: int = 2) -> list[tuple[int, ...]]:
    """Run a batch through the model; the output shapes (batch axis included), or why it cannot run."""
    import torch

    shown = " and ".join("x".join(map(str, s)) for s in shapes)
    try:
        with torch.inference_mode(), _user_code():
            out = model(*example_batch(shapes, batch))
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's forward may raise anything
        raise SpecError(f"{what} cannot run on input {shown}: {one_line(exc)}") from None
    outs = tuple(out) if isinstance(out, tuple | list) else (out,)
    if not outs or not all(isinstance(o, torch.Tensor) for o in outs):
        raise SpecError(f"{what} returns {type(out).__name__}: poolkit needs a tensor or a tuple of tensors")
    return [tuple(o.shape) for o in outs]


def check_source_unchanged(ref: UserModelRef, recorded_sha256: str | None, rerun_hint: str = "") -> None:
    """Refuse (exit 2) a source file that is gone or not the one exported: it would build another model."""
    path = source_file(ref)
    actual = sha256_file(path)
    if not recorded_sha256 or actual != recorded_sha256:
        was = (recorded_sha256 or "none")[:12]
        raise DataError(f"{path} changed since export (sha256 was {was}…, is {actual[:12]}…): re-export it{rerun_hint}")


def rebuild_user_model(
    ref: UserModelRef, recorded_sha256: str | None, weights: Path, rerun_hint: str = ""
) -> nn.Module:
    """The module that was exported: the same source (sha256 checked first), its class, the saved weights."""
    check_source_unchanged(ref, recorded_sha256, rerun_hint)
    model = construct(ref)
    load_weights(model, weights, ref.object_name)
    return model.eval()
