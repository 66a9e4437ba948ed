"""Turns the text of a message into a command name and its arguments.

Arguments are split on whitespace. A value with spaces can be quoted with "double",
'single' or the typographic “smart” ‘quotes’ that phone keyboards type. A quote only opens at
the start of a word and only closes when followed by a space or the end of the text, so
apostrophes (Children's, I’m) need no escaping; `\\"` stands for a literal quote character.
Splitting is lazy (`ArgumentReader`), so a "rest of the line" argument takes the raw text and
an odd quote inside free text is never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote

from commands.framework.errors import UserInputError
from markup import MATRIX_TO, code, text

DOUBLE_QUOTES = frozenset('"“”„')
SINGLE_QUOTES = frozenset("'‘’‚")
QUOTE_FAMILIES = (DOUBLE_QUOTES, SINGLE_QUOTES)
ALL_QUOTES = DOUBLE_QUOTES | SINGLE_QUOTES
ESCAPABLE = ALL_QUOTES | {"\\"}


def _family(char: str) -> frozenset[str] | None:
    for family in QUOTE_FAMILIES:
        if char in family:
            return family
    return None


class ArgumentReader:
    """Reads arguments one at a time from the text after a command name."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def at_end(self) -> bool:
        self._skip_space()
        return self._pos >= len(self._text)

    def peek(self) -> str | None:
        """The next argument without consuming it."""
        saved = self._pos
        try:
            return self.next()
        finally:
            self._pos = saved

    def next(self) -> str | None:
        """The next argument with its quotes removed, or None when there is none left."""
        self._skip_space()
        if self._pos >= len(self._text):
            return None
        family = _family(self._text[self._pos])
        if family is not None:
            return self._quoted(family)
        return self._word()

    def rest(self) -> str:
        """Everything not read yet, as typed; unquoted only if it is one quoted value."""
        self._skip_space()
        raw = self._text[self._pos :].strip()
        if raw and raw[0] in ALL_QUOTES:
            saved = self._pos
            try:
                value = self.next()
            except UserInputError:
                value = None
            if value is not None and self.at_end():
                return value
            self._pos = saved
        self._pos = len(self._text)
        return raw

    def _skip_space(self) -> None:
        while self._pos < len(self._text) and self._text[self._pos].isspace():
            self._pos += 1

    def _escaped(self) -> str | None:
        """The character a backslash at the current position stands for, if it escapes one."""
        if self._text[self._pos] == "\\" and self._pos + 1 < len(self._text):
            following = self._text[self._pos + 1]
            if following in ESCAPABLE:
                return following
        return None

    def _word(self) -> str:
        chars: list[str] = []
        while self._pos < len(self._text) and not self._text[self._pos].isspace():
            escaped = self._escaped()
            if escaped is not None:
                chars.append(escaped)
                self._pos += 2
                continue
            chars.append(self._text[self._pos])
            self._pos += 1
        return "".join(chars)

    def _quoted(self, family: frozenset[str]) -> str:
        opening = self._text[self._pos]
        start = self._pos
        self._pos += 1
        chars: list[str] = []
        while self._pos < len(self._text):
            escaped = self._escaped()
            if escaped is not None:
                chars.append(escaped)
                self._pos += 2
                continue
            char = self._text[self._pos]
            self._pos += 1
            if char in family and (self._pos >= len(self._text) or self._text[self._pos].isspace()):
                return "".join(chars)
            chars.append(char)
        self._pos = start
        raise UserInputError(
            text(f"The quote {opening} is never closed. Put quotes around the whole value, like ")
            + code('"Class teacher"')
            + ", or write "
            + code("\\" + opening)
            + " for a quote character."
        )


def split_args(text: str) -> list[str]:
    """All arguments of `text`; raises UserInputError if a quote is left open."""
    reader = ArgumentReader(text)
    args: list[str] = []
    while (arg := reader.next()) is not None:
        args.append(arg)
    return args


@dataclass(frozen=True)
class Invocation:
    """A message that is a command: its lower-cased name and the text after the name."""

    name: str
    remainder: str

    @property
    def args(self) -> list[str]:
        """The remainder split into arguments; raises UserInputError on an unclosed quote."""
        return split_args(self.remainder)

    def reader(self) -> ArgumentReader:
        return ArgumentReader(self.remainder)


def strip_reply_fallback(body: str) -> str:
    """Drop the quoted original that clients put before a reply ("> <@user> text", blank line)."""
    lines = body.split("\n")
    index = 0
    while index < len(lines) and (lines[index].startswith("> ") or lines[index] == ">"):
        index += 1
    if index == 0:
        return body
    if index < len(lines) and not lines[index].strip():
        index += 1
    return "\n".join(lines[index:])


def parse_invocation(body: str, prefix: str = "!") -> Invocation | None:
    """The command in a message, or None when the message is ordinary chat.

    A command is the prefix immediately followed by a letter, so "!!", "! help" and
    "hello !help" are chat, not commands.
    """
    message = strip_reply_fallback(body).lstrip()
    if not prefix or not message.startswith(prefix):
        return None
    after = message[len(prefix) :]
    if not after or not (after[0].isascii() and after[0].isalpha()):
        return None
    name, *remainder = after.split(None, 1)
    return Invocation(name.lower(), remainder[0].strip() if remainder else "")


class _MentionText(HTMLParser):
    """Collects the text of an HTML body, writing user pills as the user ids they link to."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._pill_depth = 0
        self.found_pill = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "mx-reply":
            self._skip_depth += 1
        elif tag == "br":
            self._emit("\n")
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            if self._pill_depth:
                self._pill_depth += 1
            elif href.startswith(MATRIX_TO) and (
                user_id := unquote(href.removeprefix(MATRIX_TO).split("?", 1)[0])
            ).startswith("@"):
                self._emit(user_id)
                self._pill_depth = 1
                self.found_pill = self.found_pill or not self._skip_depth

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._emit("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "mx-reply" and self._skip_depth:
            self._skip_depth -= 1
        elif tag == "a" and self._pill_depth:
            self._pill_depth -= 1
        elif tag in ("p", "div", "li"):
            self._emit("\n")

    def handle_data(self, data: str) -> None:
        if not self._pill_depth:
            self._emit(data)

    def _emit(self, value: str) -> None:
        if not self._skip_depth:
            self.parts.append(value)


def command_text(body: str, formatted_body: str | None) -> str:
    """The text to parse as a command: `body`, unless the HTML body holds a user pill.

    Element puts only the display name of a mentioned person in the plain `body`, so for
    `!invite` with a pill the user id exists only in `formatted_body`; then the HTML is read
    back to text with each pill written as the user id it links to.
    """
    if not formatted_body or MATRIX_TO not in formatted_body:
        return body
    collector = _MentionText()
    collector.feed(formatted_body)
    collector.close()
    if not collector.found_pill:
        return body
    return "".join(collector.parts).strip()
