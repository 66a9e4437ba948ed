"""The dispatcher's paths: every outcome of a message becomes exactly the right reply."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Literal

import pytest

from commands.framework.context import CommandContext, RoomKind
from commands.framework.converters import CaseReference, Choice, Integer, Rest, UserId
from commands.framework.dispatcher import Dispatcher
from commands.framework.errors import UserInputError
from commands.framework.permissions import admin_only, any_of
from commands.framework.registry import (
    DIRECT,
    FAMILY_ROOM,
    CommandRegistry,
    command,
    group,
    subcommand_group,
)
from markup import code, user
from tests.unit.test_commands_support import fake_tx, make_context

SECRET = "database is locked at /var/lib/patchwork/secret.db"


@command("echo", summary="Say it back.", aliases=("say",))
async def echo(ctx: CommandContext, words: Rest[str]) -> None:
    """Test command."""
    ctx.reply("You said: " + words)


@command("whois", summary="Who is on the team.", where=FAMILY_ROOM)
async def whois(ctx: CommandContext, query: Rest[str] | None = None) -> None:
    """Test command."""
    ctx.reply(f"whois query={query!r}")


@command("invite", summary="Invite a colleague.", where=FAMILY_ROOM)
async def invite(ctx: CommandContext, who: UserId, role: Rest[str]) -> None:
    """Test command."""
    fake_tx(ctx).write(f"invite {who} as {role}")
    ctx.reply("Invited " + user(who, "Sam", mention=True) + " as " + code(role) + ".")


@command("confirm", summary="Still involved.", where=FAMILY_ROOM)
async def confirm(ctx: CommandContext) -> None:
    """Test command."""
    ctx.reply("Thanks.")


async def sender_is_lead(ctx: CommandContext) -> bool:
    return ctx.sender == "@lead:example.org"


@command(
    "lead",
    summary="Hand over the lead.",
    where=FAMILY_ROOM,
    permission=any_of(sender_is_lead, admin_only),
    permission_message="Only the lead or an administrator can hand over the lead role.",
)
async def lead(ctx: CommandContext, who: UserId) -> None:
    """Test command."""
    ctx.reply(f"lead={who}")


@command("audit", summary="Look-ups.", where=FAMILY_ROOM)
async def audit(ctx: CommandContext, count: Annotated[int, Integer(1, 100)] = 20) -> None:
    """Test command."""
    ctx.reply(f"audit count={count}")


@command("fail", summary="Breaks.")
async def fail(ctx: CommandContext) -> None:
    """Test command."""
    fake_tx(ctx).write("half-done")
    ctx.reply("Done!")
    raise RuntimeError(SECRET)


@command("closed", summary="Refuses.")
async def closed(ctx: CommandContext, quiet: Literal["quiet"] | None = None) -> None:
    """Test command."""
    fake_tx(ctx).write("half-done")
    ctx.reply("Working on it")
    raise UserInputError("That family's record is closed.", show_usage=quiet is None)


@command("set", summary="Change a detail.")
async def contact_set(
    ctx: CommandContext,
    field: Annotated[str, Choice("phone", "email", label="field")],
    value: Rest[str],
) -> None:
    """Test command."""
    ctx.reply(f"set {field}={value}")


@command("share", summary="Share or not.")
async def contact_share(ctx: CommandContext, choice: Literal["on", "off"]) -> None:
    """Test command."""
    ctx.reply(f"share {choice}")


@group("contact", summary="Your details.", subcommands=(contact_set, contact_share))
async def contact(ctx: CommandContext) -> None:
    """Test command."""
    ctx.reply("your details")


@command("new", summary="New family room.", where=DIRECT)
async def family_new(ctx: CommandContext, reference: CaseReference) -> None:
    """Test command."""
    ctx.reply(f"new {reference}")


@command("close", summary="Close the case.", where=FAMILY_ROOM)
async def family_close(ctx: CommandContext, reason: Rest[str] | None = None) -> None:
    """Test command."""
    ctx.reply(f"close {reason}")


FAMILY = subcommand_group(
    "family",
    summary="Governance records.",
    subcommands=(family_new, family_close),
    permission=admin_only,
    permission_message="Only an administrator can do that.",
)


def make_registry() -> CommandRegistry:
    return CommandRegistry(
        [echo, whois, invite, confirm, lead, audit, fail, closed, contact, FAMILY]
    )


async def run(
    body: str,
    *,
    room_kind: RoomKind = RoomKind.FAMILY,
    sender: str = "@sam:example.org",
    is_admin: bool = False,
    prefix: str = "!",
) -> CommandContext:
    registry = make_registry()
    ctx = make_context(registry, room_kind=room_kind, sender=sender, is_admin=is_admin)
    handled = await Dispatcher(registry, prefix=prefix).handle(ctx, body)
    assert handled
    return ctx


def only_reply(ctx: CommandContext) -> str:
    assert len(ctx.replies) == 1, ctx.replies
    return ctx.replies[0].body


@pytest.mark.parametrize("body", ["hello", "hello !help", "!!", "! echo", "> <@a:b> !echo\n\nok"])
async def test_chat_is_not_handled_and_gets_no_reply(body: str) -> None:
    registry = make_registry()
    ctx = make_context(registry)
    assert await Dispatcher(registry).handle(ctx, body) is False
    assert ctx.replies == []
    assert fake_tx(ctx).savepoints == []


async def test_a_command_runs_inside_a_released_savepoint() -> None:
    ctx = await run("!invite @sam:example.org Class teacher")
    assert only_reply(ctx) == "Invited Sam as `Class teacher`."
    assert fake_tx(ctx).savepoints == ["released"]
    assert fake_tx(ctx).writes == ["invite @sam:example.org as Class teacher"]
    reply = ctx.replies[0]
    assert reply.mentions == ("@sam:example.org",)
    assert '<a href="https://matrix.to/#/@sam:example.org">Sam</a>' in reply.formatted_body


async def test_aliases_and_rest_of_line_quotes() -> None:
    assert only_reply(await run('!say "hello world"')) == "You said: hello world"
    assert only_reply(await run("!echo it's \"odd")) == "You said: it's \"odd"
    assert only_reply(await run("!ECHO Two\nlines")) == "You said: Two\nlines"


async def test_unknown_command_suggests_the_closest() -> None:
    ctx = await run("!whoami")
    body = only_reply(ctx)
    assert body == (
        "I don't know the command `!whoami`. Did you mean `!whois`? "
        "Send `!help` to see what you can do here."
    )
    assert "<code>!whois</code>" in ctx.replies[0].formatted_body
    assert fake_tx(ctx).savepoints == []


async def test_unknown_command_without_a_close_name_has_no_suggestion() -> None:
    body = only_reply(await run("!xyzzy"))
    assert body.startswith("I don't know the command `!xyzzy`.")
    assert "Did you mean" not in body
    assert body.endswith("Send `!help` to see what you can do here.")


async def test_unknown_command_text_is_escaped_in_html() -> None:
    ctx = await run("!x<script>alert(1)</script>")
    html = ctx.replies[0].formatted_body
    assert "<script>" not in html
    assert "<code>!x&lt;script&gt;alert(1)&lt;/script&gt;</code>" in html


@pytest.mark.parametrize(
    ("body", "room_kind", "expected"),
    [
        ("!whois", RoomKind.DIRECT, "`!whois` only works in a family room."),
        (
            "!family new LDC-2026-1",
            RoomKind.FAMILY,
            "`!family new` only works in a direct chat with me.",
        ),
        (
            "!echo hi",
            RoomKind.OTHER,
            "`!echo` only works in a family room or in a direct chat with me.",
        ),
    ],
)
async def test_wrong_place_says_where_it_works(
    body: str, room_kind: RoomKind, expected: str
) -> None:
    ctx = await run(body, room_kind=room_kind, is_admin=True)
    assert only_reply(ctx) == expected
    assert fake_tx(ctx).savepoints == []


async def test_permission_denied_uses_the_command_message_without_usage() -> None:
    ctx = await run("!lead @alex:example.org")
    assert only_reply(ctx) == "Only the lead or an administrator can hand over the lead role."
    assert fake_tx(ctx).savepoints == []


@pytest.mark.parametrize(
    ("sender", "is_admin"), [("@lead:example.org", False), ("@sam:example.org", True)]
)
async def test_permission_granted_by_any_check(sender: str, is_admin: bool) -> None:
    ctx = await run("!lead @alex:example.org", sender=sender, is_admin=is_admin)
    assert only_reply(ctx) == "lead=@alex:example.org"


async def test_group_permission_is_checked_before_the_subcommand() -> None:
    ctx = await run("!family close moved away")
    assert only_reply(ctx) == "Only an administrator can do that."
    ctx = await run("!family close moved away", is_admin=True)
    assert only_reply(ctx) == "close moved away"


async def test_too_few_arguments_name_what_is_missing_and_show_usage() -> None:
    ctx = await run("!invite")
    assert only_reply(ctx) == (
        "`!invite` needs `<@user:server>` and `<role>`.\nUsage: `!invite <@user:server> <role>`"
    )
    assert "<br>Usage: <code>!invite &lt;@user:server&gt; &lt;role&gt;</code>" in (
        ctx.replies[0].formatted_body
    )
    assert only_reply(await run("!invite @sam:example.org")).startswith("`!invite` needs `<role>`.")


async def test_too_many_arguments() -> None:
    assert only_reply(await run("!confirm yes please")) == (
        "`!confirm` takes nothing after it, but got `yes please`.\nUsage: `!confirm`"
    )
    assert only_reply(await run("!lead @a:example.org @b:example.org", is_admin=True)) == (
        "Too much for `!lead`: I did not expect `@b:example.org`.\nUsage: `!lead <@user:server>`"
    )


async def test_bad_value_gives_the_converter_message_and_usage() -> None:
    ctx = await run("!invite sam teacher")
    assert only_reply(ctx) == (
        "`sam` is not a Matrix user id: a user id starts with @. "
        "Write the id in full, like `@sam:example.org`.\n"
        "Usage: `!invite <@user:server> <role>`"
    )
    assert fake_tx(ctx).savepoints == []


async def test_bad_value_is_escaped_in_html() -> None:
    ctx = await run("!invite <b>x</b> teacher")
    html = ctx.replies[0].formatted_body
    assert "<b>" not in html
    assert "<code>&lt;b&gt;x&lt;/b&gt;</code>" in html


async def test_unclosed_quote_is_a_user_error_with_usage() -> None:
    body = only_reply(await run('!invite "@sam:example.org teacher'))
    assert "never closed" in body
    assert body.endswith("Usage: `!invite <@user:server> <role>`")


async def test_optional_arguments_take_defaults_and_are_converted() -> None:
    assert only_reply(await run("!audit")) == "audit count=20"
    assert only_reply(await run("!audit 5")) == "audit count=5"
    assert only_reply(await run("!whois")) == "whois query=None"
    assert only_reply(await run("!audit 0")) == (
        "0 is too small: the smallest I accept is 1.\nUsage: `!audit [count]`"
    )


async def test_user_error_from_the_handler_rolls_back_and_drops_its_replies() -> None:
    ctx = await run("!closed")
    assert only_reply(ctx) == "That family's record is closed.\nUsage: `!closed [quiet]`"
    tx = fake_tx(ctx)
    assert tx.savepoints == ["rolled back"]
    assert tx.writes == []
    assert only_reply(await run("!closed quiet")) == "That family's record is closed."


async def test_unexpected_error_gives_a_reference_and_logs_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="commands.framework.dispatcher"):
        ctx = await run("!fail")
    body = only_reply(ctx)
    match = re.fullmatch(
        r"Sorry, something went wrong on my side\. If it keeps happening, tell your "
        r"administrator the reference ([0-9A-F]{8})\.",
        body,
    )
    assert match is not None, body
    assert SECRET not in body
    assert SECRET not in ctx.replies[0].formatted_body
    assert "RuntimeError" not in body
    tx = fake_tx(ctx)
    assert tx.savepoints == ["rolled back"]
    assert tx.writes == []
    [record] = [r for r in caplog.records if r.name == "commands.framework.dispatcher"]
    assert match.group(1) in record.getMessage()
    assert "!fail" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is not None
    assert SECRET in str(record.exc_info[1])


async def test_references_differ_between_failures() -> None:
    first = only_reply(await run("!fail"))
    second = only_reply(await run("!fail"))
    assert first != second


async def test_a_failing_permission_check_is_an_unexpected_error() -> None:
    async def broken(ctx: CommandContext) -> bool:
        raise RuntimeError(SECRET)

    @command("guarded", summary="x", permission=broken)
    async def guarded(ctx: CommandContext) -> None:
        """Test command."""
        ctx.reply("ran")

    registry = CommandRegistry([guarded])
    ctx = make_context(registry)
    await Dispatcher(registry).handle(ctx, "!guarded")
    assert only_reply(ctx).startswith("Sorry, something went wrong on my side.")
    assert fake_tx(ctx).savepoints == []


async def test_group_runs_its_own_handler_or_a_subcommand() -> None:
    assert only_reply(await run("!contact")) == "your details"
    assert only_reply(await run("!contact set phone 01234 567 890")) == "set phone=01234 567 890"
    assert only_reply(await run("!Contact SHARE On")) == "share on"


async def test_unknown_subcommand_lists_the_group_usage() -> None:
    assert only_reply(await run("!contact delete")) == (
        "`!contact` has no subcommand `delete`. Its subcommands are `set`, `share`.\n"
        "Usage:\n"
        "`!contact`\n"
        "`!contact set <field> <value>`\n"
        "`!contact share on|off`"
    )


async def test_bad_subcommand_value_shows_the_subcommand_usage() -> None:
    assert only_reply(await run("!contact share maybe")) == (
        "`maybe` is not one of the choices here: `on`, `off`.\nUsage: `!contact share on|off`"
    )


async def test_group_without_its_own_action_asks_for_a_subcommand() -> None:
    body = only_reply(await run("!family", room_kind=RoomKind.DIRECT, is_admin=True))
    assert body == (
        "`!family` needs a subcommand.\nUsage:\n`!family new <reference>`\n`!family close [reason]`"
    )


async def test_subcommand_converts_its_arguments() -> None:
    ctx = await run("!family new ldc-2026-42", room_kind=RoomKind.DIRECT, is_admin=True)
    assert only_reply(ctx) == "new LDC-2026-42"


async def test_another_prefix_is_used_in_messages() -> None:
    ctx = await run("?whoami", prefix="?")
    assert only_reply(ctx).startswith("I don't know the command `?whoami`. Did you mean `?whois`?")
    assert ctx.prefix == "?"
    registry = make_registry()
    ctx = make_context(registry)
    assert await Dispatcher(registry, prefix="?").handle(ctx, "!echo hi") is False


def test_prefix_must_be_visible() -> None:
    with pytest.raises(ValueError, match="prefix"):
        Dispatcher(make_registry(), prefix=" ")
