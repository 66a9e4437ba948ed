"""Runs the command in a message and turns every outcome into a reply.

The handler chain for one message body (the event router calls `Dispatcher.handle` inside the
event's database transaction and sends `ctx.replies` afterwards):

1. Parse. A body that is not a command (see `parse_invocation`) returns False at once: nothing
   is replied and nothing is written. Everything after this point returns True.
2. Resolve the name in the registry, then walk into subcommands while the next word names one.
   An unknown name stops here with "I don't know the command" and the closest name.
3. Where: the command (and each enclosing group) must work in this kind of room.
4. Permission: each check in the chain runs in order; the first False stops with that
   command's permission message.
5. Convert the arguments with the parameters' converters: a missing, extra or bad value stops
   with a message and the usage.
6. Run the handler inside `ctx.tx.savepoint()`. If it raises, its writes are rolled back and
   the replies it queued are dropped (they described effects that no longer exist); the error
   reply below is still queued, and the outer transaction still commits, so the event is
   processed once and answered once. (A handler that only reads costs no statement for it:
   the savepoint is opened before its first write; see `storage.transaction`.)

Errors from any step go to one place: a `UserInputError` becomes its message (plus usage when
`show_usage` is set); any other exception is logged with its traceback and a short reference,
and the user sees only that reference. `BaseException`s such as cancellation are not caught.
"""

from __future__ import annotations

import contextlib
import logging
import secrets

from commands.framework.context import CommandContext
from commands.framework.converters import UserIdConverter, quoted
from commands.framework.errors import PermissionDenied, UserInputError
from commands.framework.parser import ArgumentReader, Invocation, parse_invocation
from commands.framework.registry import Command, CommandRegistry, Group
from markup import Markup, code, lines

log = logging.getLogger(__name__)

FAILURE_MESSAGE = (
    "Sorry, something went wrong on my side. If it keeps happening, tell your administrator "
    "the reference {reference}."
)


def new_reference() -> str:
    """A short id that ties what the user saw to the traceback in the log."""
    return secrets.token_hex(4).upper()


class Dispatcher:
    """Answers the commands of one registry; built once at start-up."""

    def __init__(self, registry: CommandRegistry, *, prefix: str = "!") -> None:
        if not prefix or prefix.isspace():
            raise ValueError("the command prefix must be a visible character")
        self.registry = registry
        self.prefix = prefix

    def shows_team(self, body: str) -> bool:
        """Whether `body` runs a command that shows the team (`Command.shows_team`)."""
        invocation = parse_invocation(body, self.prefix)
        command = None if invocation is None else self.registry.get(invocation.name)
        return command is not None and command.shows_team

    def accounts_named(self, body: str) -> list[str]:
        """The Matrix user ids a command that checks accounts names in its arguments, so the
        process can look them up before the command's transaction; [] for anything else."""
        invocation = parse_invocation(body, self.prefix)
        command = None if invocation is None else self.registry.get(invocation.name)
        if invocation is None or command is None or not command.checks_accounts:
            return []
        found: list[str] = []
        try:
            for arg in invocation.args:
                with contextlib.suppress(UserInputError):
                    found.append(UserIdConverter().convert(arg))
        except UserInputError:
            return []
        return found

    async def handle(self, ctx: CommandContext, body: str) -> bool:
        """Run the command in `body`, if it is one; False means "not a command, ignored"."""
        invocation = parse_invocation(body, self.prefix)
        if invocation is None:
            return False
        ctx.prefix = self.prefix
        chain: list[Command] = []
        try:
            await self._run(ctx, invocation, chain)
        except UserInputError as error:
            ctx.outcome = "user_error"
            ctx.reply(self._user_error(error, chain[-1] if chain else None))
        except Exception:
            ctx.outcome = "failed"
            reference = new_reference()
            log.exception(
                "command !%s failed; reference %s, room %s, event %s",
                chain[-1].qualified_name if chain else invocation.name,
                reference,
                ctx.room_id,
                ctx.event_id,
            )
            ctx.reply(FAILURE_MESSAGE.format(reference=reference))
        return True

    async def _run(self, ctx: CommandContext, invocation: Invocation, chain: list[Command]) -> None:
        """Steps 2 to 6; `chain` is filled as the command resolves, for the error path."""
        found = self.registry.get(invocation.name)
        if found is None:
            raise self.registry.not_found(invocation.name, self.prefix)
        chain.append(found)
        reader = invocation.reader()
        self._resolve_subcommands(reader, chain)
        for item in chain:
            if not item.where.allows(ctx.room_kind):
                raise UserInputError(
                    code(self.prefix + item.qualified_name)
                    + f" only works {item.where.description}.",
                    show_usage=False,
                )
        for item in chain:
            if item.permission is not None and not await item.permission(ctx):
                raise PermissionDenied(item.permission_message)
        command = chain[-1]
        values = self._convert(command, reader)
        replies_before = len(ctx.replies)
        try:
            async with ctx.tx.savepoint():
                await command.handler(ctx, *values)
        except BaseException:
            del ctx.replies[replies_before:]
            raise

    def _resolve_subcommands(self, reader: ArgumentReader, chain: list[Command]) -> None:
        command = chain[-1]
        while isinstance(command, Group):
            word = reader.peek()
            child = command.get(word) if word is not None else None
            if child is None:
                if word is None and not command.runs_alone:
                    raise UserInputError(
                        code(self.prefix + command.qualified_name) + " needs a subcommand."
                    )
                if word is not None and not command.params:
                    raise command.unknown_subcommand(word, self.prefix)
                return
            reader.next()
            chain.append(child)
            command = child

    def _convert(self, command: Command, reader: ArgumentReader) -> list[object]:
        values: list[object] = []
        missing: list[str] = []
        for param in command.params:
            raw = reader.rest() if param.rest else reader.next()
            if raw is None or (param.rest and not raw):
                if param.required:
                    missing.append(param.usage)
                values.append(param.default)
                continue
            values.append(param.converter.convert(raw))
        name = code(self.prefix + command.qualified_name)
        if missing:
            needed = Markup()
            for index, usage in enumerate(missing):
                needed += (" and " if index else "") + code(usage)
            raise UserInputError(name + " needs " + needed + ".")
        if not reader.at_end():
            leftover = quoted(reader.rest())
            if command.params:
                raise UserInputError(
                    "Too much for " + name + ": I did not expect " + leftover + "."
                )
            raise UserInputError(name + " takes nothing after it, but got " + leftover + ".")
        return values

    def _user_error(self, error: UserInputError, command: Command | None) -> Markup:
        if not error.show_usage or command is None:
            return error.markup
        usages = command.usage_lines(self.prefix)
        if len(usages) == 1:
            return lines(error.markup, "Usage: " + code(usages[0]))
        return lines(error.markup, "Usage:", *(code(usage) for usage in usages))
