"""Splitting message text into a command name and arguments."""

from __future__ import annotations

import pytest

from commands.framework.errors import UserInputError
from commands.framework.parser import (
    ArgumentReader,
    Invocation,
    command_text,
    parse_invocation,
    split_args,
    strip_reply_fallback,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!help", Invocation("help", "")),
        ("!HELP Contact", Invocation("help", "Contact")),
        ("   !whois  Sam Smith  ", Invocation("whois", "Sam Smith")),
        (
            "!invite\n@sam:example.org Class teacher",
            Invocation("invite", "@sam:example.org Class teacher"),
        ),
        ("!attention line one\nline two", Invocation("attention", "line one\nline two")),
        ("!foo<script>", Invocation("foo<script>", "")),
    ],
)
def test_parse_invocation_reads_commands(body: str, expected: Invocation) -> None:
    assert parse_invocation(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "hello !help",
        "!!",
        "! help",
        "!",
        "",
        "   ",
        "!1st",
        "!<script>",
        "help",
        "?help",
        "!éclair",
    ],
)
def test_parse_invocation_ignores_chat(body: str) -> None:
    assert parse_invocation(body) is None


def test_parse_invocation_uses_the_given_prefix() -> None:
    assert parse_invocation("?help", prefix="?") == Invocation("help", "")
    assert parse_invocation("!help", prefix="?") is None
    assert parse_invocation("pw: help", prefix="pw: ") == Invocation("help", "")


def test_reply_fallback_is_stripped_before_parsing() -> None:
    body = "> <@alex:example.org> Can someone check who the lead is?\n> Thanks\n\n!whois lead"
    assert parse_invocation(body) == Invocation("whois", "lead")


def test_reply_fallback_quoting_a_command_is_not_a_command() -> None:
    body = "> <@alex:example.org> !help\n\nthanks, that worked"
    assert parse_invocation(body) is None


def test_strip_reply_fallback_keeps_ordinary_text() -> None:
    assert strip_reply_fallback("no quote here\n> later") == "no quote here\n> later"
    assert strip_reply_fallback("> <@a:b> x\n>\n> y\n\nreply") == "reply"


def test_invocation_args_are_split_lazily() -> None:
    invocation = parse_invocation('!contact set job "Class teacher"')
    assert invocation is not None
    assert invocation.args == ["set", "job", "Class teacher"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b  c", ["a", "b", "c"]),
        ('"Class teacher" lead', ["Class teacher", "lead"]),
        ("'Class teacher' lead", ["Class teacher", "lead"]),
        ("“Class teacher” lead", ["Class teacher", "lead"]),
        ("‘Class teacher’ lead", ["Class teacher", "lead"]),
        ("„Klassenlehrerin“ x", ["Klassenlehrerin", "x"]),
        ('"mixed ”', ["mixed "]),
        ("Children's centre", ["Children's", "centre"]),
        ("I’m here", ["I’m", "here"]),
        ("'Children's centre'", ["Children's centre"]),
        ('"say \\"hi\\""', ['say "hi"']),
        ('\\"quoted\\"', ['"quoted"']),
        ("back\\\\slash", ["back\\slash"]),
        ("C:\\path \\o/", ["C:\\path", "\\o/"]),
        ('""', [""]),
        ("", []),
    ],
)
def test_split_args(text: str, expected: list[str]) -> None:
    assert split_args(text) == expected


@pytest.mark.parametrize("text", ['"Class teacher', "“Class teacher", "'abc", '"abc"def'])
def test_split_args_rejects_an_unclosed_quote(text: str) -> None:
    with pytest.raises(UserInputError) as caught:
        split_args(text)
    assert "never closed" in caught.value.message
    assert text[0] in caught.value.message


def test_reader_rest_takes_the_raw_remainder() -> None:
    reader = ArgumentReader('@sam:example.org "Class teacher, Year 3" (part time)')
    assert reader.next() == "@sam:example.org"
    assert reader.rest() == '"Class teacher, Year 3" (part time)'
    assert reader.at_end()
    assert reader.next() is None


def test_reader_rest_unquotes_one_quoted_value_and_tolerates_odd_quotes() -> None:
    assert ArgumentReader('  "Class teacher"  ').rest() == "Class teacher"
    assert ArgumentReader('"unclosed note').rest() == '"unclosed note'


def test_reader_peek_does_not_consume() -> None:
    reader = ArgumentReader("set phone")
    assert reader.peek() == "set"
    assert reader.next() == "set"
    assert reader.next() == "phone"


def test_command_text_uses_pills_from_the_html_body() -> None:
    body = "!invite Sam Smith teacher"
    formatted = (
        '!invite <a href="https://matrix.to/#/@sam:example.org">Sam Smith</a> teacher &amp; lead'
    )
    assert command_text(body, formatted) == "!invite @sam:example.org teacher & lead"


def test_command_text_skips_the_html_reply_fallback_and_keeps_plain_bodies() -> None:
    formatted = (
        '<mx-reply><blockquote><a href="https://matrix.to/#/!room/$ev">In reply to</a> '
        '<a href="https://matrix.to/#/@alex:example.org">Alex</a><br>hi</blockquote></mx-reply>'
        '!lead <a href="https://matrix.to/#/%40sam%3Aexample.org">Sam</a>'
    )
    assert command_text("ignored", formatted) == "!lead @sam:example.org"
    assert command_text("!help", None) == "!help"
    assert command_text("!help", "<b>!help</b>") == "!help"
