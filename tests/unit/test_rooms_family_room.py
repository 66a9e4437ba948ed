"""Family rooms: the createRoom body, recording a new family, the room's arrival, lead handover
and the activation rule (basis and informed-or-unsafe, in either order)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from rooms.errors import TeamRuleError
from rooms.family_room import (
    FAMILY_STATE_EVENT,
    ROOM_TOPIC,
    create_room_request,
    creation_queue_key,
    hand_over_lead,
    on_room_created,
    power_levels,
    request_family_room,
)
from rooms.policy import TeamPolicy
from storage import ConflictError, Database
from tests.unit.test_team_commands_support import (
    ADMIN,
    BOT,
    LEAD,
    OUTSIDER,
    POLICY,
    REF,
    ROOM,
    TEACHER,
    audits,
    member,
    outbox,
    pending_family,
    snapshot,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)


def test_create_room_request_follows_the_design() -> None:
    request = create_room_request(REF, LEAD, POLICY)
    assert request["preset"] == "private_chat"
    assert request["visibility"] == "private"
    assert request["name"] == f"Team {REF}"
    assert request["topic"] == "Team room for a family's support network — send !help"
    assert REF not in request["topic"], "the name says which family; the topic says what to do"
    assert "invite" not in request
    state = {event["type"]: event for event in request["initial_state"]}
    assert set(state) == {
        "m.room.encryption",
        "m.room.join_rules",
        "m.room.guest_access",
        "m.room.history_visibility",
        FAMILY_STATE_EVENT,
        "m.room.server_acl",
    }
    assert all(event["state_key"] == "" for event in state.values())
    assert state["m.room.encryption"]["content"] == {"algorithm": "m.megolm.v1.aes-sha2"}
    assert state["m.room.join_rules"]["content"] == {"join_rule": "invite"}
    assert state["m.room.guest_access"]["content"] == {"guest_access": "forbidden"}
    assert state["m.room.history_visibility"]["content"] == {"history_visibility": "invited"}
    assert state[FAMILY_STATE_EVENT]["content"] == {"reference": REF}
    json.dumps(request)  # the outbox stores it as JSON


def test_power_levels_make_the_creator_lead_and_keep_state_for_the_bot() -> None:
    levels = create_room_request(REF, LEAD, POLICY)["power_level_content_override"]
    # The bot creates the room, so from room version 12 it has unlimited power and must not
    # be listed; the request pins that version.
    assert create_room_request(REF, LEAD, POLICY)["room_version"] == "12"
    assert levels["users"] == {LEAD: 50}
    assert BOT not in levels["users"]
    assert levels["users_default"] == 0
    assert levels["events_default"] == 0
    assert levels["invite"] == 0
    assert (levels["kick"], levels["ban"], levels["redact"]) == (50, 50, 50)
    assert levels["state_default"] == 100
    assert set(levels["events"].values()) == {100}
    assert "m.room.power_levels" in levels["events"]
    assert power_levels(None)["users"] == {}


def test_only_the_reference_is_in_unencrypted_room_state() -> None:
    request = create_room_request(REF, LEAD, POLICY)
    strings = [request["name"], request["topic"]] + [
        value
        for event in request["initial_state"]
        for value in event["content"].values()
        if isinstance(value, str)
    ]
    assert all(REF in value or value in _FIXED_VALUES for value in strings)
    assert request["name"].replace(REF, "").strip() == "Team"


_FIXED_VALUES = {"m.megolm.v1.aes-sha2", "invite", "forbidden", "invited", ROOM_TOPIC}
"""The topic is one fixed sentence for every family: it holds nothing about any of them."""


async def test_request_records_a_pending_family_and_queues_its_room(db: Database) -> None:
    async with db.transaction() as tx:
        family = await request_family_room(tx, REF, LEAD, POLICY, "$new")
    assert (family.reference, family.status, family.room_id, family.created_by) == (
        REF,
        "pending",
        None,
        LEAD,
    )
    [item] = await outbox(db)
    assert item.kind == "create_room"
    assert item.room_id == creation_queue_key(family.id)
    assert item.payload == {
        "family_id": family.id,
        "request": create_room_request(REF, LEAD, POLICY),
    }
    [entry] = await audits(db)
    assert (entry.actor, entry.action, entry.family_id) == (LEAD, "family_create", family.id)


async def test_a_taken_reference_is_refused_without_writing(db: Database) -> None:
    await pending_family(db)
    before = await snapshot(db)
    async with db.transaction() as tx:
        with pytest.raises(TeamRuleError, match="already a family"):
            await request_family_room(tx, REF.lower(), TEACHER, POLICY, "$again")
    assert await snapshot(db) == before


async def test_who_may_create_families(db: Database) -> None:
    admins_only = TeamPolicy(
        BOT, POLICY.allowed_servers, POLICY.admins, "admins", timedelta(weeks=8)
    )
    async with db.transaction() as tx:
        with pytest.raises(TeamRuleError, match="Only Patchwork administrators"):
            await request_family_room(tx, REF, LEAD, admins_only, "$1")
        with pytest.raises(TeamRuleError, match="elsewhere.example"):
            await request_family_room(tx, REF, OUTSIDER, POLICY, "$2")
        family = await request_family_room(tx, REF, ADMIN, admins_only, "$3")
    assert family.created_by == ADMIN


async def test_room_created_invites_the_lead_once(db: Database) -> None:
    async with db.transaction() as tx:
        family = await request_family_room(tx, REF, LEAD, POLICY, "$new")
    for _ in range(2):
        async with db.transaction() as tx:
            family = await on_room_created(tx, family.id, ROOM, POLICY)
    assert family.room_id == ROOM
    invites = [item for item in await outbox(db) if item.kind == "invite"]
    assert [(item.room_id, item.payload["user_id"]) for item in invites] == [(ROOM, LEAD)]
    assert [entry.action for entry in await audits(db)] == ["family_create", "family_room"]
    async with db.read() as tx:
        lead = await tx.involvements.lead(family.id)
    assert lead is not None
    assert (lead.user_id, lead.membership, lead.invited_by) == (LEAD, "invite", BOT)
    # The real invite event for the lead changes nothing more.
    await member(db, LEAD, "invite", sender=BOT)
    assert len(await audits(db)) == 2
    async with db.transaction() as tx:
        with pytest.raises(ConflictError):
            await on_room_created(tx, family.id, "!other:council.example", POLICY)


async def test_lead_handover_queues_power_levels(db: Database) -> None:
    family = await pending_family(db)
    await member(db, LEAD, "join")
    await member(db, ADMIN, "invite", sender=LEAD)
    await member(db, ADMIN, "join")
    async with db.transaction() as tx:
        involvement = await hand_over_lead(tx, family, ADMIN, actor=LEAD, cause_event_id="$lead")
        old = await tx.involvements.get(family.id, LEAD)
    assert involvement.is_lead
    assert old is not None
    assert not old.is_lead
    [state] = [item for item in await outbox(db) if item.kind == "state"]
    assert state.room_id == ROOM
    assert state.payload["event_type"] == "m.room.power_levels"
    assert state.payload["state_key"] == ""
    assert state.payload["content"]["users"] == {ADMIN: 50}
    entry = (await audits(db, "lead"))[-1]
    assert entry.detail == {"from": LEAD, "to": ADMIN}


@pytest.mark.parametrize("basis_first", [True, False])
async def test_a_family_becomes_active_only_with_basis_and_informed(
    db: Database, basis_first: bool
) -> None:
    family = await pending_family(db)
    async with db.transaction() as tx:
        if basis_first:
            first = await tx.families.record_basis(
                family.id, "consent", LEAD, None
            )
            second = await tx.families.record_informed(
                family.id, not_informed_reason="risk to a parent"
            )
        else:
            first = await tx.families.record_informed(family.id, note="leaflet")
            second = await tx.families.record_basis(
                family.id, "consent", LEAD, None
            )
    assert first.status == "pending"
    assert second.status == "active"


async def test_outbox_items_for_one_user(db: Database) -> None:
    await pending_family(db)
    async with db.read() as tx:
        found = await tx.outbox.for_user(ROOM, "invite", LEAD)
        nothing = await tx.outbox.for_user(ROOM, "kick", LEAD)
    assert [item.payload["user_id"] for item in found] == [LEAD]
    assert nothing == []


async def test_one_person_cannot_create_family_rooms_without_end(db: Database) -> None:
    from rooms.family_room import CREATION_LIMIT

    async with db.transaction() as tx:
        for number in range(CREATION_LIMIT):
            await request_family_room(tx, f"LDC-2026-{number:04}", LEAD, POLICY, f"$new{number}")
    async with db.transaction() as tx:
        with pytest.raises(TeamRuleError, match="in the last day"):
            await request_family_room(tx, "LDC-2026-0999", LEAD, POLICY, "$one-more")
        assert await tx.families.by_reference("LDC-2026-0999") is None
