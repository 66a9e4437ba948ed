"""Family rooms: the createRoom request, recording a new family, what happens once the
homeserver has made the room, and handing over the lead.

The bot never creates a room itself here: `request_family_room` records the family as
`pending` and queues a `create_room` outbox item; the process performs it and then calls
`on_room_created` in a new transaction, which queues the creator's invite.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

from markup import Markup, code
from rooms.actions import CREATE_ROOM, NOTIFY_ROOM_KEY, STATE, invite_user, send_state
from rooms.errors import TeamRuleError
from rooms.policy import TeamPolicy, server_of
from rooms.references import example_for, follows, safety_problem
from storage import (
    BACKGROUND,
    ConflictError,
    Family,
    Involvement,
    NotFoundError,
    Transaction,
    transaction_id,
)

FAMILY_STATE_EVENT = "org.patchwork.family"
"""Marks a room as a family room and holds only its case reference, so the mapping survives
a lost database."""

ROOM_VERSION = "12"
"""Pinned so the power levels below are valid: from version 12 the room's creator (the bot)
has unlimited power and must not be listed in `users`, which Synapse enforces."""

ENCRYPTION_ALGORITHM = "m.megolm.v1.aes-sha2"
SERVER_ACL_EVENT = "m.room.server_acl"
CREATION_LIMIT = 10
CREATION_WINDOW = timedelta(days=1)
"""At most this many families per creator in this window: `!family new` in a loop stops."""
LEAD_POWER = 50
MODERATION_POWER = 50
STATE_POWER = 100

PROTECTED_STATE_EVENTS = (
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.encryption",
    "m.room.server_acl",
    "m.room.tombstone",
    "m.room.pinned_events",
    FAMILY_STATE_EVENT,
)
"""Listed explicitly (all at the state default) so clients show them as admin-only."""

BASIS_NAMES: dict[str, str] = {
    "public_task": "public task",
    "legal_obligation": "legal obligation",
    "consent": "consent",
    "vital_interests": "vital interests",
}


ROOM_TOPIC = "Team room for a family's support network — send !help"
"""Useful to a newcomer and free of family details (room state is not encrypted); rooms made
before keep the topic they have."""


def room_name(reference: str) -> str:
    """Room state is not encrypted: the name holds the case reference and nothing else."""
    return f"Team {reference}"


def creation_queue_key(family_id: int) -> str:
    """The outbox `room_id` of a `create_room` item, which has no room yet.

    One key per family, so a creation that is backing off holds up nothing else.
    """
    return f"family:{family_id}"


def power_levels(lead: str | None) -> dict[str, Any]:
    """The complete power levels content: the lead moderates, only the bot changes state.

    Anyone may invite (Element's invite button works); the bot checks every invite against
    the policy afterwards. The bot is the room's creator, so it is not listed in `users`.
    """
    return {
        "users": {} if lead is None else {lead: LEAD_POWER},
        "users_default": 0,
        "events_default": 0,
        "state_default": STATE_POWER,
        "events": dict.fromkeys(PROTECTED_STATE_EVENTS, STATE_POWER),
        "invite": 0,
        "kick": MODERATION_POWER,
        "ban": MODERATION_POWER,
        "redact": MODERATION_POWER,
        "notifications": {"room": MODERATION_POWER},
    }


def server_acl(policy: TeamPolicy) -> dict[str, Any]:
    """The `m.room.server_acl` content: only the allowed servers (and the bot's own, always)
    may take part in a family room, so a server not on the list cannot join it, fetch its
    state or history, or send into it, whatever invite reached it. Synapse checks the
    requests of other servers by host (no port) and its own name with its port, so a name with
    a port is listed both ways."""
    names = set(policy.allowed_servers) | {server_of(policy.bot_user_id)}
    return {
        "allow": sorted(names | {_host(name) for name in names}),
        "deny": [],
        "allow_ip_literals": any(_is_ip_literal(name) for name in names),
    }


def _host(server_name: str) -> str:
    """"127.0.0.2:8448" -> "127.0.0.2", "[::1]:8448" -> "[::1]", "example.org" unchanged."""
    if server_name.startswith("["):
        return server_name[: server_name.find("]") + 1]
    return server_name.partition(":")[0]


def _is_ip_literal(server_name: str) -> bool:
    try:
        ipaddress.ip_address(_host(server_name).strip("[]"))
    except ValueError:
        return False
    return True


async def keep_server_acl_current(tx: Transaction, family: Family, policy: TeamPolicy) -> bool:
    """Queue the ACL the policy asks for when it is not the one last set in this family's room
    (the policy changed); True if one was queued."""
    if family.room_id is None:
        return False
    wanted = server_acl(policy)
    earlier = [
        item
        for item in await tx.outbox.for_room(family.room_id, (STATE,))
        if item.payload.get("event_type") == SERVER_ACL_EVENT
    ]
    current = next(
        (item.payload.get("content") for item in reversed(earlier) if item.failed_at is None),
        None,
    )
    if current is None:
        for item in await tx.outbox.for_room(creation_queue_key(family.id), (CREATE_ROOM,)):
            for event in item.payload.get("request", {}).get("initial_state", []):
                if event.get("type") == SERVER_ACL_EVENT:
                    current = event.get("content")
    if current == wanted:
        return False
    return await send_state(
        tx,
        family.room_id,
        SERVER_ACL_EVENT,
        wanted,
        "server-acl",
        str(family.id),
        str(len(earlier)),
        priority=BACKGROUND,  # start-up work: replies go first
    )


def create_room_request(reference: str, creator: str, policy: TeamPolicy) -> dict[str, Any]:
    """The createRoom body for a family room (design section 3), with the server ACL of
    `policy.allowed_servers` in its initial state.

    No `invite` list: invites go out one by one through the outbox once the room exists.
    """
    return {
        "preset": "private_chat",
        "visibility": "private",
        "room_version": ROOM_VERSION,
        "name": room_name(reference),
        "topic": ROOM_TOPIC,
        "initial_state": [
            initial_state("m.room.encryption", {"algorithm": ENCRYPTION_ALGORITHM}),
            initial_state("m.room.join_rules", {"join_rule": "invite"}),
            initial_state("m.room.guest_access", {"guest_access": "forbidden"}),
            initial_state("m.room.history_visibility", {"history_visibility": "invited"}),
            initial_state(FAMILY_STATE_EVENT, {"reference": reference}),
            initial_state(SERVER_ACL_EVENT, server_acl(policy)),
        ],
        "power_level_content_override": power_levels(creator),
    }


def initial_state(event_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """One entry of a createRoom request's `initial_state`."""
    return {"type": event_type, "state_key": "", "content": content}


async def request_family_room(
    tx: Transaction,
    reference: str,
    creator: str,
    policy: TeamPolicy,
    cause_event_id: str,
    *,
    notify_room: str | None = None,
) -> Family:
    """Record a new pending family and queue its room's creation; checks come first.
    `notify_room` is where the creator asked, to tell them if the room cannot be made.

    Raises TeamRuleError (nothing written) when the creator may not create families here,
    the reference could be a name or is not in the operator's format, or it is already taken.
    """
    reference = reference.strip()
    if not policy.may_create_families(creator):
        raise TeamRuleError(
            "Only Patchwork administrators can create family rooms here. Please ask one of "
            "them to create the room; they can then make you its lead."
        )
    if not policy.allows(creator):
        raise TeamRuleError(
            f"Family rooms can only be created by people with an account on "
            f"{policy.servers_text()}, and your account is on {server_of(creator)}."
        )
    check_reference(reference, policy)
    if await tx.families.created_since(creator, tx.now() - CREATION_WINDOW) >= CREATION_LIMIT:
        raise TeamRuleError(
            f"You have created {CREATION_LIMIT} family rooms in the last day, which is as many "
            "as I make for one person in a day. If you need more, please ask an administrator."
        )
    if await tx.families.by_reference(reference) is not None:
        raise TeamRuleError(
            "There is already a family with the reference "
            + code(reference)
            + ". If you should be on its team, ask its lead to invite you."
        )
    family = await tx.families.create(reference, None, creator)
    await tx.outbox.enqueue(
        transaction_id(cause_event_id, "create-room"),
        creation_queue_key(family.id),
        CREATE_ROOM,
        {"family_id": family.id, "request": create_room_request(reference, creator, policy)}
        | ({} if notify_room is None else {NOTIFY_ROOM_KEY: notify_room}),
    )
    await tx.audit.append(
        creator, "family_create", family_id=family.id, detail={"reference": reference}
    )
    return family


def check_reference(reference: str, policy: TeamPolicy) -> None:
    """Refuse a reference that could be a name (always) or is not in the operator's format."""
    problem = safety_problem(reference)
    if problem is not None:
        raise TeamRuleError(code(reference) + f" is not a case reference: {problem}.")
    if follows(policy.reference_pattern, reference):
        return
    refusal = code(reference) + " is not a case reference in the format used here. "
    example = example_for(policy.reference_pattern)
    if example is None:
        raise TeamRuleError(
            refusal
            + "Case references here must match the pattern "
            + code(policy.reference_pattern.pattern)
            + " set by your Patchwork administrator; please ask them for an example."
        )
    raise TeamRuleError(
        refusal
        + "Please use your case reference as your council writes it, for example "
        + code(f"{policy.command_prefix}family new {example}")
        + "."
    )


async def on_room_created(
    tx: Transaction, family_id: int, room_id: str, policy: TeamPolicy
) -> Family:
    """Attach the new room to its family, make the creator the lead and queue their invite.

    Calling it again with the same room does nothing more. A different room for a family
    that already has one raises ConflictError: the caller should leave the extra room.
    """
    family = await tx.families.get(family_id)
    if family is None:
        raise NotFoundError(f"no family with id {family_id}")
    if family.room_id == room_id:
        return family
    if family.room_id is not None:
        raise ConflictError(f"family {family.reference} already has room {family.room_id}")
    family = await tx.families.set_room(family_id, room_id)
    lead = family.created_by
    await tx.involvements.upsert_membership(
        family.id, lead, "invite", invited_by=policy.bot_user_id
    )
    await tx.involvements.set_lead(family.id, lead)
    await invite_user(
        tx, room_id, lead, None, "family-room", str(family.id), room_id, "invite-lead"
    )
    await tx.audit.append(
        policy.bot_user_id,
        "family_room",
        family_id=family.id,
        detail={"room_id": room_id, "lead": lead},
    )
    return family


async def hand_over_lead(
    tx: Transaction, family: Family, new_lead: str, *, actor: str, cause_event_id: str
) -> Involvement:
    """Make `new_lead` the family's only lead and queue the matching power levels.

    The caller has checked that `new_lead` is an active, joined member.
    """
    previous = await tx.involvements.lead(family.id)
    involvement = await tx.involvements.set_lead(family.id, new_lead)
    if family.room_id is not None:
        await send_state(
            tx,
            family.room_id,
            "m.room.power_levels",
            power_levels(new_lead),
            cause_event_id,
            "power-levels",
        )
    await tx.audit.append(
        actor,
        "lead",
        family_id=family.id,
        detail={"from": None if previous is None else previous.user_id, "to": new_lead},
    )
    return involvement


def governance_gaps(family: Family, prefix: str) -> list[Markup]:
    """What the lead must still record before anyone else may join a pending team."""
    gaps: list[Markup] = []
    if family.lawful_basis is None:
        gaps.append(
            "the lawful basis for sharing information about this family: "
            + code(f"{prefix}family basis <{'|'.join(BASIS_NAMES)}> [note]")
        )
    if family.family_informed_at is None and family.not_informed_reason is None:
        gaps.append(
            "that the family was told about this team: "
            + code(f"{prefix}family informed [note]")
            + ", or why telling them would be unsafe: "
            + code(f"{prefix}family unsafe <reason>")
        )
    return gaps
