"""Replies: the event content shape, escaping, pills and the Markup builder."""

from __future__ import annotations

import html
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.framework.context import RoomKind
from commands.framework.registry import CommandRegistry
from markup import (
    Markup,
    Reply,
    blocks,
    bold,
    bullet_list,
    code,
    day,
    escape,
    lines,
    long_day,
    paragraph,
    pill,
    text,
    user,
)
from tests.unit.test_commands_support import NOW, make_context


def test_to_content_shape_without_mentions() -> None:
    content = Reply("Hello", "<p>Hello</p>").to_content()
    assert content == {
        "msgtype": "m.notice",
        "body": "Hello",
        "format": "org.matrix.custom.html",
        "formatted_body": "<p>Hello</p>",
        "m.mentions": {"user_ids": []},
    }


def test_to_content_lists_intentional_mentions() -> None:
    content = Reply("Sam", "x", ("@sam:example.org",)).to_content()
    assert content["m.mentions"] == {"user_ids": ["@sam:example.org"]}


def test_plain_reply_escapes_html_and_keeps_line_breaks() -> None:
    reply = Reply.plain('<b>Tom & "Jerry"</b>\nnext')
    assert reply.body == '<b>Tom & "Jerry"</b>\nnext'
    assert reply.formatted_body == "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;<br>next"
    assert reply.mentions == ()


def test_mention_reply_pings_exactly_that_person() -> None:
    reply = Reply.mention("@sam:example.org", "I could not read your message.", "Sam <S>")
    assert reply.body == "Sam <S>: I could not read your message."
    assert reply.formatted_body == (
        '<a href="https://matrix.to/#/@sam:example.org">Sam &lt;S&gt;</a>: '
        "I could not read your message."
    )
    assert reply.to_content()["m.mentions"] == {"user_ids": ["@sam:example.org"]}


def test_escape_and_pill_escape_both_parts() -> None:
    assert escape("<a href='x'>&") == "&lt;a href=&#x27;x&#x27;&gt;&amp;"
    assert pill("@sam:example.org", "Sam Smith") == (
        '<a href="https://matrix.to/#/@sam:example.org">Sam Smith</a>'
    )
    assert pill('@x"onmouseover="y:example.org', "<img src=x>") == (
        '<a href="https://matrix.to/#/@x&quot;onmouseover=&quot;y:example.org">'
        "&lt;img src=x&gt;</a>"
    )
    assert pill("@sam:example.org") == (
        '<a href="https://matrix.to/#/@sam:example.org">@sam:example.org</a>'
    )


@given(st.text(alphabet=st.sampled_from("ab \n&<>\"'é😀")) | st.text())
def test_escape_and_text_give_what_the_standard_library_gives_for_any_text(value: str) -> None:
    # Text with nothing to escape is passed through as it is: the result must not differ.
    assert escape(value) == html.escape(value, quote=True)
    assert text(value) == Markup(value, html.escape(value, quote=True).replace("\n", "<br>"))


@given(st.dates())
def test_a_day_is_written_as_people_write_it_for_any_date_in_any_locale(value: date) -> None:
    assert day(value) == f"{value.day} {value:%b} {value.year}"
    assert long_day(value) == f"{value:%a} {value.day} {value:%b} {value.year}"


def test_markup_adds_strings_as_escaped_text() -> None:
    markup = "Role: " + bold("<Class teacher>") + " for " + code("LDC-2026-1") + " & more"
    assert markup.body == "Role: <Class teacher> for `LDC-2026-1` & more"
    assert markup.html == (
        "Role: <strong>&lt;Class teacher&gt;</strong> for <code>LDC-2026-1</code> &amp; more"
    )


def test_user_mentions_only_when_asked_and_without_duplicates() -> None:
    quiet = user("@sam:example.org", "Sam")
    assert quiet.mentions == ()
    loud = user("@sam:example.org", "Sam", mention=True)
    both = loud + " and " + loud + " and " + user("@alex:example.org", mention=True)
    assert both.mentions == ("@sam:example.org", "@alex:example.org")
    assert both.body == "Sam and Sam and @alex:example.org"


def test_block_helpers_build_matching_text_and_html() -> None:
    markup = blocks(
        paragraph("Team ", code("LDC-2026-1"), ":"),
        bullet_list(["<Sam>", user("@alex:example.org", "Alex", mention=True)]),
        lines("one", "two"),
    )
    assert markup.body == "Team `LDC-2026-1`:\n• <Sam>\n• Alex\none\ntwo"
    assert markup.html == (
        "<p>Team <code>LDC-2026-1</code>:</p>"
        '<ul><li>&lt;Sam&gt;</li><li><a href="https://matrix.to/#/@alex:example.org">Alex</a>'
        "</li></ul>one<br>two"
    )
    assert markup.mentions == ("@alex:example.org",)
    assert text("a\nb").html == "a<br>b"
    assert Markup() + "" == Markup("", "")


def test_context_reply_accepts_text_markup_or_trusted_html() -> None:
    ctx = make_context(CommandRegistry(), room_kind=RoomKind.DIRECT)
    ctx.reply("<i>plain</i>")
    ctx.reply("Hi " + user("@sam:example.org", "Sam", mention=True), mentions=["@alex:example.org"])
    ctx.reply("bold", "<b>bold</b>")
    first, second, third = ctx.replies
    assert first.formatted_body == "&lt;i&gt;plain&lt;/i&gt;"
    assert second.mentions == ("@sam:example.org", "@alex:example.org")
    assert third.formatted_body == "<b>bold</b>"
    assert ctx.tx.now() == NOW
    with pytest.raises(TypeError, match="not both"):
        ctx.reply(text("x"), "<b>x</b>")
