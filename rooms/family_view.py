"""A family member's own view of their team: a room of their own with the bot.

The family member (a parent, a carer, a young person) never enters the practitioners' room.
`!family share-with` gives them an encrypted, invite-only room named with the reference only,
holding a team card: each current practitioner's name, organisation, job title and role in
this case, who the lead is, and contact details only of those who agreed to show them to
families (`!contact share-family on`). Sensitive involvements never appear. When the team
changes, the card is edited in place (`m.replace`) and a short note says who joined or left.
Only for an active family that was told about the team; never for one recorded as unsafe to
tell. Every share, update and end is audited in the family's trail.
"""

from __future__ import annotations

from typing import Any

from markup import Markup, Reply, blocks, bold, bullet_list, paragraph, text
from rooms.actions import CREATE_ROOM, kick_user, post_notice
from rooms.admission import is_on_team
from rooms.direct_chat import AWAIT_JOIN_KEY
from rooms.errors import TeamRuleError
from rooms.family_room import ENCRYPTION_ALGORITHM, ROOM_VERSION, STATE_POWER, initial_state
from rooms.policy import TeamPolicy, server_of
from storage import Family, FamilyView, Involvement, Practitioner, Transaction, transaction_id

VIEW_KEY = "view_id"
"""Payload key of a create_room item that opens a family view, and of the view's card."""
CARD_KEY = "view_card"
"""Payload key of the card message: its sent event id is what later edits replace."""
VIEW_TOPIC = "The people supporting your family — send !help"


def view_room_request(reference: str, user_id: str) -> dict[str, Any]:
    """An encrypted, invite-only room for one family member, named with the reference only;
    only the bot may invite, change state or moderate."""
    return {
        "preset": "private_chat",
        "visibility": "private",
        "room_version": ROOM_VERSION,
        "name": f"Your team: {reference}",
        "topic": VIEW_TOPIC,
        "invite": [user_id],
        "initial_state": [
            initial_state("m.room.encryption", {"algorithm": ENCRYPTION_ALGORITHM}),
            initial_state("m.room.guest_access", {"guest_access": "forbidden"}),
            initial_state("m.room.history_visibility", {"history_visibility": "invited"}),
        ],
        "power_level_content_override": {
            "users": {},
            "users_default": 0,
            "events_default": 0,
            "state_default": STATE_POWER,
            "invite": STATE_POWER,
            "kick": STATE_POWER,
            "ban": STATE_POWER,
            "redact": STATE_POWER,
        },
    }


def may_see_family(policy: TeamPolicy, user_id: str) -> bool:
    server = server_of(user_id)
    return server in policy.allowed_servers or server in policy.family_servers


async def share_view(
    tx: Transaction, family: Family, user_id: str, *, actor: str, policy: TeamPolicy, cause: str
) -> FamilyView:
    """Give `user_id` their view of this family's team; TeamRuleError (nothing written) when
    the family may not be shown to them."""
    if family.not_informed_reason is not None:
        raise TeamRuleError(
            "This family is recorded as unsafe to tell about this team, so I cannot show them "
            "their team: telling them is exactly what was judged unsafe. If that has changed, "
            "record it first with !family informed."
        )
    if family.status != "active" or family.family_informed_at is None:
        raise TeamRuleError(
            "I can share the team only with a family whose record is active and who were "
            "told about this team (!family informed)."
        )
    if not may_see_family(policy, user_id):
        servers = sorted(policy.allowed_servers | policy.family_servers)
        raise TeamRuleError(
            f"Family members can be given their view only on {', '.join(servers)}, and "
            f"{user_id} is on {server_of(user_id)}."
        )
    if is_on_team(await tx.involvements.get(family.id, user_id)):
        raise TeamRuleError(f"{user_id} is on this family's team; the view is for the family.")
    current = await tx.views.of(family.id, user_id)
    if current is not None and current.is_active:
        raise TeamRuleError(f"{user_id} already has their view of this team.")
    view = await tx.views.share(family.id, user_id, actor)
    await tx.outbox.enqueue(
        transaction_id(cause, "view-room", user_id),
        f"view:{view.id}",
        CREATE_ROOM,
        {VIEW_KEY: view.id, "request": view_room_request(family.reference, user_id)},
    )
    await tx.audit.append(actor, "view_shared", family_id=family.id, detail={"user": user_id})
    return view


async def on_view_room_created(tx: Transaction, view_id: int, room_id: str) -> None:
    """Queue the team card, held until the family member has joined (so their devices get
    the room key), in the transaction that records the room."""
    view = await tx.views.get(view_id)
    if view is None or not view.is_active:
        return
    await tx.views.set_room(view_id, room_id)
    family = await tx.families.get(view.family_id)
    if family is None:
        return
    content = Reply.from_markup(await team_card(tx, family)).to_content()
    await tx.outbox.enqueue(
        _card_txn(view),
        room_id,
        "message",
        {"type": "m.room.message", "content": content, AWAIT_JOIN_KEY: view.user_id,
         CARD_KEY: view.id},
    )


async def on_card_sent(tx: Transaction, view_id: int, event_id: str | None) -> None:
    view = await tx.views.get(view_id)
    if view is not None and event_id is not None and view.card_event_id is None:
        await tx.views.set_card(view_id, event_id)


def _card_txn(view: FamilyView) -> str:
    return transaction_id("view-card", str(view.id), view.shared_at.isoformat())


async def team_card(tx: Transaction, family: Family) -> Markup:
    """Who is helping the family now: never a sensitive involvement, never contact details
    a practitioner did not agree to show families."""
    members = [
        involvement
        for involvement in await tx.involvements.for_family(family.id)
        if is_on_team(involvement) and involvement.membership == "join"
        and not involvement.sensitive
    ]
    people = await tx.practitioners.many(member.user_id for member in members)
    lines = [_card_line(member, people.get(member.user_id)) for member in members]
    return blocks(
        paragraph(bold(f"The people supporting your family ({family.reference})")),
        bullet_list(lines) if lines else paragraph("Nobody yet."),
        paragraph(
            "Send !team to see this again, !mydata for a copy of what is held about your "
            "family, or !correct <what is wrong> to ask the lead to put something right."
        ),
    )


def _describe(involvement: Involvement, person: Practitioner | None) -> str:
    """How a family sees a practitioner: organisation and role, never their user id."""
    work = [] if person is None else [p for p in (person.job_title, person.organisation) if p]
    role = involvement.role or "role not given yet"
    return ", ".join([role, *work])


def _card_line(involvement: Involvement, person: Practitioner | None) -> Markup:
    name = (person.display_name if person is not None else None) or "A practitioner"
    line = text(f"{name}: {_describe(involvement, person)}")
    if involvement.is_lead:
        line += text(" (the lead for your family)")
    if person is not None and person.share_family:
        contact = [f"phone {person.phone}" if person.phone else "",
                   f"email {person.email}" if person.email else ""]
        shown = [part for part in contact if part]
        if shown:
            line += text(" · " + " · ".join(shown))
    return line


async def refresh_views(
    tx: Transaction, family: Family, *cause: str, actor: str, note: Markup | None = None
) -> int:
    """Bring every active view of the family up to date: the card edited in place (or, not
    sent yet, rewritten where it waits) and `note` posted. Returns the views updated."""
    views = [view for view in await tx.views.active_for(family.id) if view.room_id is not None]
    if not views:
        return 0
    card = Reply.from_markup(await team_card(tx, family)).to_content()
    for view in views:
        assert view.room_id is not None
        if view.card_event_id is None:
            pending = await tx.outbox.get(_card_txn(view))
            if pending is not None and pending.is_pending:
                await tx.outbox.set_content(pending.id, card)
        else:
            await tx.outbox.enqueue_message(
                transaction_id(*cause, "view-card-edit", str(view.id)),
                view.room_id,
                _edit(card, view.card_event_id),
            )
        if note is not None:
            await post_notice(tx, view.room_id, note, *cause, "view-note", str(view.id))
        await tx.audit.append(
            actor, "view_updated", family_id=family.id, detail={"user": view.user_id}
        )
    return len(views)


async def refresh_views_of_member(tx: Transaction, user_id: str, *cause: str) -> None:
    """A practitioner's details or consent changed: every family they are on is refreshed."""
    for involvement in await tx.involvements.for_user(user_id):
        family = await tx.families.get(involvement.family_id)
        if family is not None:
            await refresh_views(tx, family, *cause, actor=user_id)


def _edit(content: dict[str, Any], event_id: str) -> dict[str, Any]:
    """An `m.replace` edit: clients show the new content in place of the original card."""
    return {
        "msgtype": content["msgtype"],
        "body": "* " + content["body"],
        "format": content["format"],
        "formatted_body": content["formatted_body"],
        "m.new_content": dict(content),
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        "m.mentions": {},
    }


async def end_view(tx: Transaction, view: FamilyView, *cause: str, actor: str) -> bool:
    """Stop a view: the family member is removed from the room and it is no longer updated
    (the bot leaves it when the family is purged)."""
    if not await tx.views.end(view.id):
        return False
    if view.room_id is not None:
        reason = "Your view of this team has ended."
        await kick_user(tx, view.room_id, view.user_id, reason, *cause, "view-end")
    await tx.audit.append(
        actor, "view_unshared", family_id=view.family_id, detail={"user": view.user_id}
    )
    return True


async def end_all_views(tx: Transaction, family: Family, *cause: str, actor: str) -> int:
    ended = 0
    for view in await tx.views.active_for(family.id):
        ended += await end_view(tx, view, *cause, actor=actor)
    return ended


async def left_view(tx: Transaction, room_id: str, user_id: str, event_id: str) -> None:
    """The family member left their room (or was removed): their view ends there."""
    view = await tx.views.by_room(room_id)
    if view is not None and view.user_id == user_id:
        await end_view(tx, view, event_id, actor=user_id)
