"""The keyed audit chain: HMAC links under a key kept outside the database, redaction that
keeps the chain verifiable, and the migration that keys an existing chain."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from bot.auditkey import AuditKeyError, load_audit_key
from storage import Database
from storage.audit import PSEUDONYM_PREFIX, content_hash, link_hash
from storage.schema import SCHEMA_V1

KEY = bytes(range(32))
OTHER_KEY = bytes(32)


async def chain(path: Path, key: bytes | None, rows: int = 4) -> None:
    async with await Database.open(path, audit_key=key) as db, db.transaction() as tx:
        family = await tx.families.create("LDC-2026-0042", "!room:x", "@lead:x")
        for index in range(rows):
            await tx.audit.append(f"@user{index}:x", "whois", family_id=family.id,
                                  detail={"index": index, "user": "@sam:x"})


async def verify(path: Path, key: bytes | None) -> int | None:
    async with await Database.open(path, audit_key=key) as db, db.read() as tx:
        return await tx.audit.verify()


async def test_the_chain_verifies_only_under_its_own_key(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    await chain(path, KEY)
    assert await verify(path, KEY) is None
    assert await verify(path, OTHER_KEY) == 1
    assert await verify(path, None) == 1


async def test_a_row_rewritten_without_the_key_is_detected_at_that_row(tmp_path: Path) -> None:
    """Someone who can write the file but lacks the key recomputes the hashes as best they can:
    the plain SHA-256 link they can compute is not the HMAC."""
    path = tmp_path / "db.sqlite3"
    await chain(path, KEY)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER audit_redact_only")
        row = conn.execute("SELECT at, family_id, prev_hash FROM audit WHERE id = 2").fetchone()
        digest = content_hash(row[0], "@mallory:x", row[1], "whois", {"index": 1})
        forged = link_hash(None, row[2], digest)
        conn.execute(
            "UPDATE audit SET actor = '@mallory:x', detail = '{\"index\":1}', content_hash = ?,"
            " hash = ? WHERE id = 2",
            (digest, forged),
        )
    assert await verify(path, KEY) == 2


async def test_redaction_keeps_the_chain_and_nothing_else_may_change(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    await chain(path, KEY)
    async with await Database.open(path, audit_key=KEY) as db:
        async with db.transaction() as tx:
            assert await tx.audit.redact_family(1) == 4
            await tx.audit.append("@lead:x", "whois", family_id=1)
        async with db.read() as tx:
            assert await tx.audit.verify() is None
            rows = await tx.audit.for_family(1)
        assert all(entry.redacted and entry.detail == {} for entry in rows[:4])
        assert all(entry.actor.startswith(PSEUDONYM_PREFIX) for entry in rows[:4])
        assert rows[0].actor != rows[1].actor, "different people stay told apart"
        assert not rows[4].redacted
        for statement in (
            "UPDATE audit SET hash = 'x' WHERE id = 1",
            "UPDATE audit SET action = 'other', redacted_at = at WHERE id = 1",
            "UPDATE audit SET actor = 'x' WHERE id = 5",
            "DELETE FROM audit WHERE id = 1",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                async with db.transaction() as tx:
                    await tx.execute(statement)


async def test_a_user_is_replaced_by_the_same_pseudonym_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    await chain(path, KEY, rows=2)
    async with await Database.open(path, audit_key=KEY) as db:
        async with db.transaction() as tx:
            await tx.audit.append("@sam:x", "contact_update", detail={"field": "phone"})
            assert await tx.audit.redact_user("@sam:x") == 3
            alias = tx.audit.pseudonym("@sam:x")
        async with db.read() as tx:
            assert await tx.audit.verify() is None
            assert await tx.audit.about_user("@sam:x") == []
            named = await tx.audit.about_user(alias)
    assert [entry.action for entry in named] == ["whois", "whois", "contact_update"]
    assert named[0].detail == {"index": 0, "user": alias}
    assert named[2].actor == alias


async def test_upgrading_keys_the_existing_chain_and_records_what_it_found(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA_V1:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        prev = "0" * 64
        for index in range(3):
            at = f"2026-01-0{index + 1}T09:00:00.000000+00:00"
            content = json.dumps(
                {"action": "whois", "actor": "@a:x", "at": at, "detail": {}, "family_id": None},
                sort_keys=True, separators=(",", ":"),
            )
            digest = hashlib.sha256((prev + content).encode()).hexdigest()
            if index == 2:
                digest = "f" * 64  # the old chain was already broken at its third row
            conn.execute(
                "INSERT INTO audit (at, actor, action, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
                (at, "@a:x", "whois", prev, digest),
            )
            prev = digest
    async with await Database.open(path, audit_key=KEY) as db, db.read() as tx:
        assert await tx.audit.verify() is None
        head = await tx.audit.head()
    assert head is not None
    assert (head.id, head.action, head.detail) == (
        4, "audit_rekeyed", {"rows": 3, "earlier_break": 3}
    )


def test_the_key_is_created_once_private_and_refused_when_damaged(tmp_path: Path) -> None:
    assert load_audit_key(tmp_path, create=False) is None
    key = load_audit_key(tmp_path, create=True)
    assert key is not None
    assert len(key) == 32
    assert load_audit_key(tmp_path, create=True) == key
    assert (tmp_path / "audit_hmac.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "audit_hmac.key").write_text("not hex\n")
    with pytest.raises(AuditKeyError, match="restore it from your backup"):
        load_audit_key(tmp_path, create=False)
