"""The named models of `poolkit zoo`: the seeds' exact modules, plus a small Tudui classifier.

Each entry is only a spec string; building it is the job of `exporter.build`, so listing the zoo
needs no torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from poolkit.common.errors import SpecError
from poolkit.exporter.spec import LAYER_KINDS, ModelSpec, parse_spec
from poolkit.exporter.user_model import UserModelRef, is_user_model, parse_user_model


@dataclass(frozen=True)
class ZooEntry:
    name: str
    spec: str
    about: str


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("maxpool_ceil", "maxpool(k=3,ceil=true)", "seed: MaxPool2d(kernel_size=3, ceil_mode=True)"),
        ZooEntry("maxpool_floor", "maxpool(k=3)", "seed: MaxPool2d(kernel_size=3, ceil_mode=False)"),
        ZooEntry("maxpool_2x2", "maxpool(k=2,s=2)", "seed: the 4x4 worked example, MaxPool2d(2, 2)"),
        ZooEntry("relu", "relu", "seed: ReLU"),
        ZooEntry("sigmoid", "sigmoid", "seed: Sigmoid"),
        ZooEntry("conv", "conv(3,6,k=3)", "seed: Conv2d(3, 6, kernel_size=3, stride=1, padding=0)"),
        ZooEntry("conv_same", "conv(3,16,k=3,p=1)", "seed: Conv2d(3, 16, 3, stride=1, padding=1), size kept"),
        ZooEntry("gap", "adaptiveavgpool(1)", "seed: global average pooling, AdaptiveAvgPool2d(1)"),
        ZooEntry("tanh", "tanh", "activation table: Tanh"),
        ZooEntry("leaky_relu", "leaky_relu", "activation table: LeakyReLU"),
        ZooEntry("prelu", "prelu", "activation table: PReLU"),
        ZooEntry("elu", "elu", "activation table: ELU"),
        ZooEntry("softmax", "softmax(dim=1)", "activation table: Softmax(dim=1)"),
        ZooEntry("log_softmax", "log_softmax(dim=1)", "activation table: LogSoftmax(dim=1)"),
        ZooEntry(
            "mlp_head",
            "flatten | linear(3072,128) | relu | linear(128,64) | relu | linear(64,32) | relu"
            " | linear(32,10) | softmax(dim=1)",
            "seed: Linear 128-64-32-10 + Softmax(dim=1), fed by a Linear(3072,128) on flattened images",
        ),
        ZooEntry(
            "tudui",
            "conv(3,6,k=3) | maxpool(k=3,ceil=true) | relu | flatten | linear(600,10)",
            "a small CIFAR10 classifier from the seeds' parts",
        ),
    )
}


@dataclass(frozen=True)
class ModelRef:
    """What `--model` resolved to: a zoo name, a spec string or a user's model, with the name artifacts get.

    A user's model has no spec (`spec` is None); `user` says where it lives, and nothing of it is
    imported until it is built.
    """

    name: str
    spec: ModelSpec | None
    spec_text: str
    user: UserModelRef | None = None

    @property
    def given(self) -> str:
        """The text that names this model again: PATH.py:NAME for a model of your own (which is what
        lets its code run when it is rebuilt), else the artifact name."""
        return self.user.text if self.user is not None else self.name


def resolve_model(text: str) -> ModelRef:
    """`maxpool_ceil` -> the zoo entry; `net.py:Net` -> a user's model; anything else is parsed as a spec
    and named by its hash."""
    text = text.strip()
    if is_user_model(text):
        user = parse_user_model(text)
        name = user.artifact_name if user.artifact_name not in ZOO else user.qualified_name  # never a zoo name
        return ModelRef(name, None, user.text, user)
    if text.endswith(".py") or text.endswith(":"):
        raise SpecError(f"--model '{text}': name the module class or function in it, like {text.rstrip(':')}:Net")
    if text in ZOO:
        entry = ZOO[text]
        spec = parse_spec(entry.spec)
        return ModelRef(entry.name, spec, str(spec))
    if "(" not in text and "|" not in text and text.isidentifier() and text.lower() not in _LAYER_WORDS:
        raise SpecError(
            f"unknown model '{text}' (zoo: {', '.join(ZOO)}; or a spec like 'conv(3,6,k=3) | relu'; or your own PATH.py:NAME)"
        )
    spec = parse_spec(text)
    return ModelRef(spec_name(spec), spec, str(spec))


def spec_name(spec: ModelSpec) -> str:
    """A stable, file-safe name for a spec given on the command line."""
    return "spec_" + hashlib.sha1(str(spec).encode()).hexdigest()[:8]


def resolve_models(texts: list[str] | None) -> list[ModelRef]:
    """The whole zoo when nothing is named; duplicates are dropped, order kept."""
    refs = [resolve_model(t) for t in (texts or list(ZOO))]
    seen: dict[str, ModelRef] = {}
    for ref in refs:
        other = seen.setdefault(ref.name, ref)
        if other.spec_text != ref.spec_text:
            raise SpecError(
                f"'{other.spec_text}' and '{ref.spec_text}' would both be named '{ref.name}': export them to"
                " different --out folders"
            )
    return list(seen.values())


_LAYER_WORDS = {n for k in LAYER_KINDS for n in (k.name, *k.aliases)}
