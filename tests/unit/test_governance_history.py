"""Governance records keep their history: each `!family basis`, `informed` and `unsafe` adds
a row to an append-only table, while the family's own columns hold the current value."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.clock import ManualClock
from storage import LATEST_VERSION, MIGRATIONS, Database
from storage.migrations import run_migrations
from storage.schema import SCHEMA_V1
from tests.unit.test_team_commands_support import (
    ADMIN,
    LEAD,
    START,
    member,
    pending_family,
    say,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)

OLD = "2026-01-01T09:00:00.000000+00:00"
OLD_INFORMED = "2026-01-03T09:00:00.000000+00:00"


async def test_recording_twice_keeps_both_records_with_their_notes(
    db: Database, clock: ManualClock
) -> None:
    family = await pending_family(db)
    async with db.transaction() as tx:
        await tx.families.record_basis(family.id, "public_task", LEAD, "s.17 CA 1989")
        clock.advance(days=2)
        current = await tx.families.record_basis(family.id, "consent", ADMIN, "parents agreed")
        history = await tx.families.history(family.id)
    assert (current.lawful_basis, current.basis_note) == ("consent", "parents agreed")
    assert [(r.kind, r.value, r.note, r.recorded_by, r.recorded_at) for r in history] == [
        ("basis", "public_task", "s.17 CA 1989", LEAD, START),
        ("basis", "consent", "parents agreed", ADMIN, START.replace(day=4)),
    ]


async def test_informed_and_unsafe_are_appended_in_order(db: Database, clock: ManualClock) -> None:
    family = await pending_family(db)
    async with db.transaction() as tx:
        await tx.families.record_informed(family.id, note="leaflet given", recorded_by=LEAD)
        clock.advance(hours=1)
        await tx.families.record_informed(
            family.id, not_informed_reason="a parent would be at risk", recorded_by=LEAD
        )
        clock.advance(hours=1)
        current = await tx.families.record_informed(family.id, note=None, recorded_by=ADMIN)
        history = await tx.families.history(family.id)
    assert current.not_informed_reason is None
    assert [(r.kind, r.value, r.note, r.recorded_by) for r in history] == [
        ("informed", None, "leaflet given", LEAD),
        ("unsafe", None, "a parent would be at risk", LEAD),
        ("informed", None, None, ADMIN),
    ]
    assert [r.recorded_at.hour for r in history] == [10, 11, 12]


async def test_history_is_per_family_and_empty_at_first(db: Database) -> None:
    family = await pending_family(db)
    async with db.transaction() as tx:
        other = await tx.families.create("LDC-2026-0099", None, LEAD)
        await tx.families.record_basis(other.id, "consent", LEAD, None)
        assert await tx.families.history(family.id) == []
        assert [r.family_id for r in await tx.families.history(other.id)] == [other.id]


async def test_the_commands_record_who_did_it(db: Database) -> None:
    family = await pending_family(db)
    await member(db, LEAD, "join")
    await say(db, "!family basis public_task first note", sender=LEAD)
    await say(db, "!family unsafe telling them could put a parent at risk", sender=LEAD)
    await say(db, "!family basis legal_obligation second note", sender=LEAD)
    await say(db, "!family informed leaflet at the second visit", sender=LEAD)
    async with db.read() as tx:
        history = await tx.families.history(family.id)
    assert [(r.kind, r.value, r.note, r.recorded_by) for r in history] == [
        ("basis", "public_task", "first note", LEAD),
        ("unsafe", None, "telling them could put a parent at risk", LEAD),
        ("basis", "legal_obligation", "second note", LEAD),
        ("informed", None, "leaflet at the second visit", LEAD),
    ]


async def test_governance_records_cannot_be_changed_through_sql(db: Database) -> None:
    family = await pending_family(db)
    async with db.transaction() as tx:
        await tx.families.record_basis(family.id, "consent", LEAD, "note")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        async with db.transaction() as tx:
            await tx.execute("UPDATE governance_record SET note = 'changed'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        async with db.transaction() as tx:
            await tx.execute("DELETE FROM governance_record")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO governance_record (family_id, kind, value, recorded_at)"
                " VALUES (?, 'basis', 'because', '2026-01-01T00:00:00.000000+00:00')",
                (family.id,),
            )


async def test_earlier_records_are_carried_into_the_history(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    # A database as an earlier release left it, with one family's records in its columns.
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA_V1:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO family (id, reference, created_by, created_at, updated_at, lawful_basis,"
            " basis_recorded_by, basis_recorded_at, basis_note, family_informed_at, informed_note)"
            " VALUES (1, 'LDC-2026-0001', ?, ?, ?, 'consent', ?, ?, 'agreed', ?, 'leaflet')",
            (LEAD, OLD, OLD, LEAD, "2026-01-02T09:00:00.000000+00:00", OLD_INFORMED),
        )
        conn.execute(
            "INSERT INTO family (id, reference, created_by, created_at, updated_at,"
            " not_informed_reason) VALUES (2, 'LDC-2026-0002', ?, ?, ?, 'risk')",
            (LEAD, OLD, OLD_INFORMED),
        )
        conn.execute(
            "INSERT INTO family (id, reference, created_by, created_at, updated_at)"
            " VALUES (3, 'LDC-2026-0003', ?, ?, ?)",
            (LEAD, OLD, OLD),
        )
    upgraded = await Database.open(path)
    try:
        assert upgraded.schema_version == LATEST_VERSION == len(MIGRATIONS)
        assert await run_migrations(upgraded) == LATEST_VERSION
        async with upgraded.read() as tx:
            histories = [await tx.families.history(family_id) for family_id in (1, 2, 3)]
    finally:
        await upgraded.close()
    assert [[(r.kind, r.value, r.note, r.recorded_by) for r in h] for h in histories] == [
        [("basis", "consent", "agreed", LEAD), ("informed", None, "leaflet", None)],
        [("unsafe", None, "risk", None)],
        [],
    ]
    assert histories[1][0].recorded_at.isoformat().startswith("2026-01-03")
