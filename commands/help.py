"""`!help`: what you can do in this room, and how to use one command, read from the registry
so help can never disagree with what the dispatcher accepts."""

from __future__ import annotations

from commands.framework.context import CommandContext, RoomKind
from commands.framework.converters import Rest, Text
from commands.framework.errors import UserInputError
from commands.framework.parser import split_args
from commands.framework.registry import ANYWHERE, Command, Group, command
from markup import Markup, blocks, bullet_list, code, lines, paragraph

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
        ctx.reply(overview(ctx))
        return
    words = split_args(topic)
    if words:
        words[0] = words[0].removeprefix(ctx.prefix)
    if not words or not words[0]:
        raise UserInputError(
            "Name the command you want to know about, like " + code(f"{ctx.prefix}help whois") + "."
        )
    ctx.reply(details(ctx.registry.lookup(words, ctx.prefix), ctx.prefix))


def _entries(item: Command, ctx: CommandContext) -> list[Markup]:
    """List lines for a command usable here: itself, then its subcommands usable here."""
    if not item.usable_in(ctx.room_kind):
        return []
    entries: list[Markup] = []
    if not isinstance(item, Group) or item.runs_alone:
        entries.append(code(ctx.prefix + item.qualified_name) + " — " + item.summary)
    if isinstance(item, Group):
        for sub in item.subcommands:
            entries.extend(_entries(sub, ctx))
    return entries


def overview(ctx: CommandContext) -> Markup:
    """Commands usable in the current kind of room, each with its one-line summary."""
    entries = [entry for item in ctx.registry.all() for entry in _entries(item, ctx)]
    here = HERE[ctx.room_kind]
    if not entries:
        return paragraph(f"There is nothing I can do for you {here}.")
    return blocks(
        paragraph(f"What you can do {here}:"),
        bullet_list(entries),
        paragraph(
            "Send " + code(f"{ctx.prefix}help <command>") + " to see how to use one of them."
        ),
    )


def details(item: Command, prefix: str) -> Markup:
    """Usage, description and where a command works."""
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
