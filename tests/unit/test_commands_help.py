"""`!help`: generated from the registry and filtered by the kind of room."""

from __future__ import annotations

import pytest

from commands import help as help_module
from commands.framework.context import CommandContext, RoomKind
from commands.framework.converters import CaseReference, Rest, UserId
from commands.framework.dispatcher import Dispatcher
from commands.framework.registry import (
    DIRECT,
    FAMILY_ROOM,
    CommandRegistry,
    command,
    group,
    subcommand_group,
)
from tests.unit.test_commands_support import make_context


@command("whois", summary="Who is on this family's team.", where=FAMILY_ROOM, aliases=("who",))
async def whois(ctx: CommandContext, query: Rest[str] | None = None) -> None:
    """Test command."""


@command(
    "invite",
    summary="Invite a colleague <with> their role.",
    description="They join the team & see new messages only.",
    where=FAMILY_ROOM,
)
async def invite(ctx: CommandContext, who: UserId, role: Rest[str]) -> None:
    """Test command."""


@command("set", summary="Change one of your details.")
async def contact_set(ctx: CommandContext, field: str, value: Rest[str]) -> None:
    """Test command."""


@group("contact", summary="Your contact details.", subcommands=(contact_set,))
async def contact(ctx: CommandContext) -> None:
    """Test command."""


@command("new", summary="Create a family room.", where=DIRECT)
async def family_new(ctx: CommandContext, reference: CaseReference) -> None:
    """Test command."""


@command("close", summary="Close the case.", where=FAMILY_ROOM)
async def family_close(ctx: CommandContext, reason: Rest[str] | None = None) -> None:
    """Test command."""


FAMILY = subcommand_group(
    "family", summary="Family records.", subcommands=(family_new, family_close)
)


async def ask(body: str, room_kind: RoomKind = RoomKind.FAMILY) -> tuple[str, str]:
    registry = CommandRegistry([*help_module.COMMANDS, whois, invite, contact, FAMILY])
    ctx = make_context(registry, room_kind=room_kind)
    assert await Dispatcher(registry).handle(ctx, body)
    assert len(ctx.replies) == 1
    return ctx.replies[0].body, ctx.replies[0].formatted_body


async def test_help_in_a_family_room_lists_what_works_there() -> None:
    body, html = await ask("!help")
    assert body == (
        "What you can do in this family room:\n"
        "• `!contact` — Your contact details.\n"
        "• `!contact set` — Change one of your details.\n"
        "• `!family close` — Close the case.\n"
        "• `!help` — Show what you can do here, or how to use one command.\n"
        "• `!invite` — Invite a colleague <with> their role.\n"
        "• `!whois` — Who is on this family's team.\n"
        "Send `!help <command>` to see how to use one of them."
    )
    assert html.startswith(
        "<p>What you can do in this family room:</p><ul><li><code>!contact</code>"
    )
    assert "<li><code>!invite</code> — Invite a colleague &lt;with&gt; their role.</li>" in html
    assert "!family new" not in body


async def test_help_in_a_direct_chat_hides_family_room_commands() -> None:
    body, _ = await ask("!help", RoomKind.DIRECT)
    assert "`!family new` — Create a family room." in body
    assert "!whois" not in body
    assert "!invite" not in body
    assert "!family close" not in body
    assert "`!contact set`" in body


@pytest.mark.parametrize("body", ["!help invite", "!help !invite", "!HELP INVITE"])
async def test_help_for_one_command(body: str) -> None:
    text, html = await ask(body)
    assert text == (
        "`!invite <@user:server> <role>`\n"
        "Invite a colleague <with> their role.\n"
        "They join the team & see new messages only.\n"
        "Works in a family room."
    )
    assert "<p><code>!invite &lt;@user:server&gt; &lt;role&gt;</code></p>" in html
    assert "They join the team &amp; see new messages only." in html


async def test_help_for_a_command_that_works_elsewhere_still_answers() -> None:
    text, _ = await ask("!help whois", RoomKind.DIRECT)
    assert text.startswith("`!whois [query]`")
    assert "Also: `!who`" in text
    assert text.endswith("Works in a family room.")


async def test_help_for_a_group_lists_subcommands_and_where_they_differ() -> None:
    text, _ = await ask("!help family")
    assert text == (
        "`!family new <reference>`\n"
        "`!family close [reason]`\n"
        "Family records.\n"
        "Works in a family room or in a direct chat with me.\n"
        "Subcommands:\n"
        "• `!family new` — Create a family room. (works in a direct chat with me)\n"
        "• `!family close` — Close the case. (works in a family room)"
    )


async def test_help_for_a_subcommand() -> None:
    text, _ = await ask("!help contact set")
    assert text.startswith("`!contact set <field> <value>`\nChange one of your details.")


async def test_help_for_an_unknown_command_is_a_clear_escaped_error() -> None:
    text, html = await ask("!help <b>x</b>")
    assert text == (
        "I don't know the command `!<b>x</b>`. Send `!help` to see what you can do here."
    )
    assert "<b>" not in html
    assert "<code>!&lt;b&gt;x&lt;/b&gt;</code>" in html


async def test_help_suggests_a_close_name_and_rejects_unknown_subcommands() -> None:
    text, _ = await ask("!help whoiss")
    assert "Did you mean `!whois`?" in text
    text, _ = await ask("!help contact sett")
    assert text == "`!contact` has no subcommand `sett`. Did you mean `!contact set`?"
    text, _ = await ask("!help contact delete")
    assert text == "`!contact` has no subcommand `delete`. Its subcommands are `set`."
    text, _ = await ask("!help whois extra")
    assert text == "`!whois` has no subcommands."


async def test_help_with_only_the_prefix_asks_which_command() -> None:
    text, _ = await ask("!help !")
    assert text.startswith("Name the command you want to know about, like `!help whois`.")


async def test_help_is_refused_in_other_rooms() -> None:
    text, _ = await ask("!help", RoomKind.OTHER)
    assert text == "`!help` only works in a family room or in a direct chat with me."
