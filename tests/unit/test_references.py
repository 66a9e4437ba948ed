"""Case references: councils' own formats are accepted, anything that could be a name never is
(the reference is the room's unencrypted name), and the operator's `policy.reference_pattern`
narrows what `!family new` takes."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from bot.config import ConfigError, parse_config
from bot.settings import team_policy
from commands.framework.context import RoomKind
from commands.framework.converters import CaseReference, CaseReferenceConverter
from commands.framework.errors import BadArgument
from rooms.errors import TeamRuleError
from rooms.family_room import request_family_room
from rooms.policy import TeamPolicy
from storage import Database
from tests.unit.test_team_commands_support import (
    BOT,
    DM,
    LEAD,
    POLICY,
    new_event_id,
    outbox,
    say,
    snapshot,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)

COUNCIL_FORMATS = ("123456", "CIN/2026/00042", "EHM-12345", "LDC-TEST-0001", "LDC-2026-0042")


@pytest.mark.parametrize("reference", COUNCIL_FORMATS)
def test_councils_own_reference_formats_are_accepted(reference: str) -> None:
    assert CaseReferenceConverter().convert(reference) == CaseReference(reference)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("cin/2026/00042", "CIN/2026/00042"), (" ehm-12345 ", "EHM-12345"), ("ab.1_2", "AB.1_2")],
)
def test_references_are_still_upper_cased(raw: str, expected: str) -> None:
    assert CaseReferenceConverter().convert(raw) == CaseReference(expected)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("Smith", "at least one digit"),
        ("Smith-Jones", "at least one digit"),
        ("Smith family 2", "no spaces"),
        ("A1", "3 to 32 characters"),
        ("A" * 32 + "1", "3 to 32 characters"),
        ("O'Brien1", "letters, digits and - / . _"),
        ("Zoë-2026", "letters, digits and - / . _"),
        ("١٢٣٤٥", "letters, digits and - / . _"),
    ],
)
def test_anything_that_could_be_a_name_is_refused(raw: str, problem: str) -> None:
    with pytest.raises(BadArgument) as caught:
        CaseReferenceConverter().convert(raw)
    message = caught.value.message
    assert "is not a case reference" in message
    assert problem in message
    assert "LDC-2026-0042" in message


def _config(**policy: Any) -> dict[str, Any]:
    return {
        "homeserver": {"url": "https://matrix.example.org"},
        "bot": {"user_id": "@patchwork:example.org", "password": "secret"},
        "storage": {"path": "/var/lib/patchwork", "pickle_key": "0123456789abcdef-key"},
        "policy": {"allowed_servers": ["example.org"], **policy},
    }


@pytest.mark.parametrize("reference", COUNCIL_FORMATS)
def test_the_default_pattern_accepts_the_councils_formats(reference: str) -> None:
    config = parse_config(_config(), environ={})
    assert re.fullmatch(config.policy.reference_pattern, reference)
    assert team_policy(config, BOT).reference_pattern.fullmatch(reference)


def test_the_default_pattern_refuses_names() -> None:
    pattern = parse_config(_config(), environ={}).policy.reference_pattern
    for name in ("Smith", "Smith family", "J. Smith", "AB"):
        assert not re.fullmatch(pattern, name), name


def test_the_operators_pattern_reaches_the_team_policy() -> None:
    config = parse_config(_config(reference_pattern=r"CIN/\d{4}/\d{5}"), environ={})
    policy = team_policy(config, BOT)
    assert policy.reference_pattern.fullmatch("CIN/2026/00042")
    assert not policy.reference_pattern.fullmatch("EHM-12345")


def test_a_pattern_that_does_not_compile_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(reference_pattern="CIN/[0-9"), environ={}, source="patchwork.yaml")
    [problem] = caught.value.problems
    assert problem.startswith("policy.reference_pattern:")
    assert "'CIN/[0-9'" in problem
    assert "regular expression" in problem


def _policy(pattern: str) -> TeamPolicy:
    return replace(POLICY, reference_pattern=re.compile(pattern))


async def test_family_new_refuses_references_outside_the_operators_pattern(
    db: Database,
) -> None:
    policy = _policy(r"CIN/[0-9]{4}/[0-9]{5}")
    before = await snapshot(db)
    reply = await say(
        db, "!family new EHM-12345", sender=LEAD, room_id=DM, room_kind=RoomKind.DIRECT,
        policy=policy,
    )
    assert "`EHM-12345` is not a case reference in the format used here" in reply.body
    assert "`!family new CIN/2026/00042`" in reply.body
    assert await snapshot(db) == before


async def test_family_new_takes_a_reference_in_the_operators_pattern(db: Database) -> None:
    policy = _policy(r"CIN/[0-9]{4}/[0-9]{5}")
    reply = await say(
        db, "!family new cin/2026/00042", sender=LEAD, room_id=DM, room_kind=RoomKind.DIRECT,
        policy=policy,
    )
    assert reply.body.startswith("I am creating the room `Team CIN/2026/00042`")
    async with db.read() as tx:
        assert await tx.families.by_reference("CIN/2026/00042") is not None
    assert [item.kind for item in await outbox(db)] == ["create_room"]


async def test_an_unusual_pattern_is_quoted_when_no_example_fits(db: Database) -> None:
    policy = _policy(r"[0-9]{8}")
    reply = await say(
        db, "!family new 123456", sender=LEAD, room_id=DM, room_kind=RoomKind.DIRECT,
        policy=policy,
    )
    assert "`123456` is not a case reference in the format used here" in reply.body
    assert "`[0-9]{8}`" in reply.body


async def test_the_safety_rules_hold_whatever_the_operator_allows(db: Database) -> None:
    policy = _policy(r".*")
    for reference in ("Smith", "Smith family", "J Smith 1", "x" * 40 + "1"):
        reply = await say(
            db, f"!family new {reference}", sender=LEAD, room_id=DM,
            room_kind=RoomKind.DIRECT, policy=policy,
        )
        assert "is not a case reference" in reply.body, reference
    for reference in ("Smith", "Smith family", "Zoë 2026"):
        async with db.transaction() as tx:
            with pytest.raises(TeamRuleError, match="is not a case reference"):
                await request_family_room(tx, reference, LEAD, policy, new_event_id())
    assert await outbox(db) == []
