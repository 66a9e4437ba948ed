"""Who may run what: every command against every kind of caller, as one table.

Each cell runs one message through the real dispatcher (`run`) against a fresh database with
an active family: the lead, a teacher who shares her phone and email, a nurse who does not
share hers, a worker whose involvement is sensitive (and who shares a phone), and a member
whose involvement lapsed while they stayed in the room. For every cell:

- the caller is answered, never with the "something went wrong" fault message;
- the answer says what the table says (what was done, or why not);
- nothing leaks: no phone number, email address or sensitive involvement appears in an answer
  to a caller not allowed to see it;
- a refusal changes no stored row and queues nothing (a refused `!whois` adds only its audit row).

Two kinds of caller never reach the dispatcher: a user on a server outside the policy, and
anyone in a room without end-to-end encryption. The event router refuses those, so their
cells go through `bot.router.EventRouter` (as in tests/unit/test_router_guards.py), for
every command in the table.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from commands import build_registry
from commands.framework.context import RoomKind
from commands.framework.registry import Group
from markup import Reply
from storage import Database, OutboxItem
from tests.unit.test_command_properties import every_command
from tests.unit.test_router_guards import RecordingGateway, _loop
from tests.unit.test_sync_pipeline import ALICE, FakeClient, _text
from tests.unit.test_sync_pipeline import ROOM as ROUTER_ROOM
from tests.unit.test_team_commands_support import (
    ADMIN,
    DM,
    LEAD,
    NAMES,
    NURSE,
    OUTSIDER,
    ROOM,
    START,
    TEACHER,
    WORKER,
    FakeMatrix,
    ManualClock,
    active_family,
    outbox,
    run,
    snapshot,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)

FORMER = "@former:council.example"
STRANGER = "@stranger:council.example"
SAM = "@sam:council.example"
"""A colleague with an account, not on the team: whom `!invite` invites."""

TEACHER_PHONE = "01632 960123"
TEACHER_EMAIL = "tara@school.example"
NURSE_PHONE = "07700 900456"
WORKER_PHONE = "01632 960999"
WORKER_NAME = NAMES[WORKER]
"""The sensitive involvement itself: shown only to the lead, admins and the worker."""
SECRETS = (TEACHER_PHONE, TEACHER_EMAIL, NURSE_PHONE, WORKER_PHONE, WORKER_NAME)

FAILURE = "something went wrong"
EVENT_ID = "$authz"


# --- the callers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    sender: str
    room_id: str
    room_kind: RoomKind
    sees: frozenset[str]
    """Which of SECRETS this caller may be shown."""


SHARED = frozenset({TEACHER_PHONE, TEACHER_EMAIL})
SENSITIVE = frozenset({WORKER_PHONE, WORKER_NAME})

CALLERS: dict[str, Caller] = {
    "admin": Caller(ADMIN, ROOM, RoomKind.FAMILY, SHARED | SENSITIVE),
    "lead": Caller(LEAD, ROOM, RoomKind.FAMILY, SHARED | SENSITIVE),
    "member": Caller(NURSE, ROOM, RoomKind.FAMILY, SHARED),
    "sensitive member": Caller(WORKER, ROOM, RoomKind.FAMILY, SHARED | SENSITIVE),
    "ex-member in the room": Caller(FORMER, ROOM, RoomKind.FAMILY, frozenset()),
    "non-member": Caller(STRANGER, ROOM, RoomKind.FAMILY, frozenset()),
    "direct chat": Caller(NURSE, DM, RoomKind.DIRECT, frozenset({NURSE_PHONE})),
    "non-member, direct chat": Caller(STRANGER, DM, RoomKind.DIRECT, frozenset()),
}
"""The nurse in the direct chat is a member of the team; her own number is hers to see."""


# --- the outcomes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    says: str
    audited: bool = False
    """A refusal that is audited (a refused look-up) adds exactly one audit row."""


def yes(says: str) -> Outcome:
    return Outcome(True, says)


def no(says: str, *, audited: bool = False) -> Outcome:
    return Outcome(False, says, audited)


HELP = yes("What you can do in this family room:")
HELP_DM = yes("What you can do in this direct chat:")
TEAM = yes("The team for LDC-2026-0042")
NO_HIT = yes("Nobody on this team matches `@worker:council.example`")
SEE_NO = no("Only members of this family's team can see who is on it", audited=True)
IN_ROOM = no("only works in a family room.")
IN_DM = no("only works in a direct chat with me.")
LEADS = no("Only this family's lead or a Patchwork administrator can do that.")
INVITED = yes("I have invited Sam Patel as `Class teacher`.")
INV_NO = no("Only members of this family's team can invite colleagues.")
ROLE = yes("Your role in this case is now `Family support`.")
ROLE_NO = no("You are not on this family's team, so you have no role here.")
NEW_LD = yes("Tara Teacher is now the lead for this family")
SHOWN = yes("Your contact details (the same on every team you are on):")
USE_DM = no("in a direct chat with me instead")
PHONE = yes("Saved your phone number.")
EMAIL = yes("Saved your email address.")
ORG = yes("Saved your organisation.")
SHARE = yes("Send `!contact share off` to stop at any time.")
AWAY = yes("Noted: you are away until Mon 10 Aug 2026.")
CASES = yes("You are on one family's team:")
NO_CASE = yes("You are not on any family's team at the moment.")
SUBCMD = no("`!family` needs a subcommand.")
CREATE = yes("I am creating the room `Team LDC-2026-0099`")
BASIS = yes("Recorded the lawful basis for LDC-2026-0042: consent.")
TOLD = yes("Recorded that the family for LDC-2026-0042 was told about this team.")
UNSAFE = yes("Recorded why the family for LDC-2026-0042 is not being told about this team.")
CONFIRM = yes("you are confirmed as still involved with this family")
CONF_NO = no("You are not on this family's team, so there is nothing to confirm.")
BYE = yes("is no longer involved with this family and has left this room.")
LEAV_NO = no("You are not on this family's team.")
PRIVATE = yes("I have sent the confidential involvements you may see to our direct chat.")
HIDDEN = yes("Your involvement is now hidden from ordinary look-ups")
NOT_ON = no("You are not on this family's team.")
ALERT = yes("says: please check the safety plan")
ALERT_NO = no("Only members of this family's team can alert it.")
AUDIT = yes("entries in the audit trail of LDC-2026-0042, newest first:")
EXPORT = yes("I am preparing the record of LDC-2026-0042")
MYDATA = yes("I am preparing what Patchwork holds about you")
CLOSED = yes("The record for LDC-2026-0042 is closed: its lead closed it.")
NO_CONS = no("This family's lawful basis is public_task, not consent")
SHARED_V = yes("I am opening a room for @parent:council.example showing who supports")
NO_VIEW = no("@parent:council.example has no view of this team to end.")
SHARE_F = yes("Send `!contact share-family off` to stop at any time.")

# Router refusals: the dispatcher never sees these messages.
OTHER_SERVER = no("Sorry, I cannot help you: only people with an account on localhost")
UNENCRYPTED = no("I only work in end-to-end encrypted rooms")


# --- the table --------------------------------------------------------------------------------

BODIES: dict[str, str] = {
    "help": "!help",
    "whois": "!whois",
    "whois sensitive": f"!whois {WORKER}",
    "invite": f"!invite {SAM} Class teacher",
    "role": "!role Family support",
    "lead": f"!lead {TEACHER}",
    "contact": "!contact",
    "contact set phone": "!contact set phone 020 7946 0555",
    "contact set email": "!contact set email nina@nhs.example",
    "contact set org": "!contact set org Oak Primary",
    "contact share": "!contact share on",
    "contact away": "!contact away 10 Aug",
    "cases": "!cases",
    "family": "!family",
    "family new": "!family new LDC-2026-0099",
    "family basis": "!family basis consent",
    "family informed": "!family informed leaflet given",
    "family unsafe": "!family unsafe a parent would be at risk",
    "confirm": "!confirm",
    "leave": "!leave moving on",
    "sensitive": "!sensitive on",
    "attention": "!attention please check the safety plan",
    "audit": "!audit",
    "export": "!export",
    "mydata": "!mydata",
    "family close": "!family close case stepped down",
    "family consent": "!family consent withdrawn",
    "family share-with": "!family share-with @parent:council.example",
    "contact share-family": "!contact share-family on",
    "family unshare": "!family unshare @parent:council.example",
}

COLUMNS = tuple(CALLERS)
# fmt: off
TABLE: dict[str, tuple[Outcome, ...]] = {
    #                     admin    lead     member   sensitiv ex-membr non-memb direct   stranger
    #                     -------- in the family room ----------------------- direct chat ------
    "help":              (HELP,    HELP,    HELP,    HELP,    HELP,    HELP,    HELP_DM, HELP_DM),
    "whois":             (TEAM,    TEAM,    TEAM,    TEAM,    SEE_NO,  SEE_NO,  IN_ROOM, IN_ROOM),
    "whois sensitive":   (PRIVATE, PRIVATE, NO_HIT,  PRIVATE, SEE_NO,  SEE_NO,  IN_ROOM, IN_ROOM),
    "invite":            (INVITED, INVITED, INVITED, INVITED, INV_NO,  INV_NO,  IN_ROOM, IN_ROOM),
    "role":              (ROLE_NO, ROLE,    ROLE,    ROLE,    ROLE_NO, ROLE_NO, IN_ROOM, IN_ROOM),
    "lead":              (NEW_LD,  NEW_LD,  LEADS,   LEADS,   LEADS,   LEADS,   IN_ROOM, IN_ROOM),
    "contact":           (SHOWN,   SHOWN,   SHOWN,   SHOWN,   SHOWN,   SHOWN,   SHOWN,   SHOWN),
    "contact set phone": (USE_DM,  USE_DM,  USE_DM,  USE_DM,  USE_DM,  USE_DM,  PHONE,   PHONE),
    "contact set email": (USE_DM,  USE_DM,  USE_DM,  USE_DM,  USE_DM,  USE_DM,  EMAIL,   EMAIL),
    "contact set org":   (ORG,     ORG,     ORG,     ORG,     ORG,     ORG,     ORG,     ORG),
    "contact share":     (SHARE,   SHARE,   SHARE,   SHARE,   SHARE,   SHARE,   SHARE,   SHARE),
    "contact away":      (AWAY,    AWAY,    AWAY,    AWAY,    AWAY,    AWAY,    AWAY,    AWAY),
    "cases":             (IN_DM,   IN_DM,   IN_DM,   IN_DM,   IN_DM,   IN_DM,   CASES,   NO_CASE),
    "family":            (SUBCMD,  SUBCMD,  SUBCMD,  SUBCMD,  SUBCMD,  SUBCMD,  SUBCMD,  SUBCMD),
    "family new":        (IN_DM,   IN_DM,   IN_DM,   IN_DM,   IN_DM,   IN_DM,   CREATE,  CREATE),
    "family basis":      (BASIS,   BASIS,   LEADS,   LEADS,   LEADS,   LEADS,   IN_ROOM, IN_ROOM),
    "family informed":   (TOLD,    TOLD,    LEADS,   LEADS,   LEADS,   LEADS,   IN_ROOM, IN_ROOM),
    "family unsafe":     (UNSAFE,  UNSAFE,  LEADS,   LEADS,   LEADS,   LEADS,   IN_ROOM, IN_ROOM),
    "confirm":           (CONF_NO, CONFIRM, CONFIRM, CONFIRM, CONF_NO, CONF_NO, IN_ROOM, IN_ROOM),
    "leave":             (LEAV_NO, BYE,     BYE,     BYE,     LEAV_NO, LEAV_NO, IN_ROOM, IN_ROOM),
    "sensitive":         (NOT_ON,  HIDDEN,  HIDDEN,  HIDDEN,  NOT_ON,  NOT_ON,  IN_ROOM, IN_ROOM),
    "attention":         (ALERT_NO, ALERT,  ALERT,   ALERT,   ALERT_NO, ALERT_NO, IN_ROOM, IN_ROOM),
    "audit":             (AUDIT,   AUDIT,   LEADS,   LEADS,   LEADS,   LEADS,   IN_ROOM, IN_ROOM),
    "export":            (EXPORT,  EXPORT,  LEADS,   LEADS,   LEADS,   LEADS,   IN_ROOM, IN_ROOM),
    "mydata":            (IN_DM,   IN_DM,   IN_DM,   IN_DM,   IN_DM,   IN_DM,   MYDATA,  MYDATA),
    "family close":      (CLOSED,  CLOSED,  LEADS,   LEADS,   LEADS,   LEADS,   IN_ROOM, IN_ROOM),
    "family consent":    (NO_CONS, NO_CONS, LEADS,   LEADS,   LEADS,   LEADS,   IN_ROOM, IN_ROOM),
    "family share-with": (SHARED_V, SHARED_V, LEADS, LEADS,   LEADS,   LEADS,   IN_ROOM, IN_ROOM),
    "family unshare":    (NO_VIEW, NO_VIEW, LEADS,   LEADS,   LEADS,   LEADS,   IN_ROOM, IN_ROOM),
    "contact share-family": (SHARE_F, SHARE_F, SHARE_F, SHARE_F, SHARE_F, SHARE_F, SHARE_F,
                             SHARE_F),
}
# fmt: on

ROUTER_CALLERS: dict[str, Outcome] = {
    "user on another server, direct chat": OTHER_SERVER,
    "unencrypted room": UNENCRYPTED,
}
"""Refused by the event router for every command in BODIES, before the dispatcher runs."""

CELLS = [
    pytest.param(name, caller, outcome, id=f"{name} | {caller}")
    for name, row in TABLE.items()
    for caller, outcome in zip(COLUMNS, row, strict=True)
]
ROUTER_CELLS = [
    pytest.param(name, caller, outcome, id=f"{name} | {caller}")
    for name in BODIES
    for caller, outcome in ROUTER_CALLERS.items()
]


# --- the checks -------------------------------------------------------------------------------


def resolve(body: str) -> str:
    """The qualified name of the command a body runs, as the dispatcher resolves it."""
    registry = build_registry()
    first, *words = body.removeprefix("!").split()
    command = registry.get(first)
    assert command is not None, body
    while isinstance(command, Group) and words and (child := command.get(words[0])):
        command, words = child, words[1:]
    return command.qualified_name


def test_the_table_covers_every_command_in_the_registry() -> None:
    """A new command or subcommand needs its row here."""
    registered = {item.qualified_name for item in every_command(build_registry().all())}
    assert registered == {resolve(body) for body in BODIES.values()}
    assert set(TABLE) == set(BODIES)


async def team(db: Database) -> None:
    family = await active_family(db, joined=(TEACHER, NURSE, WORKER, FORMER))
    async with db.transaction() as tx:
        await tx.practitioners.update_contact(TEACHER, phone=TEACHER_PHONE, email=TEACHER_EMAIL)
        await tx.practitioners.set_share_contact(TEACHER, True)
        await tx.practitioners.update_contact(NURSE, phone=NURSE_PHONE)
        await tx.practitioners.set_share_contact(NURSE, False)
        await tx.practitioners.update_contact(WORKER, phone=WORKER_PHONE)
        await tx.practitioners.set_share_contact(WORKER, True)
        await tx.involvements.set_sensitive(family.id, WORKER, True)
        former = await tx.involvements.get(family.id, FORMER)
        assert former is not None
        await tx.involvements.end(former.id, "lapsed")
        former = await tx.involvements.get(family.id, FORMER)
        assert former is not None
        assert (former.membership, former.is_active) == ("join", False)


@pytest.fixture(scope="module")
async def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The team, built once; each cell opens its own copy of the file."""
    path = tmp_path_factory.mktemp("authorization") / "template.sqlite3"
    database = await Database.open(path, clock=ManualClock(START))
    try:
        await team(database)
    finally:
        await database.close()
    return path


@pytest.fixture
async def db(template: Path, tmp_path: Path, clock: ManualClock) -> AsyncIterator[Database]:
    """A fresh copy of the team for each cell (overrides the plain database of the support
    module)."""
    path = tmp_path / "patchwork.sqlite3"
    shutil.copyfile(template, path)
    database = await Database.open(path, clock=clock)
    yield database
    await database.close()


def in_reply(items: list[OutboxItem]) -> list[Reply]:
    """Messages queued in reply to the command outside the dispatcher's replies (`!leave`
    says goodbye itself, ahead of the kick)."""
    return [
        Reply(item.payload["content"]["body"], item.payload["content"]["formatted_body"])
        for item in items
        if item.kind == "message"
        and item.payload["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        == EVENT_ID
    ]


def check_answer(answer: list[Reply], outcome: Outcome, sees: frozenset[str]) -> None:
    assert answer, "no answer at all"
    text = "\n".join(part for reply in answer for part in (reply.body, reply.formatted_body))
    assert all(reply.body.strip() for reply in answer), answer
    assert FAILURE not in text, text
    assert outcome.says in "\n".join(reply.body for reply in answer), answer
    leaked = [secret for secret in SECRETS if secret not in sees and secret in text]
    assert leaked == [], f"shown to a caller who may not see it: {leaked}"


@pytest.mark.parametrize(("name", "caller", "outcome"), CELLS)
async def test_who_may_run_what(db: Database, name: str, caller: str, outcome: Outcome) -> None:
    who = CALLERS[caller]
    before = await snapshot(db)
    queued_before = {item.id for item in await outbox(db)}
    replies = await run(
        db,
        BODIES[name],
        sender=who.sender,
        room_id=who.room_id,
        room_kind=who.room_kind,
        matrix=FakeMatrix(display_names={**NAMES, SAM: "Sam Patel"}),
        event_id=EVENT_ID,
    )
    queued = [item for item in await outbox(db) if item.id not in queued_before]
    check_answer([*replies, *in_reply(queued)], outcome, who.sees)
    if not outcome.allowed:
        outbox_size, audit_size, rows = await snapshot(db)
        assert rows == before[2], "a refused command changed stored rows"
        assert outbox_size == before[0], "a refused command queued something"
        assert audit_size == before[1] + (1 if outcome.audited else 0)
        assert len(replies) == 1, replies


@pytest.mark.parametrize(("name", "caller", "outcome"), ROUTER_CELLS)
async def test_the_router_refuses_before_any_command(
    tmp_path: Path, db: Database, name: str, caller: str, outcome: Outcome
) -> None:
    client = FakeClient()
    room = client.rooms[ROUTER_ROOM]
    event = _text(EVENT_ID, BODIES[name])
    if caller == "unencrypted room":
        room.encrypted = False
    else:
        room.users.pop(ALICE)
        room.add_member(OUTSIDER, "Eve", None)
        event.sender = OUTSIDER
    loop = _loop(tmp_path, db, client, RecordingGateway(db))
    before = await snapshot(db)
    queued_before = {item.id for item in await outbox(db)}
    await loop.process_event(room, event, apply_effects=True)
    queued = [item for item in await outbox(db) if item.id not in queued_before]
    check_answer(in_reply(queued), outcome, frozenset())
    assert [item.kind for item in queued] == ["message"]
    outbox_size, audit_size, rows = await snapshot(db)
    assert (audit_size, rows) == (before[1], before[2])
