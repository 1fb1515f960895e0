"""Spec strings: good ones round-trip, bad ones give one clear error naming the culprit."""

from __future__ import annotations

import pytest

from poolkit.common.errors import SpecError
from poolkit.exporter.build import build_model
from poolkit.exporter.spec import default_input_shape, parse_spec
from poolkit.exporter.zoo import ZOO, resolve_model

GOOD = [
    "conv(3,6,k=3,padding=same,padding_mode=reflect) | maxpool(k=3,ceil=true) | sigmoid",
    "conv(3,6,3)",
    "conv(in=3,out=12,kernel_size=(3,5),stride=(1,2),padding=(1,2),dilation=2,groups=3,bias=false,mode=circular)",
    "maxpool(k=3,s=2,p=1,d=2,ceil=true)",
    "maxpool(2,indices=true)",
    "avgpool(k=3,ceil=true,count_include_pad=false,divisor=4)",
    "adaptiveavgpool((2,3)) | flatten | linear(18,4,bias=false)",
    "adaptivemaxpool(4,return_indices=true)",
    "relu(inplace=true) | tanh | leaky_relu(0.2) | prelu(n=3,init=0.1) | elu(alpha=0.5) | softmax(dim=-1)",
    "log_softmax(dim=1)",
    "Conv2d(3, 6, kernel_size=3) | MaxPool2d(3)",
]


@pytest.mark.parametrize("text", GOOD)
def test_good_specs_round_trip(text: str) -> None:
    spec = parse_spec(text)
    again = parse_spec(str(spec))
    assert again == spec
    assert str(again) == str(spec)


def test_canonical_form_and_defaults_dropped() -> None:
    spec = parse_spec("conv(3, 6, kernel_size=3, stride=1, padding=0) | MaxPool2d(kernel_size=3, ceil_mode=True)")
    assert str(spec) == "conv(3,6,k=3) | maxpool(k=3,ceil=true)"
    assert spec.torch_calls() == "Conv2d(3, 6, 3) → MaxPool2d(3, ceil_mode=True)"
    assert parse_spec("softmax").torch_calls() == "Softmax(dim=1)"


def test_values_are_typed() -> None:
    layer = parse_spec("conv(3,6,k=(3,5),p=same,bias=false,mode=Reflect)").layers[0]
    kw = layer.kwargs()
    assert kw["kernel_size"] == (3, 5) and kw["padding"] == "same"
    assert kw["bias"] is False and kw["padding_mode"] == "reflect"
    assert parse_spec("leaky_relu(slope=0.2)").layers[0].kwargs()["negative_slope"] == 0.2
    assert parse_spec("softmax(dim=-1)").layers[0].kwargs()["dim"] == -1


BAD = [
    ("", "empty model spec"),
    ("maxpol(k=3)", "unknown layer 'maxpol' in 'maxpol(k=3)'"),
    ("conv(3,6,k=abc)", "bad value 'abc' for kernel_size in 'conv(3,6,k=abc)'"),
    ("conv(3,6)", "missing kernel_size in 'conv(3,6)'"),
    ("relu(3)", "too many unnamed values in 'relu(3)'"),
    ("conv(3,6,k=3,kk=2)", "unknown parameter 'kk' in 'conv(3,6,k=3,kk=2)'"),
    ("maxpool(k=3,ceil=maybe)", "bad value 'maybe' for ceil_mode in 'maxpool(k=3,ceil=maybe)': expected true or false"),
    ("conv(3,6,k=3,mode=mirror)", "bad value 'mirror' for padding_mode"),
    ("conv(3,6,k=3) | | relu", "empty layer in spec"),
    ("conv(3,6,k=3,k=5)", "parameter 'kernel_size' given twice"),
    ("conv(3,6,k=3", "cannot parse layer 'conv(3,6,k=3'"),
    ("maxpool(k=3,indices=true) | relu", "return_indices=true is allowed on the last layer only"),
    ("nosuchmodel", "unknown model 'nosuchmodel'"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_specs_name_the_culprit(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        resolve_model(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


CHAIN = [
    ("conv(3,6,k=3) | conv(4,8,k=3)", "'conv(4,8,k=3)' expects in_channels=4 but gets 6 channels"),
    ("conv(3,6,k=3) | flatten | linear(600,10)", "'linear(600,10)' expects in_features=600 but gets 5400"),
    ("conv(3,6,k=3,s=2,p=same)", "padding='same' is not supported for strided convolutions"),
    ("maxpool(k=40)", "'maxpool(k=40)' cannot take input of shape (1, 3, 32, 32)"),
    ("conv(3,6,k=3,g=2)", "in_channels must be divisible by groups"),
]


@pytest.mark.parametrize(("text", "message"), CHAIN)
def test_layers_that_do_not_chain(text: str, message: str) -> None:
    spec = parse_spec(text)
    with pytest.raises(SpecError) as info:
        build_model(spec, default_input_shape(spec))
    assert message in str(info.value)


def test_input_shape_inferred_from_first_layer() -> None:
    assert default_input_shape(parse_spec("maxpool(k=3)")) == (3, 32, 32)
    assert default_input_shape(parse_spec("conv(1,4,k=3)")) == (1, 32, 32)
    assert default_input_shape(parse_spec("linear(128,10)")) == (128,)
    assert default_input_shape(parse_spec(ZOO["mlp_head"].spec)) == (3, 32, 32)


def test_weights_are_reproducible_from_the_seed() -> None:
    spec = parse_spec(ZOO["tudui"].spec)
    a = build_model(spec, (3, 32, 32), seed=0).state_dict()
    b = build_model(spec, (3, 32, 32), seed=0).state_dict()
    c = build_model(spec, (3, 32, 32), seed=1).state_dict()
    assert all((a[k] == b[k]).all() for k in a)
    assert not (a["conv1.weight"] == c["conv1.weight"]).all()
    assert list(a) == ["conv1.weight", "conv1.bias", "linear1.weight", "linear1.bias"]
