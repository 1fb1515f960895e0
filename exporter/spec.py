"""Model spec strings: `"conv(3,6,k=3,padding=same) | maxpool(k=3,ceil=true) | sigmoid"`.

A spec is a pipe-separated list of layer calls. Each call is parsed with Python's own `ast`
(so quoting, tuples and negative numbers behave as a Python user expects), then checked against
the parameter tables of the seeds (Conv2d, MaxPool2d, AvgPool2d, adaptive pools, Linear, the
activations). Parsing needs no torch: `poolkit zoo --help` and spec errors stay instant.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from typing import Any

from poolkit.common.errors import SpecError
from poolkit.exporter.dtypes import DEFAULT_DTYPE, dtype_name

REQUIRED = object()  # marks a parameter without a default


@dataclass(frozen=True)
class Param:
    """One constructor argument of a torch layer, with the short names a spec may use."""

    name: str
    kind: str  # int, float, bool, pair, triple, padding, optional_int/pair/triple, choice, dtype, device
    default: Any = REQUIRED
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    explicit: bool = False  # always written in torch calls: our default differs from torch's implicit one

    @property
    def short(self) -> str:
        return self.aliases[0] if self.aliases else self.name


@dataclass(frozen=True)
class LayerKind:
    """A layer a spec can name: `conv` is torch.nn.Conv2d, with its parameter table."""

    name: str
    torch_name: str
    params: tuple[Param, ...] = ()
    aliases: tuple[str, ...] = ()
    max_positional: int = 0  # how many leading parameters may be given without a name
    canon_positional: int = 0  # how many are written without a name in the canonical form

    def param(self, key: str) -> Param | None:
        for p in self.params:
            if key == p.name or key in p.aliases:
                return p
        return None


_K = Param("kernel_size", "pair", aliases=("k", "kernel"))
_INPLACE = Param("inplace", "bool", False)
_DIM = Param("dim", "int", 1, explicit=True)  # the seeds insist: always say which dim softmax runs over
# The seeds' Conv2d table ends with device and dtype: every layer holding parameters takes them.
_DTYPE = Param("dtype", "dtype", DEFAULT_DTYPE)
_DEVICE = Param("device", "device", None)

LAYER_KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "conv",
        "Conv2d",
        (
            Param("in_channels", "int", aliases=("in", "in_")),
            Param("out_channels", "int", aliases=("out",)),
            _K,
            Param("stride", "pair", 1, ("s",)),
            Param("padding", "padding", 0, ("p",)),
            Param("dilation", "pair", 1, ("d",)),
            Param("groups", "int", 1, ("g",)),
            Param("bias", "bool", True),
            Param("padding_mode", "choice", "zeros", ("mode",), ("zeros", "reflect", "replicate", "circular")),
            _DEVICE,
            _DTYPE,
        ),
        aliases=("conv2d",),
        max_positional=3,
        canon_positional=2,
    ),
    LayerKind(
        "maxpool",
        "MaxPool2d",
        (
            _K,
            Param("stride", "optional_pair", None, ("s",)),
            Param("padding", "pair", 0, ("p",)),
            Param("dilation", "pair", 1, ("d",)),
            Param("return_indices", "bool", False, ("indices",)),
            Param("ceil_mode", "bool", False, ("ceil",)),
        ),
        aliases=("maxpool2d",),
        max_positional=1,
    ),
    LayerKind(
        "avgpool",
        "AvgPool2d",
        (
            _K,
            Param("stride", "optional_pair", None, ("s",)),
            Param("padding", "pair", 0, ("p",)),
            Param("ceil_mode", "bool", False, ("ceil",)),
            Param("count_include_pad", "bool", True, ("include_pad",)),
            Param("divisor_override", "optional_int", None, ("divisor",)),
        ),
        aliases=("avgpool2d",),
        max_positional=1,
    ),
    LayerKind(
        "maxpool1d",
        "MaxPool1d",
        (
            Param("kernel_size", "int", aliases=("k", "kernel")),
            Param("stride", "optional_int", None, ("s",)),
            Param("padding", "int", 0, ("p",)),
            Param("dilation", "int", 1, ("d",)),
            Param("return_indices", "bool", False, ("indices",)),
            Param("ceil_mode", "bool", False, ("ceil",)),
        ),
        max_positional=1,
    ),
    LayerKind(
        "avgpool1d",
        "AvgPool1d",
        (
            Param("kernel_size", "int", aliases=("k", "kernel")),
            Param("stride", "optional_int", None, ("s",)),
            Param("padding", "int", 0, ("p",)),
            Param("ceil_mode", "bool", False, ("ceil",)),
            Param("count_include_pad", "bool", True, ("include_pad",)),
        ),
        max_positional=1,
    ),
    LayerKind(
        "maxpool3d",
        "MaxPool3d",
        (
            Param("kernel_size", "triple", aliases=("k", "kernel")),
            Param("stride", "optional_triple", None, ("s",)),
            Param("padding", "triple", 0, ("p",)),
            Param("dilation", "triple", 1, ("d",)),
            Param("return_indices", "bool", False, ("indices",)),
            Param("ceil_mode", "bool", False, ("ceil",)),
        ),
        max_positional=1,
    ),
    LayerKind(
        "avgpool3d",
        "AvgPool3d",
        (
            Param("kernel_size", "triple", aliases=("k", "kernel")),
            Param("stride", "optional_triple", None, ("s",)),
            Param("padding", "triple", 0, ("p",)),
            Param("ceil_mode", "bool", False, ("ceil",)),
            Param("count_include_pad", "bool", True, ("include_pad",)),
            Param("divisor_override", "optional_int", None, ("divisor",)),
        ),
        max_positional=1,
    ),
    # MaxUnpool: puts a max pool's values back at the positions its indices say, zeros elsewhere.
    LayerKind(
        "maxunpool",
        "MaxUnpool2d",
        (_K, Param("stride", "optional_pair", None, ("s",)), Param("padding", "pair", 0, ("p",))),
        aliases=("maxunpool2d",),
        max_positional=1,
    ),
    LayerKind(
        "maxunpool1d",
        "MaxUnpool1d",
        (
            Param("kernel_size", "int", aliases=("k", "kernel")),
            Param("stride", "optional_int", None, ("s",)),
            Param("padding", "int", 0, ("p",)),
        ),
        max_positional=1,
    ),
    LayerKind(
        "maxunpool3d",
        "MaxUnpool3d",
        (
            Param("kernel_size", "triple", aliases=("k", "kernel")),
            Param("stride", "optional_triple", None, ("s",)),
            Param("padding", "triple", 0, ("p",)),
        ),
        max_positional=1,
    ),
    LayerKind(
        "adaptiveavgpool",
        "AdaptiveAvgPool2d",
        (Param("output_size", "pair", aliases=("size",)),),
        aliases=("adaptiveavgpool2d", "adaptive_avgpool"),
        max_positional=1,
        canon_positional=1,
    ),
    LayerKind(
        "adaptivemaxpool",
        "AdaptiveMaxPool2d",
        (Param("output_size", "pair", aliases=("size",)), Param("return_indices", "bool", False, ("indices",))),
        aliases=("adaptivemaxpool2d", "adaptive_maxpool"),
        max_positional=1,
        canon_positional=1,
    ),
    LayerKind(
        "flatten",
        "Flatten",
        (Param("start_dim", "int", 1, ("start",)), Param("end_dim", "int", -1, ("end",))),
        max_positional=2,
    ),
    LayerKind(
        "linear",
        "Linear",
        (
            Param("in_features", "int", aliases=("in", "in_")),
            Param("out_features", "int", aliases=("out",)),
            Param("bias", "bool", True),
            _DEVICE,
            _DTYPE,
        ),
        max_positional=2,
        canon_positional=2,
    ),
    LayerKind("relu", "ReLU", (_INPLACE,)),
    LayerKind("sigmoid", "Sigmoid"),
    LayerKind("tanh", "Tanh"),
    LayerKind(
        "leaky_relu",
        "LeakyReLU",
        (Param("negative_slope", "float", 0.01, ("slope",)), _INPLACE),
        aliases=("leakyrelu",),
        max_positional=1,
    ),
    LayerKind(
        "prelu",
        "PReLU",
        (Param("num_parameters", "int", 1, ("n",)), Param("init", "float", 0.25), _DEVICE, _DTYPE),
        max_positional=1,
    ),
    LayerKind("elu", "ELU", (Param("alpha", "float", 1.0), _INPLACE), max_positional=1),
    LayerKind("softmax", "Softmax", (_DIM,), max_positional=1),
    LayerKind("log_softmax", "LogSoftmax", (_DIM,), aliases=("logsoftmax",), max_positional=1),
)

_BY_NAME = {name: k for k in LAYER_KINDS for name in (k.name, *k.aliases)}
# Each unpool and the max pool whose indices it takes.
UNPOOL_OF = {"maxunpool": "maxpool", "maxunpool1d": "maxpool1d", "maxunpool3d": "maxpool3d"}
KNOWN_LAYERS = ", ".join(k.name for k in LAYER_KINDS)


@dataclass(frozen=True)
class LayerSpec:
    """One parsed layer: its kind and the arguments that differ from torch's defaults."""

    kind: str
    args: tuple[tuple[str, Any], ...] = ()
    source: str = field(default="", compare=False)

    @property
    def layer_kind(self) -> LayerKind:
        return _BY_NAME[self.kind]

    def kwargs(self) -> dict[str, Any]:
        """Every constructor argument, defaults filled in, ready for the torch class."""
        full = {p.name: p.default for p in self.layer_kind.params}
        full.update(self.args)
        return full

    def __str__(self) -> str:
        lk = self.layer_kind
        given = dict(self.args)
        parts: list[str] = []
        for i, p in enumerate(lk.params):
            if p.name not in given:
                continue
            text = _render(given[p.name])
            parts.append(text if i < lk.canon_positional else f"{p.short}={text}")
        return f"{lk.name}({','.join(parts)})" if parts else lk.name

    def torch_call(self) -> str:
        """The layer as a torch user writes it: `MaxPool2d(3, ceil_mode=True)`."""
        lk = self.layer_kind
        given = dict(self.args)
        parts = [
            f"{p.name}=torch.{given[p.name]}"
            if p.kind == "dtype" and p.name in given
            else _render_py(given[p.name])
            if p.default is REQUIRED
            else f"{p.name}={_render_py(given.get(p.name, p.default))}"
            for p in lk.params
            if p.name in given or p.explicit
        ]
        return f"{lk.torch_name}({', '.join(parts)})"

    @property
    def label(self) -> str:
        """How error messages name this layer: the user's own text when there is one."""
        return clip(self.source) if self.source else str(self)


@dataclass(frozen=True)
class ModelSpec:
    """A whole model: layers applied in order, as the seeds' Tudui forward does."""

    layers: tuple[LayerSpec, ...]

    def __str__(self) -> str:
        return " | ".join(str(layer) for layer in self.layers)

    def torch_calls(self) -> str:
        return " → ".join(layer.torch_call() for layer in self.layers)

    @property
    def dtype(self) -> str:
        """The dtype its parameters are created in (parse_spec checks the layers agree); float32 without any."""
        for layer in self.layers:
            if layer.layer_kind.param("dtype") is not None:
                return str(layer.kwargs()["dtype"])
        return DEFAULT_DTYPE


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "(" + ",".join(_render(v) for v in value) + ")"
    return str(value)


def _render_py(value: Any) -> str:
    return repr(value) if isinstance(value, (str, bool, type(None))) else str(value).replace(" ", "")


def _literal(node: ast.AST) -> Any:
    """A spec value: numbers, tuples, and bare words (same, reflect, true) as strings."""
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float, str, bool))
        or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub))
    ):
        return ast.literal_eval(node)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):  # torch.float16, as torch users write
        return f"{node.value.id}.{node.attr}"
    raise ValueError("not a number, word or tuple")


_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def _coerce(p: Param, raw: Any) -> Any:
    """Check one value against its parameter's type; raise ValueError saying what was expected."""

    def as_int(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("expected an integer")
        return v

    def as_pair(v: Any) -> int | tuple[int, int]:
        if isinstance(v, tuple):
            if len(v) != 2:
                raise ValueError("expected an integer or a pair of integers like (3,5)")
            return (as_int(v[0]), as_int(v[1]))
        try:
            return as_int(v)
        except ValueError:
            raise ValueError("expected an integer or a pair of integers like (3,5)") from None

    def as_triple(v: Any) -> int | tuple[int, int, int]:
        if isinstance(v, tuple):
            if len(v) != 3:
                raise ValueError("expected an integer or three integers like (1,3,3)")
            return (as_int(v[0]), as_int(v[1]), as_int(v[2]))
        try:
            return as_int(v)
        except ValueError:
            raise ValueError("expected an integer or three integers like (1,3,3)") from None

    word = raw.lower() if isinstance(raw, str) else None
    if p.kind == "int":
        return as_int(raw)
    if p.kind == "float":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValueError("expected a number")
        try:
            value = float(raw)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value
    if p.kind == "bool":
        key = word if word is not None else (str(int(raw)) if isinstance(raw, (bool, int)) else None)
        if key not in _BOOLS:
            raise ValueError("expected true or false")
        return _BOOLS[key]
    if p.kind == "pair":
        return as_pair(raw)
    if p.kind == "triple":
        return as_triple(raw)
    if p.kind in ("optional_pair", "optional_int", "optional_triple"):
        if word == "none":
            return None
        if p.kind == "optional_triple":
            return as_triple(raw)
        return as_pair(raw) if p.kind == "optional_pair" else as_int(raw)
    if p.kind == "padding":
        if word in ("same", "valid"):
            return word
        try:
            return as_pair(raw)
        except ValueError:
            raise ValueError("expected an integer, a pair like (1,2), 'same' or 'valid'") from None
    if p.kind == "dtype":
        return dtype_name(raw)
    if p.kind == "device":
        if word in ("cpu", "torch.cpu"):
            return None  # torch's meaning: created on the CPU, which is where poolkit builds every model
        raise ValueError(
            "poolkit builds every model on the CPU (torch's device=None or 'cpu') and moves it for each run:"
            " ask for the GPU with --device cuda in verify, bench or show"
        )
    if p.kind == "choice":
        if word not in p.choices:
            raise ValueError("expected one of " + ", ".join(p.choices))
        return word
    raise AssertionError(f"unknown parameter kind {p.kind}")


def parse_layer(text: str) -> LayerSpec:
    """Parse one `name(args)` token; every error names the token."""
    full = text.strip()
    if not full:
        raise SpecError("empty layer in spec (two '|' in a row, or a '|' at an end)")
    token = clip(full)  # what messages show: a pasted megabyte must not flood the terminal
    # `in` is a Python keyword; let `conv(in=3, out=6, ...)` through as `in_`.
    source = re.sub(r"\bin\s*=(?!=)", "in_=", full)
    try:
        node = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL byte
        raise SpecError(f"cannot parse layer '{token}': expected name(arg, key=value, ...)") from None
    if isinstance(node, ast.Name):
        name, pos_nodes, kw_nodes = node.id, [], []
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, pos_nodes, kw_nodes = node.func.id, node.args, node.keywords
    else:
        raise SpecError(f"cannot parse layer '{token}': expected name(arg, key=value, ...)")
    kind = _BY_NAME.get(name.lower())
    if kind is None:
        raise SpecError(f"unknown layer '{clip(name)}' in '{token}' (known: {KNOWN_LAYERS})")
    if len(pos_nodes) > kind.max_positional:
        raise SpecError(
            f"too many unnamed values in '{token}': {kind.name} takes at most {kind.max_positional}"
            + (f" ({', '.join(p.name for p in kind.params[: kind.max_positional])})" if kind.max_positional else "")
        )
    given: dict[str, Any] = {}
    pairs = [(kind.params[i], n) for i, n in enumerate(pos_nodes)]
    for kw in kw_nodes:
        p = kind.param(kw.arg or "")
        if p is None:
            known = ", ".join(f"{q.name}" + (f" ({q.short})" if q.aliases else "") for q in kind.params)
            raise SpecError(
                f"unknown parameter '{clip(str(kw.arg))}' in '{token}' ({kind.name} takes: {known or 'nothing'})"
            )
        pairs.append((p, kw.value))
    for p, value_node in pairs:
        if p.name in given:
            raise SpecError(f"parameter '{p.name}' given twice in '{token}'")
        try:
            given[p.name] = _coerce(p, _literal(value_node))
        except (ValueError, TypeError, RecursionError, MemoryError) as exc:
            shown = clip(ast.get_source_segment(source, value_node) or "?")  # values are never rewritten
            if not isinstance(exc, ValueError):
                exc = ValueError("nested too deeply")
            raise SpecError(f"bad value '{shown}' for {p.name} in '{token}': {exc}") from None
    missing = [p.name for p in kind.params if p.default is REQUIRED and p.name not in given]
    if missing:
        raise SpecError(f"missing {', '.join(missing)} in '{token}'")
    args = tuple((p.name, given[p.name]) for p in kind.params if p.name in given and given[p.name] != p.default)
    return LayerSpec(kind.name, args, source=full)


MAX_SPEC_CHARS = 4096  # far longer than any real spec; keeps the parser's work bounded
MAX_SHOWN_CHARS = 80


def clip(text: str) -> str:
    """User text as quoted in a message: on one line (a newline or NUL shown as `\\n`, `\\x00`),
    at most MAX_SHOWN_CHARS characters."""
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


def parse_spec(text: str) -> ModelSpec:
    """Parse a whole spec. Structure only: whether shapes chain is checked when it is built."""
    if not text or not text.strip():
        raise SpecError("empty model spec: give layers like 'conv(3,6,k=3) | maxpool(k=3) | relu'")
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(f"model spec '{clip(text)}' is {len(text):,} characters long; the limit is {MAX_SPEC_CHARS:,}")
    layers = tuple(parse_layer(part) for part in text.split("|"))
    for before, layer in zip((None, *layers), layers, strict=False):
        pool = UNPOOL_OF.get(layer.kind)
        if pool and (before is None or before.kind != pool or not dict(before.args).get("return_indices")):
            raise SpecError(
                f"'{layer.label}' puts a max pool's values back where its indices say: it needs a"
                f" '{pool}(...,indices=true)' right before it"
            )
    for layer, after in zip(layers, layers[1:], strict=False):
        if dict(layer.args).get("return_indices") and UNPOOL_OF.get(after.kind) != layer.kind:
            unpool = next((u for u, p in UNPOOL_OF.items() if p == layer.kind), None)
            raise SpecError(
                f"'{layer.label}' returns (values, indices): return_indices=true is allowed on the last layer only"
                + (f", or right before a {unpool}" if unpool else "")
            )
    check_dtypes(layers)
    return ModelSpec(layers)


def check_dtypes(layers: tuple[LayerSpec, ...]) -> None:
    """torch refuses to run float16 activations into float32 weights: say which layers disagree, up front."""
    held = [(layer, layer.kwargs()["dtype"]) for layer in layers if layer.layer_kind.param("dtype") is not None]
    for layer, dtype in held[1:]:
        first, first_dtype = held[0]
        if dtype != first_dtype:
            raise SpecError(
                f"'{layer.label}' holds {dtype} parameters but '{first.label}' holds {first_dtype}: give every"
                " layer the same dtype, or --dtype for the whole model"
            )


def default_input_shape(spec: ModelSpec, image_size: int = 32) -> tuple[int, ...]:
    """The per-sample input a spec expects: CIFAR10's 3x32x32 unless its first conv/linear says otherwise."""
    for layer in spec.layers:
        kw = layer.kwargs()
        if layer.kind.endswith("1d"):  # (channels, length)
            return (3, image_size)
        if layer.kind.endswith("3d"):  # (channels, depth, height, width)
            return (3, max(1, image_size // 4), image_size, image_size)
        if layer.kind == "conv":
            return (kw["in_channels"], image_size, image_size)
        if layer.kind == "linear":
            return (kw["in_features"],)
        if layer.kind == "flatten":
            break
    return (3, image_size, image_size)
