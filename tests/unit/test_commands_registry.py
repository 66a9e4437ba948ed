"""Declaring commands: parameters from signatures, usage lines, groups and the registry."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest

from commands import build_registry
from commands.framework.context import CommandContext, RoomKind
from commands.framework.converters import CaseReference, Choice, Integer, Rest, Text, UserId
from commands.framework.errors import CommandNotFound, UserInputError
from commands.framework.registry import (
    ANYWHERE,
    DIRECT,
    FAMILY_ROOM,
    CommandRegistry,
    Group,
    command,
    group,
    subcommand_group,
)


@command("invite", summary="Invite a colleague.", where=FAMILY_ROOM)
async def invite(ctx: CommandContext, who: UserId, role: Rest[str]) -> None:
    """Test command."""


@command("basis", summary="Record the lawful basis.", where=FAMILY_ROOM)
async def basis(
    ctx: CommandContext,
    basis: Literal["public_task", "legal_obligation", "consent", "vital_interests"],
    note: Rest[str] | None = None,
) -> None:
    """Test command."""


@command("new", summary="Create a family room.", where=DIRECT)
async def family_new(ctx: CommandContext, reference: CaseReference) -> None:
    """Test command."""


FAMILY = subcommand_group("family", summary="Family records.", subcommands=(family_new, basis))


@command("set", summary="Change one of your details.")
async def contact_set(
    ctx: CommandContext,
    field: Annotated[str, Choice("phone", "email", label="field")],
    value: Rest[str],
) -> None:
    """Test command."""


@command("share", summary="Share your details or not.")
async def contact_share(ctx: CommandContext, choice: Literal["on", "off"]) -> None:
    """Test command."""


@group("contact", summary="Your details.", subcommands=(contact_set, contact_share))
async def contact(ctx: CommandContext) -> None:
    """Test command."""


def test_params_come_from_the_signature() -> None:
    assert [param.name for param in invite.params] == ["who", "role"]
    who, role = invite.params
    assert who.required
    assert not who.rest
    assert role.required
    assert role.rest
    assert invite.handler.__name__ == "invite"


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["invite"], "!invite <@user:server> <role>"),
        (
            ["family", "basis"],
            "!family basis public_task|legal_obligation|consent|vital_interests [note]",
        ),
        (["family", "new"], "!family new <reference>"),
        (["contact"], "!contact"),
        (["contact", "set"], "!contact set <field> <value>"),
        (["contact", "share"], "!contact share on|off"),
    ],
)
def test_usage_is_generated(words: list[str], expected: str) -> None:
    registry = CommandRegistry([invite, FAMILY, contact])
    assert registry.lookup(words).usage() == expected


def test_usage_with_another_prefix_and_optional_choice() -> None:
    @command("sensitive", summary="Hide me.")
    async def sensitive(ctx: CommandContext, state: Literal["on", "off"] | None = None) -> None:
        """Test command."""

    @command("audit", summary="Look-ups.")
    async def audit(ctx: CommandContext, count: Annotated[int, Integer(1, 200)] = 20) -> None:
        """Test command."""

    assert sensitive.usage("?") == "?sensitive [on|off]"
    assert audit.usage() == "!audit [count]"
    assert audit.params[0].default == 20


def test_per_parameter_converter_override_from_the_decorator() -> None:
    label = Text(label="what you do", max_length=80)

    @command("role", summary="Set your role.", converters={"role": label})
    async def role(ctx: CommandContext, role: Rest[str]) -> None:
        """Test command."""

    assert role.params[0].converter is label
    assert role.usage() == "!role <what you do>"


def test_group_subcommands_know_their_path() -> None:
    assert isinstance(contact, Group)
    sub = contact.get("SET")
    assert sub is not None
    assert sub.qualified_name == "contact set"
    assert sub.parents == ("contact",)
    assert contact.get("nope") is None
    assert contact.usage_lines() == [
        "!contact",
        "!contact set <field> <value>",
        "!contact share on|off",
    ]
    assert FAMILY.usage() == "!family <new|basis>"
    assert FAMILY.usage_lines()[0] == "!family new <reference>"


def test_nested_groups_get_full_paths() -> None:
    outer = subcommand_group("outer", summary="o", subcommands=(FAMILY,))
    inner = outer.get("family")
    assert isinstance(inner, Group)
    new = inner.get("new")
    assert new is not None
    assert new.usage() == "!outer family new <reference>"


def test_group_usable_in_depends_on_its_subcommands() -> None:
    assert FAMILY.usable_in(RoomKind.DIRECT)
    assert FAMILY.usable_in(RoomKind.FAMILY)
    only_direct = subcommand_group("x", summary="x", subcommands=(family_new,))
    assert not only_direct.usable_in(RoomKind.FAMILY)
    assert not contact.usable_in(RoomKind.OTHER)


def test_unknown_subcommand_error_suggests_or_lists() -> None:
    assert isinstance(contact, Group)
    close = contact.unknown_subcommand("sett")
    assert "Did you mean `!contact set`?" in close.message
    far = contact.unknown_subcommand("zzz")
    assert far.message == "`!contact` has no subcommand `zzz`. Its subcommands are `set`, `share`."


def test_handlers_must_be_async() -> None:
    def plain(ctx: CommandContext) -> None:
        """Test command."""

    with pytest.raises(TypeError, match="async"):
        command("x", summary="x")(plain)  # type: ignore[arg-type]


def test_rest_argument_must_come_last() -> None:
    async def handler(ctx: CommandContext, text: Rest[str], who: UserId) -> None:
        """Test command."""

    with pytest.raises(TypeError, match="must come last"):
        command("x", summary="x")(handler)


def test_required_argument_cannot_follow_an_optional_one() -> None:
    async def handler(ctx: CommandContext, a: str | None, b: str) -> None:
        """Test command."""

    with pytest.raises(TypeError, match="follows an optional"):
        command("x", summary="x")(handler)


def test_arguments_need_annotations_and_plain_parameters() -> None:
    async def unannotated(ctx: CommandContext, a) -> None:  # type: ignore[no-untyped-def]
        """Test command."""

    async def star(ctx: CommandContext, *words: str) -> None:
        """Test command."""

    async def nothing() -> None:
        """Test command."""

    with pytest.raises(TypeError, match="needs a type"):
        command("x", summary="x")(unannotated)
    with pytest.raises(TypeError, match="plain positional"):
        command("x", summary="x")(star)
    with pytest.raises(TypeError, match="ctx first"):
        command("x", summary="x")(nothing)


def test_overrides_must_name_real_arguments_and_names_must_be_words() -> None:
    async def handler(ctx: CommandContext, a: str) -> None:
        """Test command."""

    with pytest.raises(TypeError, match="no argument named"):
        command("x", summary="x", converters={"b": Text()})(handler)
    with pytest.raises(ValueError, match="lower-case words"):
        command("Bad Name", summary="x")(handler)
    with pytest.raises(ValueError, match="duplicate subcommand"):
        subcommand_group("g", summary="g", subcommands=(family_new, family_new))


def test_registry_finds_names_and_aliases_and_rejects_duplicates() -> None:
    @command("whois", summary="Who is who.", aliases=("who",), where=ANYWHERE)
    async def whois(ctx: CommandContext, query: Rest[str] | None = None) -> None:
        """Test command."""

    registry = CommandRegistry([whois, invite])
    assert registry.get("WHO") is whois
    assert registry.get("whois") is whois
    assert registry.get("nope") is None
    assert [item.name for item in registry.all()] == ["invite", "whois"]
    with pytest.raises(ValueError, match="already used"):
        registry.add(whois)

    @command("other", summary="x", aliases=("invite",))
    async def other(ctx: CommandContext) -> None:
        """Test command."""

    with pytest.raises(ValueError, match="already used"):
        registry.add(other)
    assert registry.get("other") is None
    assert isinstance(contact, Group)
    sub = contact.get("set")
    assert sub is not None
    with pytest.raises(ValueError, match="subcommand"):
        registry.add(sub)


def test_registry_lookup_walks_groups() -> None:
    registry = CommandRegistry([contact, invite])
    assert registry.lookup(["contact", "share"]).qualified_name == "contact share"
    with pytest.raises(CommandNotFound) as not_found:
        registry.lookup(["contakt"])
    assert not_found.value.suggestion == "contact"
    with pytest.raises(UserInputError, match="no subcommand"):
        registry.lookup(["contact", "delete"])
    with pytest.raises(UserInputError, match="has no subcommands"):
        registry.lookup(["invite", "x"])


def test_build_registry_is_fresh_each_time_and_has_help() -> None:
    first = build_registry()
    second = build_registry()
    assert first is not second
    assert first.get("help") is not None
    assert first.get("help") is second.get("help")
