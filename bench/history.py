"""A council's database, written with plain SQL: what a year of the bot's work leaves behind.

`seed_families` writes families, practitioners and involvements (offline benches; the
Synapse-backed ones create theirs through Patchwork's own commands). `seed_history` adds, for
the involvements already there, a year of what the bot would have written: answered prompts
every eight weeks, a `!whois` a week per family, their audit rows (a correctly keyed chain,
so `tx.audit.verify()` passes), the outbox items they caused (sent, content cleared) and the
inbox rows of the events it processed, its own echoes included. Nothing here is measured.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage.audit import GENESIS_HASH, content_hash, link_hash
from storage.codec import canonical_json, encode_time
from storage.outbox import transaction_id

PROMPT_EVERY = timedelta(weeks=8)
WHOIS_EVERY = timedelta(weeks=1)


@dataclass(frozen=True)
class History:
    audit: int
    outbox: int
    inbox: int
    prompts: int


def seed_families(
    path: Path, families: int, members: int, now: datetime, *, server: str, bot: str
) -> None:
    """`families` open families of `members` joined practitioners each (the first is lead);
    room ids are `!family<n>:<server>`. The schema must exist already (open the Database)."""
    stamp = encode_time(now)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO family (id, reference, room_id, status, lawful_basis,"
            " basis_recorded_by, basis_recorded_at, family_informed_at, created_by, created_at,"
            " updated_at) VALUES (?, ?, ?, 'active', 'public_task', ?, ?, ?, ?, ?, ?)",
            [
                (n, f"LDC-2026-{n:05d}", f"!family{n}:{server}", bot, stamp, stamp, bot, stamp,
                 stamp)
                for n in range(1, families + 1)
            ],
        )
        people = [(n, m, f"@p{n}-{m}:{server}") for n in range(1, families + 1)
                  for m in range(members)]
        conn.executemany(
            "INSERT INTO practitioner (user_id, display_name, phone, phone_shown, share_contact,"
            " created_at, updated_at) VALUES (?, ?, '+441632960000', '01632 960000', 1, ?, ?)",
            [(user, f"Practitioner {n}-{m}", stamp, stamp) for n, m, user in people],
        )
        conn.executemany(
            "INSERT INTO involvement (family_id, user_id, membership, status, role, is_lead,"
            " started_at, next_prompt_at, updated_at) VALUES (?, ?, 'join', 'active',"
            " 'Social worker', ?, ?, ?, ?)",
            [(n, user, int(m == 0), stamp, encode_time(now + PROMPT_EVERY), stamp)
             for n, m, user in people],
        )


def seed_history(path: Path, days: int, now: datetime, *, audit_key: bytes | None,
                 bot: str) -> History:
    """A year (`days`) of prompts, look-ups and their traces for every active involvement."""
    start = now - timedelta(days=days)
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        involvements = conn.execute(
            "SELECT involvement.id, involvement.family_id, involvement.user_id, family.room_id"
            " FROM involvement JOIN family ON family.id = involvement.family_id"
            " WHERE involvement.status = 'active' AND family.room_id IS NOT NULL"
        ).fetchall()
        last = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        writer = _Writer(conn, audit_key, GENESIS_HASH if last is None else str(last[0]), bot)
        events: list[tuple[datetime, str, tuple[object, ...]]] = []
        for row in involvements:
            due = start + PROMPT_EVERY * ((row["id"] % 8) / 8 + 1)
            while due < now - timedelta(days=1):
                events.append((due, "prompt", tuple(row)))
                due += PROMPT_EVERY
        families = {row["family_id"]: row for row in involvements}
        for family_id, row in families.items():
            when = start + WHOIS_EVERY * ((family_id % 7) / 7)
            while when < now:
                events.append((when, "whois", tuple(row)))
                when += WHOIS_EVERY
        events.sort(key=lambda event: event[0])
        for when, kind, values in events:
            writer.event(when, kind, values)
        writer.flush()
        return History(writer.audit_rows, writer.outbox_rows, writer.inbox_rows,
                       writer.prompt_rows)


class _Writer:
    """Buffers rows and writes them with executemany, chaining the audit rows in order."""

    def __init__(self, conn: sqlite3.Connection, key: bytes | None, head: str, bot: str) -> None:
        self._conn = conn
        self._key = key
        self._head = head
        self._bot = bot
        self._audit: list[tuple[object, ...]] = []
        self._outbox: list[tuple[object, ...]] = []
        self._inbox: list[tuple[object, ...]] = []
        self.audit_rows = self.outbox_rows = self.inbox_rows = self.prompt_rows = 0

    def event(self, when: datetime, kind: str, values: tuple[object, ...]) -> None:
        involvement_id, family_id, user_id, room_id = values
        stamp = encode_time(when)
        later = encode_time(when + timedelta(seconds=1))
        if kind == "prompt":
            cursor = self._conn.execute(
                "INSERT INTO prompt (involvement_id, due_at, sent_at, event_id, answered_at,"
                " answer) VALUES (?, ?, ?, ?, ?, 'yes')",
                (involvement_id, stamp, later, f"$prompt{involvement_id}-{stamp}",
                 encode_time(when + timedelta(hours=3))),
            )
            self.prompt_rows += 1
            prompt_id = cursor.lastrowid
            self._append(stamp, self._bot, family_id, "prompt",
                         {"user": user_id, "prompt_id": prompt_id, "due_at": stamp})
            self._append(stamp, str(user_id), family_id, "prompt_answer",
                         {"prompt_id": prompt_id, "answer": "yes"})
        else:
            self._append(stamp, str(user_id), family_id, "whois",
                         {"query": None, "shown": [user_id], "shown_privately": []})
        cause = f"${kind}{involvement_id}-{stamp}"
        self._outbox.append((transaction_id(cause, "0"), room_id, stamp, later, f"$echo{cause}"))
        self._inbox.append((cause, room_id, stamp))
        self._inbox.append((f"$echo{cause}", room_id, later))
        if len(self._audit) >= 5000:
            self.flush()

    def _append(self, at: str, actor: str, family_id: object, action: str,
                detail: dict[str, object]) -> None:
        stored = canonical_json(detail)
        digest = content_hash(at, actor, int(str(family_id)), action, detail)
        link = link_hash(self._key, self._head, digest)
        self._audit.append((at, actor, family_id, action, stored, self._head, digest, link))
        self._head = link

    def flush(self) -> None:
        self._conn.executemany(
            "INSERT INTO audit (at, actor, family_id, action, detail, prev_hash, content_hash,"
            " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            self._audit,
        )
        self._conn.executemany(
            "INSERT INTO outbox (txn_id, room_id, kind, payload, created_at, sent_at, result)"
            " VALUES (?, ?, 'message', '{\"type\":\"m.room.message\"}', ?, ?, ?)",
            self._outbox,
        )
        self._conn.executemany(
            "INSERT OR IGNORE INTO inbox (event_id, room_id, processed_at) VALUES (?, ?, ?)",
            self._inbox,
        )
        self.audit_rows += len(self._audit)
        self.outbox_rows += len(self._outbox)
        self.inbox_rows += len(self._inbox)
        self._audit, self._outbox, self._inbox = [], [], []


def utc(year: int, month: int, day: int, hour: int = 10) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)
