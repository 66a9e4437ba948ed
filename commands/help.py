"""`!help`: what you can do in this room, and how to use one command, read from the registry
so help can never disagree with what the dispatcher accepts.

Help is tailored to the caller: each command's own permission check (the one the dispatcher
applies) decides whether it is listed among what they can do, or under who can do it
instead (for an ordinary member, the lead-only commands), so nobody is offered a command that
would only refuse them, and nobody is left unaware that it exists."""

from __future__ import annotations

from commands.framework.context import CommandContext, RoomKind
from commands.framework.converters import Rest, Text
from commands.framework.errors import UserInputError
from commands.framework.parser import split_args
from commands.framework.registry import ANYWHERE, Command, Group, command
from markup import Markup, blocks, bullet_list, code, lines, paragraph, text

HERE = {
    RoomKind.FAMILY: "in this family room",
    RoomKind.DIRECT: "in this direct chat",
    RoomKind.OTHER: "here",
}


@command(
    "help",
    summary="Show what you can do here, or how to use one command.",
    description=(
        "Send !help alone for the commands that work in this room, or !help and the name of "
        "a command, like !help whois, for how to use it."
    ),
    where=ANYWHERE,
    converters={"topic": Text(label="command")},
)
async def help_command(ctx: CommandContext, topic: Rest[str] | None = None) -> None:
    """One reply, so the answer stays together in a busy room."""
    if topic is None:
        ctx.reply(await overview(ctx))
        return
    words = split_args(topic)
    if words:
        words[0] = words[0].removeprefix(ctx.prefix)
    if not words or not words[0]:
        raise UserInputError(
            "Name the command you want to know about, like " + code(f"{ctx.prefix}help whois") + "."
        )
    item = ctx.registry.lookup(words, ctx.prefix)
    ctx.reply(details(item, ctx.prefix, restricted=await _refusal(item, ctx)))


async def _refusal(item: Command, ctx: CommandContext) -> str | None:
    """The permission message that running `item` here would give, or None if allowed.
    A group's check comes before its subcommand's, as in the dispatcher."""
    chain: list[Command] = []
    for name in item.parents:
        parent = ctx.registry.get(name) if not chain else _child(chain[-1], name)
        if parent is None:
            break
        chain.append(parent)
    for check in (*chain, item):
        if check.permission is not None and not await check.permission(ctx):
            return check.permission_message
    return None


def _child(group: Command, name: str) -> Command | None:
    return group.get(name) if isinstance(group, Group) else None


async def _entries(
    item: Command, ctx: CommandContext, refused: str | None, others: dict[str, list[Markup]]
) -> list[Markup]:
    """List lines for a command usable here: itself, then its subcommands usable here. One
    the caller may not run goes to `others`, under the message that says who may."""
    if not item.usable_in(ctx.room_kind):
        return []
    if refused is None and item.permission is not None and not await item.permission(ctx):
        refused = item.permission_message
    entries: list[Markup] = []
    if not isinstance(item, Group) or item.runs_alone:
        line = code(ctx.prefix + item.qualified_name) + " — " + item.summary
        if refused is None:
            entries.append(line)
        else:
            others.setdefault(refused, []).append(line)
    if isinstance(item, Group):
        for sub in item.subcommands:
            entries.extend(await _entries(sub, ctx, refused, others))
    return entries


def _who_may(message: str) -> Markup:
    """A permission message ("Only the lead ... can do that.") as a heading for a list."""
    if message.endswith(" do that."):
        return text(message.removesuffix(" do that.") + " use these:")
    return text(message.rstrip(".") + ":")


async def overview(ctx: CommandContext) -> Markup:
    """Commands usable in the current kind of room, each with its one-line summary; those the
    caller may not run are listed apart, under who can run them."""
    others: dict[str, list[Markup]] = {}
    entries = [
        entry for item in ctx.registry.all() for entry in await _entries(item, ctx, None, others)
    ]
    here = HERE[ctx.room_kind]
    if not entries and not others:
        return paragraph(f"There is nothing I can do for you {here}.")
    parts: list[Markup] = [paragraph(f"What you can do {here}:"), bullet_list(entries)]
    for message, lines_ in others.items():
        parts.extend((paragraph(_who_may(message)), bullet_list(lines_)))
    parts.append(
        paragraph("Send " + code(f"{ctx.prefix}help <command>") + " to see how to use one of them.")
    )
    return blocks(*parts)


def details(item: Command, prefix: str, *, restricted: str | None = None) -> Markup:
    """Usage, description and where a command works; `restricted` says who may run it when
    the caller may not."""
    parts: list[Markup] = [
        paragraph(lines(*(code(usage) for usage in item.usage_lines(prefix)))),
        paragraph(item.summary),
    ]
    if item.description:
        parts.append(paragraph(item.description))
    if item.aliases:
        also = Markup()
        for index, alias in enumerate(item.aliases):
            also += (", " if index else "") + code(prefix + " ".join((*item.parents, alias)))
        parts.append(paragraph("Also: " + also))
    parts.append(paragraph(f"Works {item.where.description}."))
    if restricted is not None:
        parts.append(paragraph(restricted))
    if isinstance(item, Group):
        parts.append(paragraph("Subcommands:"))
        parts.append(
            bullet_list(
                code(prefix + sub.qualified_name)
                + " — "
                + sub.summary
                + ("" if sub.where is item.where else f" (works {sub.where.description})")
                for sub in item.subcommands
            )
        )
    return blocks(*parts)


COMMANDS: tuple[Command, ...] = (help_command,)
