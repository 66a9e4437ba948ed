"""The message markup every layer may use: text with its HTML twin, pills, dates as people
write them, and the content of an outgoing `m.notice`.

This is a leaf: it imports nothing from Patchwork. Everything the bot says is built with
`Markup`, which escapes every plain string it is given, so user-supplied text cannot turn into
HTML. Every message carries `m.mentions`, empty unless someone is named on purpose, so a pill
never pings anybody by accident.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Final
from urllib.parse import quote

HTML_FORMAT = "org.matrix.custom.html"
MATRIX_TO = "https://matrix.to/#/"
_SPECIAL = re.compile("[&<>\"']")
"""What `html.escape` replaces: most text has none of it and is returned as it is."""
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
"""Both in English whatever the machine's locale (`%b` and `%a` would follow it)."""


def day(value: date) -> str:
    """A date as people write it ("2 Mar 2026"); a time would suggest false precision."""
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def long_day(value: date) -> str:
    """A date with its weekday ("Mon 3 Aug 2026"), for days someone must act by."""
    return f"{_WEEKDAYS[value.weekday()]} {day(value)}"


def escape(text: str) -> str:
    """HTML-escape text, quotes included, so it is safe in element content and attributes."""
    return _html.escape(text, quote=True) if _SPECIAL.search(text) else text


def pill(user_id: str, display_name: str | None = None) -> str:
    """HTML for a user pill; Element renders a matrix.to link to a user as their pill."""
    label = display_name or user_id
    return f'<a href="{escape(MATRIX_TO + user_id)}">{escape(label)}</a>'


def room_url(room_id: str, via: str | None = None) -> str:
    """A matrix.to link to a room; `via` (a server in the room) lets clients join it."""
    url = MATRIX_TO + quote(room_id, safe="!:@")
    return url + (f"?via={quote(via, safe=':')}" if via else "")


@dataclass(slots=True)
class Markup:
    """Text and its HTML twin, kept in step; adding a plain `str` escapes it first.

    Immutable: `Final` makes the type checker refuse any assignment after construction. Not
    `frozen=True`, whose checked `__init__` costs more than the rest of building the object
    (a `!whois` answer builds a hundred of them)."""

    body: Final[str] = ""
    html: Final[str] = ""
    mentions: Final[tuple[str, ...]] = ()

    def __hash__(self) -> int:
        return hash((self.body, self.html, self.mentions))

    def __add__(self, other: Markup | str) -> Markup:
        right = other if isinstance(other, Markup) else text(other)
        return Markup(
            self.body + right.body,
            self.html + right.html,
            _merge_mentions(self.mentions, right.mentions),
        )

    def __radd__(self, other: str) -> Markup:
        return text(other) + self


def _merge_mentions(*groups: Iterable[str]) -> tuple[str, ...]:
    """Keep the first occurrence of each user id, in order."""
    return tuple(dict.fromkeys(user_id for group in groups for user_id in group))


def _as_markup(part: Markup | str) -> Markup:
    return part if isinstance(part, Markup) else text(part)


def text(value: str) -> Markup:
    """Plain (possibly user-supplied) text; line breaks survive in the HTML as `<br>`."""
    escaped = escape(value)
    return Markup(value, escaped.replace("\n", "<br>") if "\n" in value else escaped)


def code(value: str) -> Markup:
    """A command or a value quoted back to the user, shown as code."""
    return Markup(f"`{value}`", f"<code>{escape(value)}</code>")


def bold(value: Markup | str) -> Markup:
    part = _as_markup(value)
    return Markup(part.body, f"<strong>{part.html}</strong>", part.mentions)


def user(user_id: str, display_name: str | None = None, *, mention: bool = False) -> Markup:
    """A person as a pill; only `mention=True` adds them to `m.mentions` (which pings them)."""
    return Markup(
        display_name or user_id,
        pill(user_id, display_name),
        (user_id,) if mention else (),
    )


def room_link(room_id: str, label: str, via: str | None = None) -> Markup:
    """A room Element shows as a pill that opens it with one tap; plain text gets the URL."""
    url = room_url(room_id, via)
    return Markup(f"{label} ({url})", f'<a href="{escape(url)}">{escape(label)}</a>')


def tel(number: str, label: str) -> Markup:
    """A phone number as a `tel:` link (one tap to call); `number` is in E.164 form."""
    return Markup(label, f'<a href="{escape("tel:" + number)}">{escape(label)}</a>')


def lines(*parts: Markup | str) -> Markup:
    """Parts on separate lines within one block."""
    pieces = [_as_markup(part) for part in parts]
    return Markup(
        "\n".join(piece.body for piece in pieces),
        "<br>".join(piece.html for piece in pieces),
        _merge_mentions(*(piece.mentions for piece in pieces)),
    )


def paragraph(*parts: Markup | str) -> Markup:
    """One paragraph made of the parts, run together."""
    joined = sum((_as_markup(part) for part in parts), Markup())
    return Markup(joined.body, f"<p>{joined.html}</p>", joined.mentions)


def bullet_list(items: Iterable[Markup | str]) -> Markup:
    pieces = [_as_markup(item) for item in items]
    return Markup(
        "\n".join(f"• {piece.body}" for piece in pieces),
        "<ul>" + "".join(f"<li>{piece.html}</li>" for piece in pieces) + "</ul>",
        _merge_mentions(*(piece.mentions for piece in pieces)),
    )


def blocks(*parts: Markup | str) -> Markup:
    """Stack block-level parts (paragraphs, lists); plain-text readers get one per line."""
    pieces = [_as_markup(part) for part in parts]
    return Markup(
        "\n".join(piece.body for piece in pieces),
        "".join(piece.html for piece in pieces),
        _merge_mentions(*(piece.mentions for piece in pieces)),
    )


@dataclass(frozen=True)
class Reply:
    """One message the bot will send: an `m.notice`, or with `notify` an `m.text`.

    Element's default push rules silence every `m.notice`, even one that mentions you, so a
    message that asks someone to act (a prompt, a reminder, an alert) sets `notify` and lists
    them in `mentions`; replies to commands stay quiet notices.
    """

    body: str
    formatted_body: str
    mentions: tuple[str, ...] = ()
    notify: bool = False

    @classmethod
    def plain(cls, body: str) -> Reply:
        """A reply from plain text, escaped for the HTML body."""
        return cls.from_markup(text(body))

    @classmethod
    def from_markup(cls, markup: Markup, *, notify: bool = False) -> Reply:
        return cls(markup.body, markup.html, markup.mentions, notify)

    @classmethod
    def mention(cls, user_id: str, body: str, display_name: str | None = None) -> Reply:
        """Address one person by name and notify them: a message meant for them to act on."""
        return cls.from_markup(
            user(user_id, display_name, mention=True) + ": " + body, notify=True
        )

    def to_content(self) -> dict[str, Any]:
        """The `m.room.message` content; `m.mentions` is always present so nobody is pinged
        unless listed."""
        return {
            "msgtype": "m.text" if self.notify else "m.notice",
            "body": self.body,
            "format": HTML_FORMAT,
            "formatted_body": self.formatted_body,
            "m.mentions": {"user_ids": list(self.mentions)},
        }
