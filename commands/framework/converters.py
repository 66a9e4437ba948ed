"""Typed command arguments: each converter turns one raw string into a checked value or says,
in the user's terms, what was wrong with it.

Handlers declare what they take with annotations and the converter is chosen from those
(`converter_for`): `UserId`, `CaseReference`, `Literal[...]`, `str`, `int`, `X | None`, and
`Rest[str]` for the rest of the line. `Annotated[T, SomeConverter(...)]` overrides the choice
for one parameter.
"""

from __future__ import annotations

import ipaddress
import re
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, Generic, Literal, NewType, TypeVar, Union, get_args, get_origin

from commands.framework.errors import BadArgument, shorten
from markup import MATRIX_TO, Markup, code
from rooms.references import safety_problem

T = TypeVar("T")
Value = TypeVar("Value", covariant=True)

UserId = NewType("UserId", str)
"""A syntactically valid Matrix user id, e.g. `@sam:example.org`."""

CaseReference = NewType("CaseReference", str)
"""A family's case reference in upper case, e.g. `LDC-2026-0042` or `CIN/2026/00042`."""


class RestMarker:
    """Marks a parameter that takes everything left on the line (see `Rest`)."""

    def __repr__(self) -> str:
        return "REST"


REST = RestMarker()

Rest = Annotated[T, REST]
"""`Rest[str]`: the rest of the line as typed, spaces and all; must be the last parameter."""


def quoted(raw: str) -> Markup:
    """A user's value quoted back to them as code, shortened if it is long."""
    return code(shorten(raw))


class Converter(ABC, Generic[Value]):
    """Turns one raw argument into a `Value`, or raises BadArgument saying what was expected.

    `label` is the placeholder in usage lines (`<label>`); None means use the parameter name.
    `bare` converters (choices) show their label without angle brackets, like `on|off`.
    """

    label: str | None = None
    bare: bool = False

    @abstractmethod
    def convert(self, raw: str) -> Value:
        """The value for `raw`; raises BadArgument naming the value and what is expected."""


LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
DNS_NAME = re.compile(r"[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*")
PORT = re.compile(r"[0-9]{1,5}")
MAX_USER_ID_LENGTH = 255


class UserIdConverter(Converter[UserId]):
    """A full Matrix user id, by the spec's grammar: @localpart:server_name."""

    example = "@sam:example.org"

    def __init__(self, *, label: str = "@user:server") -> None:
        self.label = label

    def convert(self, raw: str) -> UserId:
        value = raw.strip().removeprefix(MATRIX_TO)
        self._check(raw, value)
        return UserId(value)

    def _reject(self, raw: str, problem: str) -> BadArgument:
        return BadArgument(
            quoted(raw)
            + f" is not a Matrix user id: {problem} Write the id in full, like "
            + code(self.example)
            + "."
        )

    def _check(self, raw: str, value: str) -> None:
        if not value.startswith("@"):
            raise self._reject(raw, "a user id starts with @.")
        localpart, colon, server = value[1:].partition(":")
        if not colon:
            raise self._reject(
                raw,
                "it has no server after a colon. If you picked the person from a list as you "
                "typed, your app may have sent only their name.",
            )
        if not localpart:
            raise self._reject(raw, "the part before the colon is empty.")
        if not LOCALPART.fullmatch(localpart):
            suggestion = localpart.lower()
            if LOCALPART.fullmatch(suggestion) and _valid_server_name(server):
                raise BadArgument(
                    quoted(raw)
                    + " is not a Matrix user id: user ids are lower case. Did you mean "
                    + code(f"@{suggestion}:{server}")
                    + "?"
                )
            raise self._reject(
                raw,
                "before the colon it may only have lower-case letters, digits and . _ = - / +.",
            )
        if not _valid_server_name(server):
            raise self._reject(raw, "the part after the colon is not a server name.")
        if len(value) > MAX_USER_ID_LENGTH:
            raise self._reject(raw, f"it is longer than {MAX_USER_ID_LENGTH} characters.")


def _valid_server_name(server: str) -> bool:
    """hostname [":" port], hostname being a DNS name, IPv4 address or [IPv6 literal]."""
    if server.startswith("["):
        literal, bracket, port = server[1:].partition("]")
        if not bracket:
            return False
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
    else:
        host, _, port = server.partition(":")
        if not host or len(host) > MAX_USER_ID_LENGTH or not DNS_NAME.fullmatch(host):
            return False
        port = server[len(host) :]
    if not port:
        return True
    digits = port.removeprefix(":")
    return port.startswith(":") and bool(PORT.fullmatch(digits)) and 0 < int(digits) <= 65535


class CaseReferenceConverter(Converter[CaseReference]):
    """A case reference in any council's format, such as LDC-2026-0042, CIN/2026/00042 or
    123456; letters are upper-cased.

    Only the rules that keep a name out of the unencrypted room name are checked here
    (`rooms.references.safety_problem`); the operator's own format is checked where the
    family is created, as it is a rule of this deployment rather than of the argument.
    """

    example = "LDC-2026-0042"

    def __init__(self, *, label: str | None = None) -> None:
        self.label = label

    def convert(self, raw: str) -> CaseReference:
        value = raw.strip()
        problem = safety_problem(value)
        if problem is not None:
            raise BadArgument(
                quoted(raw)
                + f" is not a case reference: {problem}. Use the council's case reference, "
                "never the family's name (room names are not encrypted), like "
                + code(self.example)
                + "."
            )
        return CaseReference(value.upper())


class Choice(Converter[str]):
    """One of a fixed set of words, matched case-insensitively; returns the option as declared."""

    def __init__(self, *options: str, label: str | None = None) -> None:
        if not options:
            raise ValueError("a Choice needs at least one option")
        self.options = options
        self._by_key = {option.casefold(): option for option in options}
        if len(self._by_key) != len(options):
            raise ValueError(f"options differ only in case: {options!r}")
        self.label = label if label is not None else "|".join(options)
        self.bare = label is None

    def convert(self, raw: str) -> str:
        option = self._by_key.get(raw.strip().casefold())
        if option is None:
            choices = Markup()
            for index, name in enumerate(self.options):
                choices += (", " if index else "") + code(name)
            raise BadArgument(quoted(raw) + " is not one of the choices here: " + choices + ".")
        return option


class Text(Converter[str]):
    """Free text taken as typed (it is escaped wherever it is shown)."""

    def __init__(self, *, label: str | None = None, max_length: int | None = None) -> None:
        self.label = label
        self.max_length = max_length

    def convert(self, raw: str) -> str:
        if self.max_length is not None and len(raw) > self.max_length:
            raise BadArgument(
                f"That text is {len(raw)} characters long; the most I can take here is "
                f"{self.max_length}."
            )
        return raw


class Integer(Converter[int]):
    """A whole number, optionally within [min, max]."""

    def __init__(
        self, min: int | None = None, max: int | None = None, *, label: str | None = None
    ) -> None:
        self.minimum = min
        self.maximum = max
        self.label = label

    def convert(self, raw: str) -> int:
        value = raw.strip()
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", value):
            raise BadArgument(quoted(raw) + " is not a whole number, like " + code("10") + ".")
        number = int(value)
        if self.minimum is not None and number < self.minimum:
            raise BadArgument(f"{number} is too small: the smallest I accept is {self.minimum}.")
        if self.maximum is not None and number > self.maximum:
            raise BadArgument(f"{number} is too large: the largest I accept is {self.maximum}.")
        return number


@dataclass(frozen=True)
class ParamSpec:
    """What an annotation says about a parameter: how to convert it, and how it is read."""

    converter: Converter[object]
    rest: bool
    optional: bool


def converter_for(annotation: object) -> ParamSpec:
    """Choose the converter for a handler parameter from its type annotation.

    Raises TypeError for annotations no converter handles, so mistakes fail at start-up.
    """
    metadata, inner = _unwrap_annotated(annotation)
    optional = False
    origin = get_origin(inner)
    if origin is Union or origin is types.UnionType:
        members = [member for member in get_args(inner) if member is not type(None)]
        if len(members) != 1 or len(members) == len(get_args(inner)):
            raise TypeError(f"unsupported union annotation for a command argument: {annotation!r}")
        optional = True
        more, inner = _unwrap_annotated(members[0])
        metadata += more
    rest = any(isinstance(item, RestMarker) for item in metadata)
    overrides = [item for item in metadata if isinstance(item, Converter)]
    if overrides:
        return ParamSpec(overrides[-1], rest, optional)
    return ParamSpec(_default_converter(inner, annotation), rest, optional)


def _unwrap_annotated(annotation: object) -> tuple[tuple[object, ...], object]:
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        return tuple(metadata), base
    return (), annotation


def _default_converter(inner: object, annotation: object) -> Converter[object]:
    if inner is UserId:
        return UserIdConverter()
    if inner is CaseReference:
        return CaseReferenceConverter()
    if get_origin(inner) is Literal:
        options = get_args(inner)
        if not all(isinstance(option, str) for option in options):
            raise TypeError(f"Literal choices must be strings: {annotation!r}")
        return Choice(*options)
    if inner is str:
        return Text()
    if inner is int:
        return Integer()
    raise TypeError(
        f"no converter for a command argument annotated {annotation!r}; "
        "use Annotated[..., SomeConverter()]"
    )
