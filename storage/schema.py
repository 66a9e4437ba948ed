"""The schema as first created (design section 2), migration step 1: later steps change it,
so this is never edited."""

SCHEMA_V1: tuple[str, ...] = (
    """
    CREATE TABLE practitioner (
        user_id TEXT PRIMARY KEY NOT NULL,
        display_name TEXT,
        organisation TEXT,
        job_title TEXT,
        phone TEXT,
        email TEXT,
        share_contact INTEGER NOT NULL DEFAULT 0 CHECK (share_contact IN (0, 1)),
        share_contact_changed_at TEXT,
        away_until TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE family (
        id INTEGER PRIMARY KEY,
        reference TEXT NOT NULL UNIQUE COLLATE NOCASE,
        room_id TEXT UNIQUE,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'active', 'closed', 'purged')),
        lawful_basis TEXT CHECK (lawful_basis IS NULL OR lawful_basis IN
            ('public_task', 'legal_obligation', 'consent', 'vital_interests')),
        basis_recorded_by TEXT,
        basis_recorded_at TEXT,
        basis_note TEXT,
        family_informed_at TEXT,
        informed_note TEXT,
        not_informed_reason TEXT,
        consent_withdrawn_at TEXT,
        closed_at TEXT,
        close_reason TEXT,
        purge_after TEXT,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE involvement (
        id INTEGER PRIMARY KEY,
        family_id INTEGER NOT NULL REFERENCES family (id),
        user_id TEXT NOT NULL REFERENCES practitioner (user_id),
        membership TEXT NOT NULL CHECK (membership IN ('invite', 'join', 'leave', 'ban')),
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
        role TEXT,
        is_lead INTEGER NOT NULL DEFAULT 0 CHECK (is_lead IN (0, 1)),
        sensitive INTEGER NOT NULL DEFAULT 0 CHECK (sensitive IN (0, 1)),
        invited_by TEXT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        end_reason TEXT CHECK (end_reason IS NULL OR end_reason IN
            ('left', 'removed', 'lapsed', 'case_closed')),
        last_confirmed_at TEXT,
        next_prompt_at TEXT,
        updated_at TEXT NOT NULL,
        UNIQUE (family_id, user_id)
    )
    """,
    "CREATE INDEX involvement_by_user ON involvement (user_id)",
    """
    CREATE INDEX involvement_prompt_due ON involvement (next_prompt_at)
        WHERE status = 'active'
    """,
    # At most one lead per family, enforced by SQLite itself.
    "CREATE UNIQUE INDEX involvement_one_lead ON involvement (family_id) WHERE is_lead = 1",
    """
    CREATE TABLE prompt (
        id INTEGER PRIMARY KEY,
        involvement_id INTEGER NOT NULL REFERENCES involvement (id),
        due_at TEXT NOT NULL,
        sent_at TEXT,
        event_id TEXT,
        reminded_at TEXT,
        answered_at TEXT,
        answer TEXT CHECK (answer IS NULL OR answer IN ('yes', 'no', 'lapsed')),
        UNIQUE (involvement_id, due_at)
    )
    """,
    "CREATE INDEX prompt_by_event ON prompt (event_id) WHERE event_id IS NOT NULL",
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        family_id INTEGER REFERENCES family (id),
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )
    """,
    "CREATE INDEX audit_by_family ON audit (family_id, id)",
    # Append-only: the hash chain detects tampering, these triggers stop accidents.
    """
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END
    """,
    """
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END
    """,
    """
    CREATE TABLE sync_state (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE inbox (
        event_id TEXT PRIMARY KEY NOT NULL,
        room_id TEXT NOT NULL,
        processed_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE undecrypted (
        event_id TEXT PRIMARY KEY NOT NULL,
        room_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        session_id TEXT NOT NULL,
        event_json TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        notified_at TEXT
    )
    """,
    "CREATE INDEX undecrypted_by_session ON undecrypted (session_id)",
    """
    CREATE TABLE room_flag (
        room_id TEXT NOT NULL,
        flag TEXT NOT NULL,
        set_at TEXT NOT NULL,
        PRIMARY KEY (room_id, flag)
    )
    """,
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        txn_id TEXT NOT NULL UNIQUE,
        room_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        sent_at TEXT,
        result TEXT,
        last_error TEXT,
        failed_at TEXT
    )
    """,
    """
    CREATE INDEX outbox_pending ON outbox (room_id, id)
        WHERE sent_at IS NULL AND failed_at IS NULL
    """,
)
