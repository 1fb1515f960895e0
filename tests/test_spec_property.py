"""Property test of the spec parser: any text parses and round-trips, or is one SpecError line (exit 2)."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from poolkit.common.errors import EXIT_USAGE, SpecError
from poolkit.exporter.spec import LAYER_KINDS, parse_spec

NAMES = [name for kind in LAYER_KINDS for name in (kind.name, *kind.aliases)]
KEYS = sorted({key for kind in LAYER_KINDS for p in kind.params for key in (p.name, *p.aliases)} | {"in"})
VALUES = st.one_of(
    st.integers(-5, 300).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["true", "false", "none", "same", "valid", "reflect", "(3,5)", "(1,2,3)", "1e999", "-1e999", "'x'"]
    ),
    st.text(max_size=6),
)
ARG = st.one_of(VALUES, st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"))
LAYER = st.one_of(
    st.sampled_from(NAMES),
    st.tuples(st.sampled_from(NAMES), st.lists(ARG, max_size=4)).map(lambda t: f"{t[0]}({','.join(t[1])})"),
    st.text(max_size=20),
)
SPEC = st.one_of(st.lists(LAYER, min_size=0, max_size=4).map(" | ".join), st.text(max_size=60))


def check_text(text: str) -> None:
    try:
        spec = parse_spec(text)
    except SpecError as exc:
        message = str(exc)
        assert exc.exit_code == EXIT_USAGE
        assert message and "\n" not in message and len(message) < 1_000
        return
    canonical = str(spec)
    again = parse_spec(canonical)
    assert again == spec, (text, canonical)
    assert str(again) == canonical


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SPEC)
@example("0\n0")  # found by this test: a message quoting the token must stay on one line
@example("relu(\x00)")
def test_any_text_parses_and_round_trips_or_is_one_line(text: str) -> None:
    check_text(text)


def test_hostile_texts_are_one_line_errors() -> None:
    for text in (
        "leaky_relu(slope=1e999)",
        "conv(3,6,k=" + "-" * 5_000 + "1)",
        "conv(" + "(" * 300 + ")" * 300 + ")",
        "relu(" * 200 + ")" * 200,
        "x[/foo]",
        "relu\x00",
        "relu | " * 2_000,
        "conv(3,6,k=__import__('os').system('true'))",
    ):
        check_text(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SPEC)
def test_the_cli_gives_a_table_or_one_error_line_for_any_spec(text: str) -> None:
    from typer.testing import CliRunner

    from poolkit.cli import app

    result = CliRunner().invoke(app, ["zoo", "--json", "-m", text])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert result.stderr == ""
    else:
        assert result.exit_code == EXIT_USAGE
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
