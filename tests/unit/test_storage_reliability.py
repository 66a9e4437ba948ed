"""Sync state, outbox and audit trail: the tables exactly-once handling and tamper evidence
rest on."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import storage.audit
from bench.dbtime import DatabaseTime
from bot.clock import ManualClock
from storage import GENESIS_HASH, Database, NotFoundError
from storage.audit import content_hash, link_hash

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
ROOM_A = "!alpha:example.org"
ROOM_B = "!bravo:example.org"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "patchwork.sqlite3"


@pytest.fixture
async def db(db_path: Path, clock: ManualClock) -> AsyncIterator[Database]:
    database = await Database.open(db_path, clock=clock)
    yield database
    await database.close()


# --- sync state -------------------------------------------------------------------------------


async def test_next_batch_round_trips_and_survives_reopen(db: Database, db_path: Path) -> None:
    async with db.transaction() as tx:
        assert await tx.sync.get_next_batch() is None
        await tx.sync.set_next_batch("s1")
        await tx.sync.set_next_batch("s2")
        assert await tx.sync.get_next_batch() == "s2"
    await db.close()

    reopened = await Database.open(db_path)
    try:
        async with reopened.read() as tx:
            assert await tx.sync.get_next_batch() == "s2"
    finally:
        await reopened.close()


async def test_inbox_marks_each_event_once(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as tx:
        assert not await tx.sync.is_processed("$e1")
        assert await tx.sync.mark_processed("$e1", ROOM_A) is True
    clock.advance(minutes=5)
    async with db.transaction() as tx:
        assert await tx.sync.mark_processed("$e1", ROOM_A) is False
        assert await tx.sync.is_processed("$e1")
        assert not await tx.sync.is_processed("$e2")
        rows = await tx.fetchall("SELECT processed_at FROM inbox")
    assert [row["processed_at"] for row in rows] == ["2026-11-26T09:00:00.000000+00:00"]


async def test_room_flags_are_set_once_per_room(db: Database) -> None:
    async with db.transaction() as tx:
        assert not await tx.sync.has_flag(ROOM_A, "unencrypted_warning")
        assert await tx.sync.set_flag(ROOM_A, "unencrypted_warning") is True
        assert await tx.sync.set_flag(ROOM_A, "unencrypted_warning") is False
        assert await tx.sync.has_flag(ROOM_A, "unencrypted_warning")
        assert not await tx.sync.has_flag(ROOM_B, "unencrypted_warning")
        assert not await tx.sync.has_flag(ROOM_A, "other_flag")


async def test_undecrypted_events_lifecycle(db: Database, clock: ManualClock) -> None:
    event = {"type": "m.room.encrypted", "content": {"session_id": "S1", "body": "é"}}
    async with db.transaction() as tx:
        assert await tx.sync.add_undecrypted("$z-late", ROOM_A, "@bob:x", "S1", event) is True
    clock.advance(seconds=1)
    async with db.transaction() as tx:
        assert await tx.sync.add_undecrypted("$a-second", ROOM_B, "@eve:x", "S2", {}) is True
    clock.advance(seconds=1)
    async with db.transaction() as tx:
        assert await tx.sync.add_undecrypted("$m-third", ROOM_A, "@bob:x", "S1", {}) is True
        assert await tx.sync.add_undecrypted("$z-late", ROOM_A, "@bob:x", "S1", {}) is False

        waiting = await tx.sync.undecrypted()
        assert [item.event_id for item in waiting] == ["$z-late", "$a-second", "$m-third"]
        assert waiting[0].event_json == event
        assert waiting[0].first_seen_at == START
        assert waiting[0].notified_at is None

        session = await tx.sync.undecrypted("S1")
        assert [item.event_id for item in session] == ["$z-late", "$m-third"]

        assert await tx.sync.mark_undecrypted_notified("$z-late") is True
        assert await tx.sync.mark_undecrypted_notified("$z-late") is False
        assert (await tx.sync.undecrypted("S1"))[0].notified_at == clock.current

        assert await tx.sync.remove_undecrypted("$z-late") is True
        assert await tx.sync.remove_undecrypted("$z-late") is False
        assert [item.event_id for item in await tx.sync.undecrypted("S1")] == ["$m-third"]


# --- outbox -----------------------------------------------------------------------------------


async def test_enqueue_is_idempotent_by_txn_id(db: Database) -> None:
    async with db.transaction() as tx:
        assert await tx.outbox.enqueue("t1", ROOM_A, "notice", {"body": "first"}) is True
        assert await tx.outbox.enqueue("t1", ROOM_A, "notice", {"body": "second"}) is False
        assert await tx.outbox.pending_count() == 1
        item = await tx.outbox.get("t1")
    assert item is not None
    assert item.payload == {"body": "first"}
    assert (item.room_id, item.kind, item.attempts) == (ROOM_A, "notice", 0)
    assert item.created_at == START
    assert item.is_pending


async def test_sent_item_is_never_queued_again(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.outbox.enqueue("t1", ROOM_A, "notice", {})
        [item] = await tx.outbox.due()
        await tx.outbox.mark_sent(item.id, "$sent_event")
        assert await tx.outbox.enqueue("t1", ROOM_A, "notice", {}) is False
        assert await tx.outbox.due() == []


async def test_due_returns_items_in_queue_order_up_to_limit(db: Database) -> None:
    async with db.transaction() as tx:
        for txn_id, room in [("c", ROOM_A), ("a", ROOM_B), ("b", ROOM_A)]:
            await tx.outbox.enqueue(txn_id, room, "notice", {"n": txn_id})
        assert [item.txn_id for item in await tx.outbox.due()] == ["c", "a", "b"]
        assert [item.txn_id for item in await tx.outbox.due(limit=2)] == ["c", "a"]


async def test_retry_waits_until_its_time(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as tx:
        await tx.outbox.enqueue("t1", ROOM_A, "notice", {})
        [item] = await tx.outbox.due()
        await tx.outbox.mark_retry(item.id, "429 M_LIMIT_EXCEEDED", START + timedelta(seconds=30))
        retried = await tx.outbox.get("t1")
        assert retried is not None
        assert retried.attempts == 1
        assert retried.last_error == "429 M_LIMIT_EXCEEDED"
        assert retried.next_attempt_at == START + timedelta(seconds=30)
        assert await tx.outbox.due() == []
        assert await tx.outbox.pending_count() == 1

    clock.advance(seconds=29, microseconds=999_999)
    async with db.read() as tx:
        assert await tx.outbox.due() == []
    clock.advance(microseconds=1)
    async with db.transaction() as tx:
        [again] = await tx.outbox.due()
        assert again.id == item.id
        await tx.outbox.mark_retry(again.id, "timeout", clock.current + timedelta(minutes=1))
        after_second = await tx.outbox.get("t1")
    assert after_second is not None
    assert after_second.attempts == 2


async def test_retry_time_in_another_timezone_is_compared_as_utc(
    db: Database, clock: ManualClock
) -> None:
    plus_five = timezone(timedelta(hours=5))
    async with db.transaction() as tx:
        await tx.outbox.enqueue("t1", ROOM_A, "notice", {})
        [item] = await tx.outbox.due()
        # 15:00 at +05:00 is 10:00 UTC: one hour after START, though its text sorts later.
        await tx.outbox.mark_retry(item.id, "busy", datetime(2026, 11, 26, 15, 0, tzinfo=plus_five))
    clock.advance(minutes=30)
    async with db.read() as tx:
        assert await tx.outbox.due() == []
    clock.advance(minutes=30)
    async with db.read() as tx:
        assert [i.txn_id for i in await tx.outbox.due()] == ["t1"]


async def test_backing_off_item_holds_back_later_items_in_its_room_only(
    db: Database, clock: ManualClock
) -> None:
    async with db.transaction() as tx:
        await tx.outbox.enqueue("a1", ROOM_A, "message", {})
        await tx.outbox.enqueue("a2", ROOM_A, "kick", {})
        await tx.outbox.enqueue("b1", ROOM_B, "message", {})
        first = await tx.outbox.get("a1")
        assert first is not None
        await tx.outbox.mark_retry(first.id, "429", START + timedelta(seconds=10))
        assert [item.txn_id for item in await tx.outbox.due()] == ["b1"]
    clock.advance(seconds=10)
    async with db.read() as tx:
        assert [item.txn_id for item in await tx.outbox.due()] == ["a1", "a2", "b1"]


async def test_an_invite_backing_off_holds_back_nothing(db: Database, clock: ManualClock) -> None:
    """An invite to a server that does not answer must not hold the room's replies hostage."""
    async with db.transaction() as tx:
        await tx.outbox.enqueue("a1", ROOM_A, "invite", {"user_id": "@far:away.example"})
        await tx.outbox.enqueue("a2", ROOM_A, "message", {})
        first = await tx.outbox.get("a1")
        assert first is not None
        await tx.outbox.mark_retry(first.id, "502 M_UNKNOWN", START + timedelta(minutes=5))
        assert [item.txn_id for item in await tx.outbox.due()] == ["a2"]


async def test_mark_sent_records_result_and_time(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as tx:
        await tx.outbox.enqueue("t1", ROOM_A, "notice", {})
        await tx.outbox.enqueue("t2", ROOM_A, "notice", {})
        [first, _] = await tx.outbox.due()
    clock.advance(seconds=3)
    async with db.transaction() as tx:
        await tx.outbox.mark_sent(first.id, "$event_id")
        sent = await tx.outbox.get("t1")
        assert [item.txn_id for item in await tx.outbox.due()] == ["t2"]
        assert await tx.outbox.pending_count() == 1
    assert sent is not None
    assert sent.sent_at == START + timedelta(seconds=3)
    assert sent.result == "$event_id"
    assert not sent.is_pending


async def test_mark_failed_takes_item_out_for_good(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as tx:
        await tx.outbox.enqueue("t1", ROOM_A, "invite", {"user_id": "@x:evil.example"})
        [item] = await tx.outbox.due()
        await tx.outbox.mark_failed(item.id, "403 M_FORBIDDEN")
        failed = await tx.outbox.get("t1")
        assert await tx.outbox.pending_count() == 0
        assert await tx.outbox.next_attempt_time() is None
    clock.advance(days=1)
    async with db.read() as tx:
        assert await tx.outbox.due() == []
    assert failed is not None
    assert failed.failed_at == START
    assert failed.attempts == 1
    assert failed.last_error == "403 M_FORBIDDEN"


async def test_next_attempt_time_is_the_earliest_pending_due_time(
    db: Database, clock: ManualClock
) -> None:
    async with db.transaction() as tx:
        assert await tx.outbox.next_attempt_time() is None
        await tx.outbox.enqueue("t1", ROOM_A, "notice", {})
        await tx.outbox.enqueue("t2", ROOM_B, "notice", {})
        # A fresh item is due from the moment it was queued.
        assert await tx.outbox.next_attempt_time() == START
        one, two = await tx.outbox.due()
        await tx.outbox.mark_retry(one.id, "e", START + timedelta(seconds=40))
        await tx.outbox.mark_retry(two.id, "e", START + timedelta(seconds=20))
        assert await tx.outbox.next_attempt_time() == START + timedelta(seconds=20)
        await tx.outbox.mark_sent(two.id, None)
        assert await tx.outbox.next_attempt_time() == START + timedelta(seconds=40)


async def test_payload_json_round_trips_and_is_stored_compact(db: Database) -> None:
    payload = {"msgtype": "m.notice", "body": "Zoë’s team", "m.mentions": {"user_ids": ["@a:x"]}}
    async with db.transaction() as tx:
        await tx.outbox.enqueue("t1", ROOM_A, "message", payload)
        item = await tx.outbox.get("t1")
        row = await tx.fetchone("SELECT payload FROM outbox WHERE txn_id = 't1'")
    assert item is not None
    assert item.payload == payload
    assert row is not None
    assert " " not in row["payload"].replace("Zoë’s team", "")


async def _send_recorded_for_no_item(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.practitioners.ensure("@kept:x")
        tx.outbox.mark_sent_later(404, None)


async def test_a_send_recorded_later_goes_with_the_commit_or_fails_it(db: Database) -> None:
    async with db.transaction() as tx:
        item_id = await tx.outbox.enqueue_message("t-later", ROOM_A, {"body": "card"})
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            tx.outbox.mark_sent_later(item_id, "$sent")
    assert meter.calls == 1, "BEGIN, the update and COMMIT in one trip"
    async with db.read() as tx:
        sent = await tx.outbox.get("t-later")
    assert sent is not None
    assert (sent.result, "content" in sent.payload) == ("$sent", False)

    with pytest.raises(NotFoundError):
        await _send_recorded_for_no_item(db)
    async with db.read() as tx:
        assert await tx.practitioners.get("@kept:x") is None, "the transaction committed"


async def test_outbox_updates_on_unknown_items_fail_loudly(db: Database) -> None:
    async with db.transaction() as tx:
        with pytest.raises(NotFoundError):
            await tx.outbox.mark_sent(404, None)
        with pytest.raises(NotFoundError):
            await tx.outbox.mark_retry(404, "e", START)
        with pytest.raises(NotFoundError):
            await tx.outbox.mark_failed(404, "e")
        assert await tx.outbox.get("missing") is None


# --- audit ------------------------------------------------------------------------------------


def expected_hash(
    prev: str, at: str, actor: str, family_id: int | None, action: str, detail: dict[str, object]
) -> str:
    content = json.dumps(
        {"at": at, "actor": actor, "family_id": family_id, "action": action, "detail": detail},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    digest = hashlib.sha256(content.encode()).hexdigest()
    # No audit key in these tests: the link is plain SHA-256 (test_audit_chain covers the HMAC).
    return hashlib.sha256((prev + digest).encode()).hexdigest()


async def make_family(db: Database, reference: str = "LDC-2026-0042") -> int:
    async with db.transaction() as tx:
        family = await tx.families.create(reference, f"!{reference}:example.org", "@lead:x")
    return family.id


async def test_audit_rows_form_a_hash_chain(db: Database, clock: ManualClock) -> None:
    family_id = await make_family(db)
    async with db.transaction() as tx:
        first = await tx.audit.append("@alice:x", "whois", family_id=family_id)
        clock.advance(seconds=1)
        second = await tx.audit.append(
            "@bob:x", "contact_update", detail={"field": "phone", "z": 1, "a": [1, 2]}
        )

    assert first.prev_hash == GENESIS_HASH == "0" * 64
    assert first.detail == {}
    assert first.family_id == family_id
    assert first.hash == expected_hash(
        GENESIS_HASH, "2026-11-26T09:00:00.000000+00:00", "@alice:x", family_id, "whois", {}
    )
    assert second.prev_hash == first.hash
    assert second.at == START + timedelta(seconds=1)
    assert second.hash == expected_hash(
        first.hash,
        "2026-11-26T09:00:01.000000+00:00",
        "@bob:x",
        None,
        "contact_update",
        {"a": [1, 2], "field": "phone", "z": 1},
    )
    async with db.read() as tx:
        assert await tx.audit.verify() is None


async def test_audit_rows_cannot_be_changed_through_sql(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.audit.append("@alice:x", "whois")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        async with db.transaction() as tx:
            await tx.execute("UPDATE audit SET actor = '@mallory:x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        async with db.transaction() as tx:
            await tx.execute("DELETE FROM audit")


async def _chain_of(db: Database, length: int) -> None:
    async with db.transaction() as tx:
        for index in range(length):
            await tx.audit.append(f"@user{index}:x", "whois", detail={"index": index})


async def _drop_guards(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute("DROP TRIGGER audit_redact_only")
        await tx.execute("DROP TRIGGER audit_no_delete")


async def test_edited_audit_row_is_detected(db: Database) -> None:
    await _chain_of(db, 4)
    await _drop_guards(db)
    async with db.transaction() as tx:
        await tx.execute("UPDATE audit SET detail = '{\"index\":99}' WHERE id = 3")
        assert await tx.audit.verify() == 3


async def test_rehashed_audit_row_is_detected_by_its_successor(db: Database) -> None:
    await _chain_of(db, 4)
    await _drop_guards(db)
    async with db.transaction() as tx:
        row = await tx.fetchone("SELECT * FROM audit WHERE id = 2")
        assert row is not None
        digest = content_hash(row["at"], "@mallory:x", None, "whois", {"index": 1})
        forged = link_hash(None, row["prev_hash"], digest)
        await tx.execute(
            "UPDATE audit SET actor = '@mallory:x', hash = ?, content_hash = ? WHERE id = 2",
            (forged, digest),
        )
        assert await tx.audit.verify() == 3


async def test_deleted_audit_row_is_detected(db: Database) -> None:
    await _chain_of(db, 4)
    await _drop_guards(db)
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM audit WHERE id = 2")
        assert await tx.audit.verify() == 3


async def test_verify_walks_the_chain_in_batches(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.audit, "_VERIFY_BATCH", 3)
    await _chain_of(db, 10)
    async with db.read() as tx:
        assert await tx.audit.verify() is None
    await _drop_guards(db)
    async with db.transaction() as tx:
        await tx.execute("UPDATE audit SET action = 'export' WHERE id = 8")
        assert await tx.audit.verify() == 8


async def test_audit_recent_and_count(db: Database) -> None:
    ours = await make_family(db, "LDC-2026-0001")
    theirs = await make_family(db, "LDC-2026-0002")
    async with db.transaction() as tx:
        await tx.audit.append("@a:x", "whois", family_id=ours)
        await tx.audit.append("@b:x", "invite", family_id=theirs)
        await tx.audit.append("@c:x", "whois", family_id=ours)
        await tx.audit.append("@d:x", "export", family_id=ours)
        await tx.audit.append("@e:x", "contact_update")

        assert [e.actor for e in await tx.audit.recent(ours, 10)] == ["@d:x", "@c:x", "@a:x"]
        assert [e.actor for e in await tx.audit.recent(ours, 2)] == ["@d:x", "@c:x"]
        assert [e.actor for e in await tx.audit.recent(None, 2)] == ["@e:x", "@d:x"]
        assert await tx.audit.count() == 5
        assert await tx.audit.count("whois") == 2
        assert await tx.audit.count("purge") == 0


async def test_replies_go_before_queued_background_work(db: Database) -> None:
    from storage import BACKGROUND

    async with db.transaction() as tx:
        for index in range(3):
            await tx.outbox.enqueue(f"prompt-{index}", "!a:x", "message", {}, priority=BACKGROUND)
        await tx.outbox.enqueue("reply", "!b:x", "message", {})
        order = [item.txn_id for item in await tx.outbox.due(10)]
    assert order == ["reply", "prompt-0", "prompt-1", "prompt-2"]


async def test_version_one_outbox_rows_survive_the_priority_migration(tmp_path: Path) -> None:
    from storage import LATEST_VERSION
    from storage.schema import SCHEMA_V1

    path = tmp_path / "old.db"
    # A database as the first release left it: the version 1 schema and a pending item.
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA_V1:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO outbox (txn_id, room_id, kind, payload, created_at)"
            " VALUES ('old', '!a:x', 'message', '{}', '2026-01-01T00:00:00.000000+00:00')"
        )
    upgraded = await Database.open(path)
    try:
        assert upgraded.schema_version == LATEST_VERSION
        async with upgraded.transaction() as tx:
            await tx.outbox.enqueue("new", "!b:x", "message", {})
            assert [item.txn_id for item in await tx.outbox.due(10)] == ["old", "new"]
    finally:
        await upgraded.close()


async def test_items_waiting_behind_a_held_one_do_not_make_the_outbox_look_due(
    db: Database,
) -> None:
    """Messages queued behind one held for someone's join cannot go before it: the next time
    anything is due is the held one's, not the moment they were queued."""
    held_until = START + timedelta(hours=1)
    async with db.transaction() as tx:
        for n in range(3):
            await tx.outbox.enqueue_message(f"dm-{n}", ROOM_A, {"body": f"welcome {n}"})
        first, *_ = await tx.outbox.due()
        await tx.outbox.mark_retry(first.id, "held for a join", held_until, counted=False)
        assert await tx.outbox.due() == []
        assert await tx.outbox.next_attempt_time() == held_until
        await tx.outbox.enqueue_message("other", ROOM_B, {"body": "a reply"})
        assert await tx.outbox.next_attempt_time() == START, "another room's item is due now"


async def test_messages_queued_behind_a_held_one_wait_with_it(db: Database) -> None:
    """Queued before the hold or after it, a message behind a held one takes its time, and its
    next one, and goes with it when it is let go; another room's messages do not, nor do the
    items that stand alone."""
    held_until = START + timedelta(hours=1)
    async with db.transaction() as tx:
        for txn_id in ("sent", "head", "before"):
            await tx.outbox.enqueue_message(txn_id, ROOM_A, {"body": txn_id})
        sent, head, _ = await tx.outbox.due()
        await tx.outbox.mark_sent(sent.id, "$sent")
        await tx.outbox.mark_retry(head.id, "held for a join", held_until, counted=False)
        await tx.outbox.enqueue_message("after", ROOM_A, {"body": "after"})
        await tx.outbox.enqueue_many(
            [("swept", ROOM_A, "message", {}), ("elsewhere", ROOM_B, "message", {})], priority=0
        )
        await tx.outbox.enqueue("invite", ROOM_A, "invite", {"user_id": "@x:example.org"})

        async def times() -> dict[str, datetime | None]:
            return {
                txn_id: item.next_attempt_at
                for txn_id in ("before", "after", "swept", "elsewhere", "invite")
                if (item := await tx.outbox.get(txn_id)) is not None
            }

        assert await times() == {
            "before": held_until, "after": held_until, "swept": held_until,
            "elsewhere": None, "invite": None,
        }
        assert [item.txn_id for item in await tx.outbox.due()] == ["elsewhere", "invite"]
        await tx.outbox.mark_retry(head.id, "held for a join", held_until + timedelta(hours=1))
        assert set((await times()).values()) == {held_until + timedelta(hours=1), None}
        await tx.outbox.mark_retry(head.id, "released by a join", START, counted=False)
        assert [item.txn_id for item in await tx.outbox.due()] == [
            "head", "before", "after", "swept", "elsewhere", "invite"
        ]


async def test_the_senders_pass_does_not_walk_the_messages_waiting_behind_held_ones(
    db: Database,
) -> None:
    """A pass (what is due, and when next) costs the same with 20 or 2,000 welcomes queued
    behind ones held for their recipients' joins: at 1,000 rooms there were 15,000, and each
    pass walked them all, about 50 ms on the database thread, before every reply."""
    from tests.unit.test_database_trips import sqlite_steps

    async def pass_steps(behind: int) -> int:
        async with db.transaction() as tx:
            for n in range(behind):
                await tx.outbox.enqueue_message(f"w{behind}-{n}", f"!dm{n % 10}:x", {"body": "hi"})
        async with sqlite_steps(db) as steps, db.read(snapshot=False) as tx:
            assert await tx.outbox.due() == []
            assert await tx.outbox.next_attempt_time() == START + timedelta(hours=1)
        return steps[0]

    async with db.transaction() as tx:
        for n in range(10):
            await tx.outbox.enqueue_message(f"head-{n}", f"!dm{n}:x", {"body": "welcome"})
        for item in await tx.outbox.due():
            await tx.outbox.mark_retry(item.id, "held", START + timedelta(hours=1), counted=False)
    few = await pass_steps(20)
    many = await pass_steps(1980)
    assert many <= few + 5, f"{few * 100} SQLite steps with 20 waiting, {many * 100} with 2,000"


async def test_an_upgrade_gives_the_messages_behind_a_held_one_its_time(db_path: Path) -> None:
    from storage.schema import SCHEMA_V1

    held_until = "2026-11-26T10:00:00.000000+00:00"
    with sqlite3.connect(db_path) as conn:  # as the first release left it
        for statement in SCHEMA_V1:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        rows = [("head", ROOM_A, held_until), ("behind", ROOM_A, None), ("other", ROOM_B, None)]
        for txn_id, room_id, next_attempt_at in rows:
            conn.execute(
                "INSERT INTO outbox (txn_id, room_id, kind, payload, created_at, next_attempt_at)"
                " VALUES (?, ?, 'message', '{}', '2026-11-26T09:00:00.000000+00:00', ?)",
                (txn_id, room_id, next_attempt_at),
            )
    upgraded = await Database.open(db_path)
    try:
        async with upgraded.read() as tx:
            behind, other = await tx.outbox.get("behind"), await tx.outbox.get("other")
        assert behind is not None
        assert other is not None
        assert behind.next_attempt_at == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
        assert other.next_attempt_at is None
    finally:
        await upgraded.close()
