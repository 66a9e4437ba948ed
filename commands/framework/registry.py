"""Commands declared as data: `Command`, `Group` (a command with subcommands), the `command`
and `group` decorators that build them from an async handler's signature, and the
`CommandRegistry` that `build_registry` fills once at start-up.

A command module looks like::

    @command("invite", summary="Invite a colleague to this family's team.",
             where=FAMILY_ROOM)
    async def invite(ctx: CommandContext, who: UserId, role: Rest[str]) -> None:
        ...

    COMMANDS = (invite,)

The parameters after `ctx` become the command's arguments; their annotations choose the
converters (see `commands.framework.converters`) and their defaults make them optional.
"""

from __future__ import annotations

import difflib
import enum
import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from commands.framework.context import RoomKind
from commands.framework.converters import Converter, converter_for
from commands.framework.errors import CommandNotFound, UserInputError, shorten
from markup import Markup, code

if TYPE_CHECKING:
    from commands.framework.context import CommandContext

Handler = Callable[..., Awaitable[None]]
"""`async def handler(ctx: CommandContext, <arguments>) -> None`."""

Permission = Callable[["CommandContext"], Awaitable[bool]]
"""Answers whether the sender may run the command here; may read storage."""

DEFAULT_PERMISSION_MESSAGE = "You are not allowed to use this command here."
NAME = re.compile(r"[a-z][a-z0-9-]*")


class Where(enum.Enum):
    """The kinds of room a command works in."""

    ANYWHERE = "anywhere"
    FAMILY_ROOM = "family room"
    DIRECT = "direct chat"
    FAMILY_VIEW = "family view"

    @property
    def room_kinds(self) -> frozenset[RoomKind]:
        if self is Where.FAMILY_ROOM:
            return frozenset({RoomKind.FAMILY})
        if self is Where.DIRECT:
            return frozenset({RoomKind.DIRECT})
        if self is Where.FAMILY_VIEW:
            return frozenset({RoomKind.VIEW})
        # Other rooms may hold people outside any team, so nothing is answered there.
        return frozenset({RoomKind.FAMILY, RoomKind.DIRECT})

    def allows(self, kind: RoomKind) -> bool:
        return kind in self.room_kinds

    @property
    def description(self) -> str:
        """Completes "works ..." in messages and help."""
        if self is Where.FAMILY_ROOM:
            return "in a family room"
        if self is Where.DIRECT:
            return "in a direct chat with me"
        if self is Where.FAMILY_VIEW:
            return "in your family's own room with me"
        return "in a family room or in a direct chat with me"


ANYWHERE = Where.ANYWHERE
FAMILY_ROOM = Where.FAMILY_ROOM
DIRECT = Where.DIRECT
FAMILY_VIEW = Where.FAMILY_VIEW


@dataclass(frozen=True)
class Param:
    """One argument of a command."""

    name: str
    converter: Converter[object]
    required: bool = True
    default: object = None
    rest: bool = False

    @property
    def label(self) -> str:
        return self.converter.label or self.name.replace("_", " ")

    @property
    def usage(self) -> str:
        """`<role>` when required, `[note]` when optional, `on|off` for a bare choice."""
        if not self.required:
            return f"[{self.label}]"
        return self.label if self.converter.bare else f"<{self.label}>"


@dataclass(frozen=True)
class Command:
    """A command as data: what it is called, what it takes, where and by whom it may be run."""

    name: str
    handler: Handler
    summary: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    where: Where = Where.ANYWHERE
    permission: Permission | None = None
    permission_message: str = DEFAULT_PERMISSION_MESSAGE
    parents: tuple[str, ...] = ()
    """Names of the enclosing groups; filled in by `Group`."""
    checks_accounts: bool = False
    """Whether the command asks if the Matrix accounts it names exist; the process looks them
    up before the command's database transaction begins (see `Dispatcher.accounts_named`)."""
    shows_team: bool = False
    """Whether the command shows the team with their practitioner rows (`!whois`); those are
    read with the event's inbox check, in the transaction's first trip (`Dispatcher.shows_team`)."""

    def __post_init__(self) -> None:
        for name in (self.name, *self.aliases):
            if not NAME.fullmatch(name):
                raise ValueError(f"command names are lower-case words, got {name!r}")
        _check_params(self.qualified_name, self.params)

    @property
    def qualified_name(self) -> str:
        """The words after the prefix that run this command, e.g. "contact set"."""
        return " ".join((*self.parents, self.name))

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def usage(self, prefix: str = "!") -> str:
        """E.g. "!invite <@user:server> <role>"; [brackets] mark optional arguments."""
        return " ".join([prefix + self.qualified_name, *(param.usage for param in self.params)])

    def usage_lines(self, prefix: str = "!") -> list[str]:
        """Every way to call this command (a group lists its subcommands)."""
        return [self.usage(prefix)]

    def usable_in(self, kind: RoomKind) -> bool:
        return self.where.allows(kind)


def _check_params(owner: str, params: Sequence[Param]) -> None:
    seen_optional = False
    for index, param in enumerate(params):
        if param.rest and index != len(params) - 1:
            raise TypeError(f"{owner}: the rest-of-line argument {param.name!r} must come last")
        if param.required and seen_optional:
            raise TypeError(f"{owner}: required argument {param.name!r} follows an optional one")
        seen_optional = seen_optional or not param.required


@dataclass(frozen=True)
class Group(Command):
    """A command with subcommands: "!contact" runs its own handler, "!contact set ..." the
    subcommand. When `runs_alone` is False the name alone just asks for a subcommand.

    The group's `where` and permission are checked before the subcommand's own.
    """

    subcommands: tuple[Command, ...] = ()
    runs_alone: bool = True
    _by_name: Mapping[str, Command] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        path = (*self.parents, self.name)
        children = tuple(replace(sub, parents=path) for sub in self.subcommands)
        by_name: dict[str, Command] = {}
        for child in children:
            for name in child.names:
                if name in by_name:
                    raise ValueError(f"{self.qualified_name}: duplicate subcommand name {name!r}")
                by_name[name] = child
        object.__setattr__(self, "subcommands", children)
        object.__setattr__(self, "_by_name", by_name)

    def get(self, name: str) -> Command | None:
        return self._by_name.get(name.lower())

    def usage(self, prefix: str = "!") -> str:
        if self.runs_alone:
            return super().usage(prefix)
        return f"{prefix}{self.qualified_name} <{'|'.join(sub.name for sub in self.subcommands)}>"

    def usage_lines(self, prefix: str = "!") -> list[str]:
        own = [super().usage(prefix)] if self.runs_alone else []
        return own + [line for sub in self.subcommands for line in sub.usage_lines(prefix)]

    def usable_in(self, kind: RoomKind) -> bool:
        if not self.where.allows(kind):
            return False
        return self.runs_alone or any(sub.usable_in(kind) for sub in self.subcommands)

    def unknown_subcommand(
        self, word: str, prefix: str = "!", *, show_usage: bool = True
    ) -> UserInputError:
        """The error for "!group word" when `word` is no subcommand."""
        message: Markup = (
            code(prefix + self.qualified_name) + " has no subcommand " + code(shorten(word)) + "."
        )
        close = difflib.get_close_matches(word.lower(), list(self._by_name), n=1)
        if close:
            message += " Did you mean " + code(f"{prefix}{self.qualified_name} {close[0]}") + "?"
        else:
            message += " Its subcommands are "
            for index, sub in enumerate(self.subcommands):
                message += (", " if index else "") + code(sub.name)
            message += "."
        return UserInputError(message, show_usage=show_usage)


def params_from_handler(
    handler: Handler, overrides: Mapping[str, Converter[object]] | None = None
) -> tuple[Param, ...]:
    """The arguments a handler takes after `ctx`, read from its signature and annotations."""
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(f"command handler {handler.__qualname__} must be an async function")
    overrides = dict(overrides or {})
    try:
        hints = typing.get_type_hints(handler, include_extras=True)
    except NameError as error:
        raise TypeError(
            f"the annotations of {handler.__qualname__} must be importable at run time: {error}"
        ) from error
    signature = inspect.signature(handler)
    parameters = list(signature.parameters.values())
    if not parameters:
        raise TypeError(f"command handler {handler.__qualname__} must take ctx first")
    params: list[Param] = []
    for parameter in parameters[1:]:
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            raise TypeError(
                f"{handler.__qualname__}: argument {parameter.name!r} must be a plain positional "
                "parameter"
            )
        if parameter.name not in hints:
            raise TypeError(f"{handler.__qualname__}: argument {parameter.name!r} needs a type")
        spec = converter_for(hints[parameter.name])
        has_default = parameter.default is not parameter.empty
        params.append(
            Param(
                name=parameter.name,
                converter=overrides.pop(parameter.name, spec.converter),
                required=not (has_default or spec.optional),
                default=parameter.default if has_default else None,
                rest=spec.rest,
            )
        )
    if overrides:
        raise TypeError(f"{handler.__qualname__}: no argument named {sorted(overrides)}")
    return tuple(params)


def command(
    name: str,
    *,
    summary: str,
    description: str = "",
    aliases: Iterable[str] = (),
    where: Where = Where.ANYWHERE,
    permission: Permission | None = None,
    permission_message: str = DEFAULT_PERMISSION_MESSAGE,
    converters: Mapping[str, Converter[object]] | None = None,
    checks_accounts: bool = False,
    shows_team: bool = False,
) -> Callable[[Handler], Command]:
    """Declare an async handler as a command; `converters` overrides the choice by annotation."""

    def build(handler: Handler) -> Command:
        return Command(
            name=name,
            handler=handler,
            summary=summary,
            description=description,
            aliases=tuple(aliases),
            params=params_from_handler(handler, converters),
            where=where,
            permission=permission,
            permission_message=permission_message,
            checks_accounts=checks_accounts,
            shows_team=shows_team,
        )

    return build


def group(
    name: str,
    *,
    summary: str,
    subcommands: Iterable[Command],
    description: str = "",
    aliases: Iterable[str] = (),
    where: Where = Where.ANYWHERE,
    permission: Permission | None = None,
    permission_message: str = DEFAULT_PERMISSION_MESSAGE,
    converters: Mapping[str, Converter[object]] | None = None,
) -> Callable[[Handler], Group]:
    """Declare a group whose handler runs when no subcommand is given ("!contact")."""

    def build(handler: Handler) -> Group:
        return Group(
            name=name,
            handler=handler,
            summary=summary,
            description=description,
            aliases=tuple(aliases),
            params=params_from_handler(handler, converters),
            where=where,
            permission=permission,
            permission_message=permission_message,
            subcommands=tuple(subcommands),
        )

    return build


async def _needs_subcommand(ctx: CommandContext) -> None:
    """Never run: the dispatcher asks for a subcommand before it would be."""
    raise UserInputError("This command needs a subcommand.")


def subcommand_group(
    name: str,
    *,
    summary: str,
    subcommands: Iterable[Command],
    description: str = "",
    aliases: Iterable[str] = (),
    where: Where = Where.ANYWHERE,
    permission: Permission | None = None,
    permission_message: str = DEFAULT_PERMISSION_MESSAGE,
) -> Group:
    """A group that does nothing by itself ("!family" alone asks which subcommand)."""
    return Group(
        name=name,
        handler=_needs_subcommand,
        summary=summary,
        description=description,
        aliases=tuple(aliases),
        where=where,
        permission=permission,
        permission_message=permission_message,
        subcommands=tuple(subcommands),
        runs_alone=False,
    )


class CommandRegistry:
    """Every top-level command by name and alias; built once at start-up."""

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: list[Command] = []
        self._by_name: dict[str, Command] = {}
        for item in commands:
            self.add(item)

    def add(self, command: Command) -> None:
        """Register a command; a name or alias already taken is a programming error."""
        if command.parents:
            raise ValueError(f"{command.qualified_name!r} is a subcommand; add its group instead")
        for name in command.names:
            if name in self._by_name:
                raise ValueError(
                    f"command name {name!r} is already used by !{self._by_name[name].name}"
                )
        for name in command.names:
            self._by_name[name] = command
        self._commands.append(command)

    def get(self, name: str) -> Command | None:
        """The command called `name` or having it as an alias (case-insensitive)."""
        return self._by_name.get(name.lower())

    def all(self) -> tuple[Command, ...]:
        """Every top-level command, sorted by name."""
        return tuple(sorted(self._commands, key=lambda item: item.name))

    def suggest(self, name: str) -> str | None:
        """The known name closest to a mistyped one, if any is close enough."""
        close = difflib.get_close_matches(name.lower(), list(self._by_name), n=1, cutoff=0.6)
        return close[0] if close else None

    def not_found(self, name: str, prefix: str = "!") -> CommandNotFound:
        return CommandNotFound(name, suggestion=self.suggest(name), prefix=prefix)

    def lookup(self, words: Sequence[str], prefix: str = "!") -> Command:
        """The command named by `words` ("contact", "set"); raises a UserInputError if none.

        Words beyond the deepest subcommand are rejected, so "!help whois extra" is an error.
        """
        if not words:
            raise ValueError("lookup needs at least one word")
        found = self.get(words[0])
        if found is None:
            raise self.not_found(words[0], prefix)
        for word in words[1:]:
            if not isinstance(found, Group):
                raise UserInputError(
                    code(prefix + found.qualified_name) + " has no subcommands.",
                    show_usage=False,
                )
            child = found.get(word)
            if child is None:
                raise found.unknown_subcommand(word, prefix, show_usage=False)
            found = child
        return found
