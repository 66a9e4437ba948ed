"""Patchwork's SQLite storage: the database, its migrations, and one repository per aggregate.

Open it once at start-up with `await Database.open(path)` and pass it down; all reads and
writes go through `async with db.transaction() as tx:` (or `db.read()`) and the repositories
on `tx`. This package imports nothing from the rest of Patchwork and nothing from nio.
"""

from storage.audit import GENESIS_HASH, AuditRepository
from storage.codec import Clock, utc_now
from storage.db import Database
from storage.errors import ConflictError, DatabaseTooNewError, NotFoundError, StorageError
from storage.families import FamilyRepository
from storage.involvements import InvolvementRepository
from storage.migrations import LATEST_VERSION, MIGRATIONS, Migration
from storage.models import (
    AuditEntry,
    EndReason,
    Family,
    FamilyStatus,
    FamilyView,
    GovernanceKind,
    GovernanceRecord,
    Involvement,
    InvolvementStatus,
    LawfulBasis,
    Membership,
    OutboxItem,
    Practitioner,
    Prompt,
    PromptAnswer,
    UndecryptedEvent,
)
from storage.outbox import (
    BACKGROUND,
    INTERACTIVE,
    ORDERED_KINDS,
    LeaveOut,
    OutboxRepository,
    message_payload,
    transaction_id,
)
from storage.practitioners import CONTACT_FIELDS, PractitionerRepository
from storage.prompts import PromptRepository
from storage.sync_state import SyncStateRepository
from storage.transaction import AfterCommit, Transaction

__all__ = [
    "BACKGROUND",
    "INTERACTIVE",
    "ORDERED_KINDS",
    "CONTACT_FIELDS",
    "GENESIS_HASH",
    "LATEST_VERSION",
    "MIGRATIONS",
    "AfterCommit",
    "AuditEntry",
    "AuditRepository",
    "Clock",
    "ConflictError",
    "Database",
    "DatabaseTooNewError",
    "EndReason",
    "Family",
    "FamilyRepository",
    "FamilyStatus",
    "FamilyView",
    "GovernanceKind",
    "GovernanceRecord",
    "Involvement",
    "InvolvementRepository",
    "InvolvementStatus",
    "LawfulBasis",
    "LeaveOut",
    "Membership",
    "Migration",
    "NotFoundError",
    "OutboxItem",
    "OutboxRepository",
    "Practitioner",
    "message_payload",
    "transaction_id",
    "PractitionerRepository",
    "Prompt",
    "PromptAnswer",
    "PromptRepository",
    "StorageError",
    "SyncStateRepository",
    "Transaction",
    "UndecryptedEvent",
    "utc_now",
]
