"""`!audit`, `!sensitive`, `!attention`, `!export`/`!mydata`, `!family close`, consent
withdrawn and the purge, against a real database through the real dispatcher."""

from __future__ import annotations

import json
from datetime import timedelta

from commands.framework.context import RoomKind
from rooms.closing import purge_family
from rooms.exports import build_attachment
from storage import Database
from storage.dossier import family_dossier
from tests.unit.test_team_commands_support import (
    DM,
    LEAD,
    NURSE,
    POLICY,
    REF,
    ROOM,
    TEACHER,
    WORKER,
    ManualClock,
    active_family,
    audits,
    direct_chat_of,
    outbox,
    run,
    say,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)


async def test_audit_names_who_looked_and_is_itself_audited(
    db: Database, clock: ManualClock
) -> None:
    await active_family(db, joined=(TEACHER, NURSE))
    clock.advance(minutes=5)
    await say(db, "!whois", sender=NURSE)
    reply = await say(db, "!audit 3", sender=LEAD)
    lines = reply.body.splitlines()
    assert lines[0] == f"The last 3 entries in the audit trail of {REF}, newest first:"
    assert "Nina Nurse looked up the team (!whois)" in lines[1]
    assert "02 Mar 2026 10:35 UTC" in lines[1]
    assert 'href="https://matrix.to/#/@nurse:nhs.example"' in reply.formatted_body
    [read] = await audits(db, "audit")
    assert (read.actor, read.detail) == (LEAD, {"rows": 3})


async def test_audit_refuses_a_member_with_a_clear_message(
    db: Database, clock: ManualClock
) -> None:
    await active_family(db, joined=(TEACHER,))
    reply = await say(db, "!audit", sender=TEACHER)
    assert reply.body.startswith("Only this family's lead or a Patchwork administrator")
    assert await audits(db, "audit") == []


async def test_sensitive_on_and_off_is_audited_and_changes_the_roster(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(WORKER,))
    await say(db, "!sensitive on", sender=WORKER)
    async with db.read() as tx:
        involvement = await tx.involvements.get(family.id, WORKER)
    assert involvement is not None
    assert involvement.sensitive
    await say(db, "!sensitive off", sender=WORKER)
    assert [entry.detail for entry in await audits(db, "sensitive")] == [
        {"sensitive": True},
        {"sensitive": False},
    ]
    wrong = await say(db, "!sensitive maybe", sender=WORKER)
    assert "!sensitive on" in wrong.body or "`on`" in wrong.body


async def test_attention_notifies_every_member_and_hides_sensitive_ones(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(TEACHER, NURSE, WORKER))
    async with db.transaction() as tx:
        await tx.involvements.set_sensitive(family.id, WORKER, True)
    before = len(await outbox(db))
    reply = await say(db, "!attention the family moved  today", sender=TEACHER)
    assert reply.notify, "an m.notice would notify nobody"
    assert set(reply.mentions) == {LEAD, NURSE}
    assert "Wes Worker" not in reply.body
    assert WORKER not in reply.formatted_body
    assert reply.body.endswith("Tara Teacher says: the family moved today")
    [private] = (await outbox(db))[before:]
    content = private.payload["content"]
    assert private.room_id == direct_chat_of(WORKER)
    assert content["msgtype"] == "m.text"
    assert content["m.mentions"] == {"user_ids": [WORKER]}
    [row] = await audits(db, "attention")
    assert row.detail == {"notified": 3}, "the audit never holds the alert's text"


async def test_export_files_hold_exactly_the_stored_rows(db: Database, clock: ManualClock) -> None:
    family = await active_family(db, joined=(TEACHER, NURSE))
    await say(db, "!role Class teacher", sender=TEACHER)
    reply = await say(db, "!export", sender=LEAD)
    assert reply.body.startswith(f"I am preparing the record of {REF}")
    items = [item for item in await outbox(db) if item.kind == "export"]
    assert [item.payload for item in items] == [
        {"family_id": family.id, "format": "json"},
        {"family_id": family.id, "format": "text"},
    ], "the queue names what to export, never the data"
    async with db.read() as tx:
        document = await build_attachment(tx, items[0].payload)
        readable = await build_attachment(tx, items[1].payload)
        stored = await family_dossier(tx, family.id)
        involvements = [dict(row) for row in await tx.fetchall(
            "SELECT * FROM involvement WHERE family_id = ? ORDER BY id", (family.id,))]
    assert (document.mimetype, document.filename) == (
        "application/json", f"patchwork-{REF}-2026-03-02.json"
    )
    exported = json.loads(document.data)
    assert exported["involvements"] == involvements
    assert {key: exported[key] for key in stored} == stored
    assert [row["action"] for row in exported["audit"]][-1] == "export"
    text = readable.data.decode()
    assert readable.mimetype == "text/plain"
    assert f"{TEACHER}, role: Class teacher, since 2026-03-02 10:30 UTC, current" in text
    assert "looked up" not in text or "Audit trail" in text
    assert "recorded the lawful basis" not in text  # basis was recorded directly in set-up
    assert "Governance records, oldest first:" in text


async def test_mydata_covers_the_asker_only(db: Database, clock: ManualClock) -> None:
    await active_family(db, joined=(TEACHER, NURSE))
    await run(db, "!contact set phone 020 7946 0555", sender=TEACHER, room_id=DM,
              room_kind=RoomKind.DIRECT)
    reply = await say(db, "!mydata", sender=TEACHER, room_id=DM, room_kind=RoomKind.DIRECT)
    assert reply.body.startswith("I am preparing what Patchwork holds about you")
    [first, _] = [item for item in await outbox(db) if item.kind == "export"]
    assert first.room_id == DM
    async with db.read() as tx:
        exported = json.loads((await build_attachment(tx, first.payload)).data)
    assert exported["practitioner"]["user_id"] == TEACHER
    assert exported["practitioner"]["phone"] is not None
    assert {row["user_id"] for row in exported["involvements"]} == {TEACHER}
    assert exported["involvements"][0]["family_reference"] == REF
    assert exported["audit"], "their own audit rows"
    assert all(
        row["actor"] == TEACHER or TEACHER in json.dumps(row["detail"])
        for row in exported["audit"]
    )


async def test_close_ends_everyone_locks_the_room_and_sets_the_purge_date(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(TEACHER, NURSE))
    before = len(await outbox(db))
    reply = await say(db, "!family close case stepped down", sender=LEAD)
    assert reply.body.startswith(f"The record for {REF} is closed: its lead closed it.")
    async with db.read() as tx:
        closed = await tx.families.get(family.id)
        roster = await tx.involvements.for_family(family.id, active_only=False)
    assert closed is not None
    assert closed.status == "closed"
    assert closed.close_reason == "case stepped down"
    assert closed.purge_after == clock() + POLICY.closed_case_retention
    assert {(row.status, row.end_reason) for row in roster} == {("ended", "case_closed")}
    [state] = [item for item in (await outbox(db))[before:] if item.kind == "state"]
    levels = state.payload["content"]
    assert state.room_id == ROOM
    assert state.payload["event_type"] == "m.room.power_levels"
    assert levels["events_default"] == 100
    assert levels["invite"] == 100
    assert levels["users"] == {}
    again = await say(db, "!family close", sender=LEAD)
    assert "closed" in again.body
    assert "cannot change" in again.body


async def test_consent_withdrawn_closes_only_a_consent_family(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(TEACHER,))
    refused = await say(db, "!family consent withdrawn", sender=LEAD)
    assert "lawful basis is public_task, not consent" in refused.body
    await say(db, "!family basis consent agreed at the meeting", sender=LEAD)
    reply = await say(db, "!family consent withdrawn", sender=LEAD)
    assert "the family withdrew their consent" in reply.body
    async with db.read() as tx:
        closed = await tx.families.get(family.id)
    assert closed is not None
    assert closed.status == "closed"
    assert closed.consent_withdrawn_at == clock()
    assert [entry.action for entry in await audits(db)][-2:] == [
        "family_consent_withdrawn",
        "family_close",
    ]


async def test_purge_leaves_a_minimal_record_and_frees_the_reference(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(TEACHER, NURSE))
    await say(db, "!whois", sender=NURSE)
    await say(db, "!family close", sender=LEAD)
    clock.advance(days=1)
    async with db.transaction() as tx:
        assert await tx.families.due_for_purge(tx.now(), 10) == []
    clock.advance(seconds=POLICY.closed_case_retention.total_seconds())
    async with db.transaction() as tx:
        [due] = await tx.families.due_for_purge(tx.now() + timedelta(0), 10)
        await purge_family(tx, due, policy=POLICY)
    async with db.read() as tx:
        purged = await tx.families.get(family.id)
        assert await tx.audit.verify() is None
        rows = await tx.audit.for_family(family.id)
        left = {
            table: (await tx.fetchone(f"SELECT COUNT(*) FROM {table}"))[0]  # noqa: S608
            for table in ("involvement", "prompt", "governance_record")
        }
        queued = await tx.outbox.for_room(ROOM, ("leave", "message"))
    assert purged is not None
    assert purged.status == "purged"
    assert (purged.reference, purged.room_id, purged.lawful_basis) == (
        f"~purged-{family.id}", None, None
    )
    assert left == {"involvement": 0, "prompt": 0, "governance_record": 0}
    assert all(entry.redacted for entry in rows[:-1])
    assert rows[-1].action == "family_purged"
    text = json.dumps([[entry.actor, entry.detail] for entry in rows])
    for who in (LEAD, TEACHER, NURSE, "case stepped down", REF):
        assert who not in text
    assert [(item.kind, item.payload) for item in queued] == [("leave", {"forget": True})]
    async with db.transaction() as tx:
        again = await tx.families.create(REF, "!new:council.example", LEAD)
    assert again.id != family.id


async def test_cases_is_audited(db: Database, clock: ManualClock) -> None:
    await active_family(db, joined=(TEACHER,))
    await say(db, "!cases", sender=TEACHER, room_id=DM, room_kind=RoomKind.DIRECT)
    [row] = await audits(db, "cases")
    assert (row.actor, row.family_id, row.detail) == (TEACHER, None, {"families": 1})
