"""Converters: good values come back typed, bad ones say what was wrong."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest

from commands.framework.converters import (
    CaseReference,
    CaseReferenceConverter,
    Choice,
    Integer,
    Rest,
    Text,
    UserId,
    UserIdConverter,
    converter_for,
)
from commands.framework.errors import BadArgument


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("@sam:example.org", "@sam:example.org"),
        (
            "@sam.smith_1=x-y/z+w:matrix.council.gov.uk",
            "@sam.smith_1=x-y/z+w:matrix.council.gov.uk",
        ),
        ("@sam:localhost:8448", "@sam:localhost:8448"),
        ("@sam:192.168.1.10", "@sam:192.168.1.10"),
        ("@sam:[::1]:8448", "@sam:[::1]:8448"),
        ("@sam:[2001:db8::1]", "@sam:[2001:db8::1]"),
        ("https://matrix.to/#/@sam:example.org", "@sam:example.org"),
    ],
)
def test_user_id_accepts_valid_ids(raw: str, expected: str) -> None:
    assert UserIdConverter().convert(raw) == UserId(expected)


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("sam", "starts with @"),
        ("sam:example.org", "starts with @"),
        ("@Sam", "no server"),
        ("@sam", "no server"),
        ("@:example.org", "empty"),
        ("@sam smith:example.org", "lower-case letters"),
        ("@sam#1:example.org", "lower-case letters"),
        ("@sam:", "not a server name"),
        ("@sam:exa_mple.org", "not a server name"),
        ("@sam:example.org:", "not a server name"),
        ("@sam:example.org:99999", "not a server name"),
        ("@sam:example.org:http", "not a server name"),
        ("@sam:[not-ipv6]", "not a server name"),
        ("@sam:[::1", "not a server name"),
        ("@sam:example..org", "not a server name"),
        ("@" + "a" * 250 + ":example.org", "longer than 255"),
    ],
)
def test_user_id_rejects_invalid_ids_with_a_reason(raw: str, hint: str) -> None:
    with pytest.raises(BadArgument) as caught:
        UserIdConverter().convert(raw)
    message = caught.value.message
    assert hint in message
    assert "is not a Matrix user id" in message
    assert "@sam:example.org" in message
    assert caught.value.show_usage


def test_user_id_suggests_the_lower_case_id() -> None:
    with pytest.raises(BadArgument) as caught:
        UserIdConverter().convert("@Sam:example.org")
    assert "Did you mean `@sam:example.org`?" in caught.value.message


def test_user_id_error_for_a_typed_display_name_explains_pills() -> None:
    with pytest.raises(BadArgument) as caught:
        UserIdConverter().convert("@Sam")
    assert "only their name" in caught.value.message
    assert "`@Sam`" in caught.value.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("LDC-2026-0042", "LDC-2026-0042"),
        ("ldc-2026-42", "LDC-2026-42"),
        ("ab-1999-123456", "AB-1999-123456"),
    ],
)
def test_case_reference_accepts_and_upper_cases(raw: str, expected: str) -> None:
    assert CaseReferenceConverter().convert(raw) == CaseReference(expected)


@pytest.mark.parametrize(
    "raw",
    [
        # Anything that could carry a family's name: no digit, spaces, other characters.
        "JaneDoe",
        "Smith family",
        "LDC 2026 0042",
        "LDC<2026>",
        "LDC-2026-0042!",
        "L1",
        "LDC-2026-" + "0" * 24,
    ],
)
def test_case_reference_rejects_other_text(raw: str) -> None:
    with pytest.raises(BadArgument) as caught:
        CaseReferenceConverter().convert(raw)
    assert "is not a case reference" in caught.value.message
    assert "LDC-2026-0042" in caught.value.message


def test_choice_is_case_insensitive_and_returns_the_declared_option() -> None:
    choice = Choice("on", "off")
    assert choice.convert("ON") == "on"
    assert choice.convert(" Off ") == "off"
    assert choice.label == "on|off"
    assert choice.bare


def test_choice_error_lists_the_options() -> None:
    with pytest.raises(BadArgument) as caught:
        Choice("public_task", "consent").convert("maybe")
    assert (
        caught.value.message == "`maybe` is not one of the choices here: `public_task`, `consent`."
    )


def test_choice_with_a_label_is_not_bare_and_rejects_bad_declarations() -> None:
    assert not Choice("a", "b", label="field").bare
    with pytest.raises(ValueError, match="at least one"):
        Choice()
    with pytest.raises(ValueError, match="case"):
        Choice("On", "on")


def test_text_keeps_the_value_and_enforces_its_length() -> None:
    assert Text().convert("<b>Class teacher</b>") == "<b>Class teacher</b>"
    with pytest.raises(BadArgument) as caught:
        Text(max_length=5).convert("123456")
    assert "6 characters" in caught.value.message
    assert "5" in caught.value.message


def test_integer_range() -> None:
    number = Integer(1, 100)
    assert number.convert("42") == 42
    assert number.convert("+7") == 7
    with pytest.raises(BadArgument, match="is not a whole number"):
        number.convert("ten")
    with pytest.raises(BadArgument, match="is not a whole number"):
        number.convert("1.5")
    with pytest.raises(BadArgument, match="too small: the smallest I accept is 1"):
        number.convert("0")
    with pytest.raises(BadArgument, match="too large: the largest I accept is 100"):
        number.convert("101")


def test_bad_argument_html_escapes_the_value() -> None:
    with pytest.raises(BadArgument) as caught:
        UserIdConverter().convert("<script>alert(1)</script>")
    assert "<script>" not in caught.value.markup.html
    assert "&lt;script&gt;" in caught.value.markup.html


def test_long_values_are_shortened_when_quoted_back() -> None:
    with pytest.raises(BadArgument) as caught:
        CaseReferenceConverter().convert("x" * 500)
    assert len(caught.value.message) < 250


@pytest.mark.parametrize(
    ("annotation", "kind", "rest", "optional"),
    [
        (UserId, UserIdConverter, False, False),
        (CaseReference, CaseReferenceConverter, False, False),
        (Literal["on", "off"], Choice, False, False),
        (str, Text, False, False),
        (int, Integer, False, False),
        (str | None, Text, False, True),
        (UserId | None, UserIdConverter, False, True),
        (Rest[str], Text, True, False),
        (Rest[str] | None, Text, True, True),
    ],
)
def test_converter_for_annotations(annotation: Any, kind: type, rest: bool, optional: bool) -> None:
    spec = converter_for(annotation)
    assert isinstance(spec.converter, kind)
    assert spec.rest is rest
    assert spec.optional is optional


def test_converter_for_honours_an_override_in_annotated() -> None:
    override = Integer(1, 50)
    spec = converter_for(Annotated[int, override] | None)
    assert spec.converter is override
    assert spec.optional
    rest_override = Text(max_length=10)
    spec = converter_for(Annotated[Rest[str], rest_override])
    assert spec.converter is rest_override
    assert spec.rest


@pytest.mark.parametrize("annotation", [float, list[str], str | int, Literal[1, 2]])
def test_converter_for_rejects_unsupported_annotations(annotation: Any) -> None:
    with pytest.raises(TypeError):
        converter_for(annotation)
