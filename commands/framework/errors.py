"""Errors that mean "the user asked for something wrong", as opposed to bugs.

The dispatcher shows a `UserInputError`'s message to the user (plus the command's usage when
`show_usage` is set); every other exception is treated as a fault on our side and never shown.
Messages may be `Markup` so values can be quoted as code; plain strings are escaped.
"""

from __future__ import annotations

from markup import Markup, code, text


class UserInputError(Exception):
    """The user's mistake; the message says what was wrong in words they understand."""

    def __init__(self, message: Markup | str, *, show_usage: bool = True) -> None:
        self.markup = message if isinstance(message, Markup) else text(message)
        self.show_usage = show_usage
        super().__init__(self.markup.body)

    @property
    def message(self) -> str:
        return self.markup.body


class BadArgument(UserInputError):
    """A converter rejected a value; the message names the value and what was expected."""


class PermissionDenied(UserInputError):
    """The user may not run this command here; usage would not help them, so it is not shown."""

    def __init__(self, message: Markup | str = "You are not allowed to do that here.") -> None:
        super().__init__(message, show_usage=False)


class CommandNotFound(UserInputError):
    """No command has this name; offers the closest name when there is one."""

    def __init__(self, name: str, *, suggestion: str | None = None, prefix: str = "!") -> None:
        self.name = name
        self.suggestion = suggestion
        message = "I don't know the command " + code(prefix + shorten(name)) + "."
        if suggestion is not None:
            message += " Did you mean " + code(prefix + suggestion) + "?"
        message += " Send " + code(prefix + "help") + " to see what you can do here."
        super().__init__(message, show_usage=False)


def shorten(value: str, limit: int = 60) -> str:
    """Cut a quoted-back value so a pasted essay does not fill the room."""
    return value if len(value) <= limit else value[: limit - 1] + "…"
