"""Property-based tests over every command and subcommand in the registry: whatever text
follows the command (arbitrary unicode, thousands of characters, HTML and markdown, quotes
left open, odd Matrix user ids), the bot answers, never with its "something went wrong"
fault message, its HTML carries only the tags the bot itself writes, and a user's mistake
(the dispatcher's `UserInputError` path) leaves everything stored exactly as it was.

The list of commands is read from `commands.build_registry()`, so a new command or subcommand
is covered as soon as it is registered. Each example runs against its own copy of one
prepared database (a copied file), through the real dispatcher (`run`).
"""

from __future__ import annotations

import html
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.clock import ManualClock
from commands import build_registry
from commands.framework.context import RoomKind
from commands.framework.converters import CaseReferenceConverter, Choice, UserIdConverter
from commands.framework.dispatcher import Dispatcher
from commands.framework.errors import UserInputError
from commands.framework.registry import Command, Group
from markup import MATRIX_TO, Reply
from storage import Database, OutboxItem
from tests.unit.test_team_commands_support import (
    ADMIN,
    BOT,
    DM,
    LEAD,
    NURSE,
    OUTSIDER,
    ROOM,
    START,
    TEACHER,
    WORKER,
    active_family,
    member,
    outbox,
    pending_family,
    run,
    snapshot,
)

FORMER = "@former:council.example"
"""Lapsed from the team but still joined to the room."""
STRANGER = "@stranger:council.example"
"""Someone the roster does not know, on an allowed server."""
PENDING_ROOM = "!pending:council.example"
OTHER_ROOM = "!other:council.example"

SENDERS = (LEAD, TEACHER, NURSE, WORKER, ADMIN, FORMER, STRANGER)
PLACES = (
    (ROOM, RoomKind.FAMILY),
    (PENDING_ROOM, RoomKind.FAMILY),
    (DM, RoomKind.DIRECT),
    (OTHER_ROOM, RoomKind.OTHER),
)

FAILURE = "something went wrong"
EXAMPLES_PER_COMMAND = 50
LONGEST_REPLY = 4000
"""No reply, whatever the input's length, is longer than this: values are quoted back cut."""


def every_command(commands: tuple[Command, ...]) -> list[Command]:
    """Each command, then its subcommands, depth first."""
    found: list[Command] = []
    for item in commands:
        found.append(item)
        if isinstance(item, Group):
            found.extend(every_command(item.subcommands))
    return found


COMMANDS = every_command(build_registry().all())
INVOCATIONS = sorted({" ".join((*item.parents, name)) for item in COMMANDS for name in item.names})
"""Every way to name a command or subcommand, aliases included: "contact set", "family new"."""

WORDS = sorted(
    {name for item in COMMANDS for name in item.names}
    | {
        option
        for item in COMMANDS
        for param in item.params
        if isinstance(param.converter, Choice)
        for option in param.converter.options
    }
)
"""Subcommand names and the choices arguments accept, so examples also reach the handlers."""

INJECTIONS = (
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="https://matrix.to/#/@x:y" onclick="alert(1)">x</a>',
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "</code><script>alert(1)</script><code>",
    "</p></li></ul><iframe>",
    "<mx-reply>quoted</mx-reply>",
    "<!-- comment -->",
    "&lt;script&gt;",
    "&amp;",
    "**x**",
    "`x`",
    "```x```",
    "[x](https://evil.example)",
    "# heading",
    "> quote",
)
QUOTES = ('"', "'", "“", "‘", '"Class teacher', "'open", "“smart", '\\"', "\\", 'a"b', '"x" y"')
USER_IDS = (
    "@",
    "@a:",
    "@:council.example",
    "@x:[::1]:8448",
    "@x:[::1",
    "@x:1.2.3.4:0",
    '@"quote":council.example',
    '@a:council.example"',
    '@a:council.example"><script>',
    "@UPPER:council.example",
    "@bob:council.example:99999",
    "@" + "a" * 300 + ":council.example",
    MATRIX_TO + TEACHER,
    BOT,
    LEAD,
    TEACHER,
    NURSE,
    WORKER,
    ADMIN,
    OUTSIDER,
    FORMER,
    STRANGER,
)
REFERENCES = (
    "LDC-2026-0043",
    "ldc-2026-0044",
    "CIN/2026/00042",
    "LDC-2026-0042",
    "LDC-2026-0077",
    "Jane Smith",
    "Smith1",
    "<b>1</b>",
    'LDC-2026-0043"><script>',
    "1" * 300,
)
VALUES = (
    "+44 1632 960123",
    "01632 960123",
    "sam@council.example",
    "10 Aug",
    "2026-08-10",
    "31/02/2026",
    "Monday",
    "LDC-2026-0043",
    "ldc-2026-0044",
    "CIN/2026/00042",
    "Jane Smith",
    "Class teacher",
    "10",
    "-1",
    "\n",
    "\u200b",
    "\x00",
)
TOKENS = st.sampled_from((*WORDS, *INJECTIONS, *QUOTES, *USER_IDS, *VALUES))


def usable_places(invocation: str) -> list[tuple[str, RoomKind]]:
    """The rooms of PLACES where the command (and each group around it) works."""
    registry = build_registry()
    words = invocation.split()
    chain = [registry.lookup(words[: index + 1]) for index in range(len(words))]
    return [place for place in PLACES if all(item.where.allows(place[1]) for item in chain)]


Message = tuple[str, tuple[str, RoomKind], str]
"""Sender, (room id, room kind), the text after the command."""


def messages(invocation: str) -> st.SearchStrategy[Message]:
    """Who sends the command where, with what after it: the lead, where the command works,
    with arguments of the right shape (to reach the handler) or with anything; or anyone,
    anywhere, with anything."""
    places = usable_places(invocation)
    usable = st.one_of(st.just(places[0]), st.sampled_from(places))
    command = build_registry().lookup(invocation.split())
    return st.one_of(
        st.tuples(st.just(LEAD), usable, shaped(command)),
        st.tuples(st.just(LEAD), usable, arguments(invocation)),
        st.tuples(st.sampled_from(SENDERS), st.sampled_from(PLACES), arguments(invocation)),
    )


def shaped(command: Command) -> st.SearchStrategy[str]:
    """Arguments in the shape the command's parameters take (a choice where it expects one,
    a user id where it wants one), with hostile free text, so examples get past the
    converters into the handler."""
    parts: list[st.SearchStrategy[str]] = []
    for param in command.params:
        converter = param.converter
        if isinstance(converter, Choice):
            part = st.sampled_from(converter.options)
        elif isinstance(converter, UserIdConverter):
            part = st.one_of(st.sampled_from((TEACHER, NURSE, ADMIN)), st.sampled_from(USER_IDS))
        elif isinstance(converter, CaseReferenceConverter):
            part = st.sampled_from(REFERENCES)
        else:
            part = st.one_of(TOKENS, st.lists(TOKENS, min_size=1, max_size=4).map(" ".join))
        parts.append(st.one_of(part, st.just("")) if not param.required else part)
    return st.tuples(*parts).map(lambda values: " ".join(value for value in values if value))


def arguments(invocation: str) -> st.SearchStrategy[str]:
    """The text after the command: its parameters' shape, words that mean something here
    mixed with anything, arbitrary unicode, or thousands of characters."""
    command = build_registry().lookup(invocation.split())
    phrases = st.lists(st.one_of(TOKENS, st.text(max_size=12)), max_size=8).map(" ".join)
    long_text = st.builds(
        lambda piece, count, separator: separator.join([piece] * count),
        st.one_of(TOKENS, st.text(min_size=1, max_size=8)),
        st.integers(min_value=300, max_value=1500),
        st.sampled_from(("", " ", "\n")),
    )
    return st.one_of(shaped(command), phrases, st.text(max_size=300), long_text)


# --- what a safe reply looks like -------------------------------------------------------------

SIMPLE_TAGS = frozenset({"p", "br", "ul", "li", "code", "strong"})
TAG = re.compile(r"(<[^<>]*>)")
PILL = re.compile(r'<a href="([^"<>]*)">')
SAFE_LINK = re.compile(
    r"https://matrix\.to/#/![A-Za-z0-9._~:-]+(\?via=[A-Za-z0-9.:-]+)?|tel:\+[0-9]{4,15}"
)
"""Besides user pills, the bot links family rooms (`!cases`) and phone numbers, nothing else."""
CLOSING = re.compile(r"</([a-z]+)>")
BARE_TAG = re.compile(r"<([a-z]+)>")
ENTITY = re.compile(r"&(?!(?:amp|lt|gt|quot|#x27);)")


def markup_problems(formatted_body: str) -> list[str]:
    """What is wrong with an HTML body the bot would send: any tag but its own few, an
    attribute but a pill's matrix.to href, unbalanced tags, or text that escaped escaping."""
    problems: list[str] = []
    # Quoted back as escaped text, "onerror" or "javascript:" are harmless words; as an
    # attribute or a link they are caught below, with every attribute but a pill's href.
    lowered = formatted_body.lower()
    for needle in ("<script", "<img"):
        if needle in lowered:
            problems.append(f"contains {needle!r}")
    open_tags: list[str] = []
    for index, part in enumerate(TAG.split(formatted_body)):
        if index % 2 == 0:
            if "<" in part or ">" in part:
                problems.append(f"unescaped angle bracket in text {part[:80]!r}")
            if ENTITY.search(part):
                problems.append(f"unescaped ampersand in text {part[:80]!r}")
            continue
        if (pill := PILL.fullmatch(part)) is not None:
            href = html.unescape(pill.group(1))
            if not href.startswith(MATRIX_TO + "@") and not SAFE_LINK.fullmatch(href):
                problems.append(f"link to {href[:80]!r}")
            open_tags.append("a")
        elif (bare := BARE_TAG.fullmatch(part)) is not None and bare.group(1) in SIMPLE_TAGS:
            if bare.group(1) != "br":
                open_tags.append(bare.group(1))
        elif (closing := CLOSING.fullmatch(part)) is not None and closing.group(1) in (
            SIMPLE_TAGS | {"a"}
        ) - {"br"}:
            if not open_tags or open_tags.pop() != closing.group(1):
                problems.append(f"{part} closes nothing open")
        else:
            problems.append(f"tag the bot does not write: {part[:80]!r}")
    if open_tags:
        problems.append(f"left open: {open_tags}")
    return problems


def test_the_markup_check_catches_what_it_is_for() -> None:
    """The checker itself, on what the bot writes and on what it must never write."""
    assert (
        markup_problems(
            '<p>Hi <a href="https://matrix.to/#/@a:b">A &amp; B</a><br><code>&lt;x&gt;</code></p>'
            "<ul><li><strong>x</strong></li></ul>"
            '<a href="https://matrix.to/#/!team42:council.example?via=council.example">T</a>'
            '<a href="tel:+442079460123">020 7946 0123</a>'
        )
        == []
    )
    for bad in (
        "<p><script>alert(1)</script></p>",
        '<img src="x">',
        '<a href="https://evil.example/">x</a>',
        '<a href="tel:javascript:alert(1)">x</a>',
        '<a href="https://matrix.to/#/!room:x?via=x&amp;evil=1">x</a>',
        '<a href="https://matrix.to/#/@a:b" onclick="x">x</a>',
        "<p>x",
        "</p>",
        "<em>x</em>",
        "a & b",
        "<p>a > b</p>",
    ):
        assert markup_problems(bad), bad


# --- running one example ----------------------------------------------------------------------


@contextmanager
def user_errors() -> Iterator[list[UserInputError]]:
    """The errors the dispatcher turns into replies as the user's mistake (its one path for
    them, `Dispatcher._user_error`), recorded while the block runs."""
    seen: list[UserInputError] = []
    original = Dispatcher._user_error

    def recording(self: Dispatcher, error: UserInputError, command: Command | None) -> Any:
        seen.append(error)
        return original(self, error, command)

    with patch.object(Dispatcher, "_user_error", recording):
        yield seen


async def prepare(path: Path) -> None:
    """An active family (lead, a teacher who shares her details, a nurse who does not, a
    sensitive involvement, a lapsed member who stayed) and a second family still pending."""
    db = await Database.open(path, clock=ManualClock(START))
    try:
        family = await active_family(db, joined=(TEACHER, NURSE, WORKER, FORMER))
        async with db.transaction() as tx:
            await tx.practitioners.update_contact(
                TEACHER, phone="01632 960123", email="tara@school.example"
            )
            await tx.practitioners.set_share_contact(TEACHER, True)
            await tx.practitioners.update_contact(NURSE, phone="07700 900456")
            await tx.practitioners.set_share_contact(NURSE, False)
            await tx.involvements.set_role(family.id, TEACHER, "Class teacher")
            await tx.involvements.set_sensitive(family.id, WORKER, True)
            former = await tx.involvements.get(family.id, FORMER)
            assert former is not None
            await tx.involvements.end(former.id, "lapsed")
        await pending_family(db, "LDC-2026-0077", PENDING_ROOM)
        await member(db, LEAD, "join", room_id=PENDING_ROOM)
    finally:
        await db.close()


@pytest.fixture(scope="module")
async def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once; each example copies the file."""
    path = tmp_path_factory.mktemp("properties") / "template.sqlite3"
    await prepare(path)
    return path


def answers_to(items: list[OutboxItem], event_id: str) -> list[OutboxItem]:
    """Messages queued in reply to the event outside `ctx.replies` (`!leave`'s goodbye)."""
    return [
        item
        for item in items
        if item.kind == "message"
        and item.payload["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        == event_id
    ]


@pytest.mark.parametrize("invocation", INVOCATIONS)
@settings(
    max_examples=EXAMPLES_PER_COMMAND,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_arguments_get_a_safe_answer(
    template: Path, invocation: str, data: st.DataObject
) -> None:
    sender, (room_id, room_kind), args = data.draw(messages(invocation), label="message")
    body = f"!{invocation} {args}"
    event_id = "$property"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "patchwork.sqlite3"
        shutil.copyfile(template, path)
        db = await Database.open(path, clock=ManualClock(START))
        try:
            before = await snapshot(db)
            queued_before = {item.id for item in await outbox(db)}
            with user_errors() as errors:
                replies = await run(
                    db,
                    body,
                    sender=sender,
                    room_id=room_id,
                    room_kind=room_kind,
                    event_id=event_id,
                )
            after = await snapshot(db)
            queued = [item for item in await outbox(db) if item.id not in queued_before]
        finally:
            await db.close()

    sent = [
        *replies,
        *(
            Reply(item.payload["content"]["body"], item.payload["content"]["formatted_body"])
            for item in queued
            if item.kind == "message"
        ),
    ]
    assert replies or answers_to(queued, event_id), "no answer at all"
    for reply in sent:
        assert reply.body.strip(), "an empty reply"
        assert FAILURE not in reply.body, reply.body
        assert markup_problems(reply.formatted_body) == [], reply.formatted_body
        assert len(reply.body) <= LONGEST_REPLY, len(reply.body)
    event("user's mistake" if errors else "handled")
    if errors:
        assert len(replies) == 1, replies
        assert after == before, "a refused command changed what is stored"
