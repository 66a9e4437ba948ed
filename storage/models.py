"""The values Patchwork's repositories return: frozen snapshots, never live database rows.

Callers get a copy of what was committed (or written in their transaction) and change data only
through repository methods, so every change goes through one place that validates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from sqlite3 import Row
from typing import Any, Literal, get_args

from storage.codec import (
    decode_json_object,
    decode_optional_date,
    decode_optional_time,
    decode_time,
)

FamilyStatus = Literal["pending", "active", "closed", "purged"]
LawfulBasis = Literal["public_task", "legal_obligation", "consent", "vital_interests"]
Membership = Literal["invite", "join", "leave", "ban"]
InvolvementStatus = Literal["active", "ended"]
EndReason = Literal["left", "removed", "lapsed", "case_closed"]
PromptAnswer = Literal["yes", "no", "lapsed"]
GovernanceKind = Literal["basis", "informed", "unsafe"]

FAMILY_STATUSES: frozenset[str] = frozenset(get_args(FamilyStatus))
LAWFUL_BASES: frozenset[str] = frozenset(get_args(LawfulBasis))
MEMBERSHIPS: frozenset[str] = frozenset(get_args(Membership))
END_REASONS: frozenset[str] = frozenset(get_args(EndReason))
PROMPT_ANSWERS: frozenset[str] = frozenset(get_args(PromptAnswer))
OPEN_FAMILY_STATUSES: tuple[FamilyStatus, ...] = ("pending", "active")


@dataclass(frozen=True, slots=True)
class Practitioner:
    user_id: str
    display_name: str | None
    organisation: str | None
    job_title: str | None
    phone: str | None
    email: str | None
    share_contact: bool
    share_contact_changed_at: datetime | None
    away_until: date | None
    created_at: datetime
    updated_at: datetime
    share_family: bool = False
    """A separate consent: contact details shown on family members' own view of the team."""
    share_family_changed_at: datetime | None = None
    phone_shown: str | None = None
    """`phone` as it is shown to people ("01632 960123"), kept when it was saved; None for a
    number saved before that was kept."""

    @classmethod
    def from_row(cls, row: Row) -> Practitioner:
        return cls(
            user_id=row["user_id"],
            display_name=row["display_name"],
            organisation=row["organisation"],
            job_title=row["job_title"],
            phone=row["phone"],
            email=row["email"],
            share_contact=bool(row["share_contact"]),
            share_contact_changed_at=decode_optional_time(row["share_contact_changed_at"]),
            away_until=decode_optional_date(row["away_until"]),
            created_at=decode_time(row["created_at"]),
            updated_at=decode_time(row["updated_at"]),
            share_family=bool(row["share_family"]),
            share_family_changed_at=decode_optional_time(row["share_family_changed_at"]),
            phone_shown=row["phone_shown"],
        )


@dataclass(frozen=True, slots=True)
class Family:
    id: int
    reference: str
    room_id: str | None
    status: FamilyStatus
    lawful_basis: LawfulBasis | None
    basis_recorded_by: str | None
    basis_recorded_at: datetime | None
    basis_note: str | None
    family_informed_at: datetime | None
    informed_note: str | None
    not_informed_reason: str | None
    consent_withdrawn_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None
    purge_after: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_FAMILY_STATUSES

    @classmethod
    def from_row(cls, row: Row) -> Family:
        return cls(
            id=row["id"],
            reference=row["reference"],
            room_id=row["room_id"],
            status=row["status"],
            lawful_basis=row["lawful_basis"],
            basis_recorded_by=row["basis_recorded_by"],
            basis_recorded_at=decode_optional_time(row["basis_recorded_at"]),
            basis_note=row["basis_note"],
            family_informed_at=decode_optional_time(row["family_informed_at"]),
            informed_note=row["informed_note"],
            not_informed_reason=row["not_informed_reason"],
            consent_withdrawn_at=decode_optional_time(row["consent_withdrawn_at"]),
            closed_at=decode_optional_time(row["closed_at"]),
            close_reason=row["close_reason"],
            purge_after=decode_optional_time(row["purge_after"]),
            created_by=row["created_by"],
            created_at=decode_time(row["created_at"]),
            updated_at=decode_time(row["updated_at"]),
        )


@dataclass(frozen=True, slots=True)
class GovernanceRecord:
    """One governance record as it was made; later records add rows, never change this one.

    `value` is the lawful basis for `basis` and None otherwise; `note` is the note given, or for
    `unsafe` the reason telling the family would be unsafe. `recorded_by` is None for records
    carried over from before the history was kept, where nobody was recorded.
    """

    id: int
    family_id: int
    kind: GovernanceKind
    value: str | None
    note: str | None
    recorded_by: str | None
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> GovernanceRecord:
        return cls(
            id=row["id"],
            family_id=row["family_id"],
            kind=row["kind"],
            value=row["value"],
            note=row["note"],
            recorded_by=row["recorded_by"],
            recorded_at=decode_time(row["recorded_at"]),
        )


@dataclass(frozen=True, slots=True)
class Involvement:
    id: int
    family_id: int
    user_id: str
    membership: Membership
    status: InvolvementStatus
    role: str | None
    is_lead: bool
    sensitive: bool
    invited_by: str | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: EndReason | None
    last_confirmed_at: datetime | None
    next_prompt_at: datetime | None
    updated_at: datetime

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    @classmethod
    def from_row(cls, row: Row) -> Involvement:
        return cls(
            id=row["id"],
            family_id=row["family_id"],
            user_id=row["user_id"],
            membership=row["membership"],
            status=row["status"],
            role=row["role"],
            is_lead=bool(row["is_lead"]),
            sensitive=bool(row["sensitive"]),
            invited_by=row["invited_by"],
            started_at=decode_time(row["started_at"]),
            ended_at=decode_optional_time(row["ended_at"]),
            end_reason=row["end_reason"],
            last_confirmed_at=decode_optional_time(row["last_confirmed_at"]),
            next_prompt_at=decode_optional_time(row["next_prompt_at"]),
            updated_at=decode_time(row["updated_at"]),
        )


@dataclass(frozen=True, slots=True)
class Prompt:
    id: int
    involvement_id: int
    due_at: datetime
    sent_at: datetime | None
    event_id: str | None
    reminded_at: datetime | None
    answered_at: datetime | None
    answer: PromptAnswer | None

    @classmethod
    def from_row(cls, row: Row) -> Prompt:
        return cls(
            id=row["id"],
            involvement_id=row["involvement_id"],
            due_at=decode_time(row["due_at"]),
            sent_at=decode_optional_time(row["sent_at"]),
            event_id=row["event_id"],
            reminded_at=decode_optional_time(row["reminded_at"]),
            answered_at=decode_optional_time(row["answered_at"]),
            answer=row["answer"],
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    family_id: int | None
    action: str
    detail: dict[str, Any] = field(hash=False)
    prev_hash: str
    hash: str
    redacted: bool = False

    @classmethod
    def from_row(cls, row: Row) -> AuditEntry:
        return cls(
            id=row["id"],
            at=decode_time(row["at"]),
            actor=row["actor"],
            family_id=row["family_id"],
            action=row["action"],
            detail=decode_json_object(row["detail"]),
            prev_hash=row["prev_hash"],
            hash=row["hash"],
            redacted=row["redacted_at"] is not None,
        )


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    txn_id: str
    room_id: str
    kind: str
    payload: dict[str, Any] = field(hash=False)
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    result: str | None
    last_error: str | None
    failed_at: datetime | None
    priority: int = 0

    @property
    def is_pending(self) -> bool:
        return self.sent_at is None and self.failed_at is None

    @classmethod
    def from_row(cls, row: Row) -> OutboxItem:
        return cls(
            id=row["id"],
            txn_id=row["txn_id"],
            room_id=row["room_id"],
            kind=row["kind"],
            payload=decode_json_object(row["payload"]),
            attempts=row["attempts"],
            created_at=decode_time(row["created_at"]),
            next_attempt_at=decode_optional_time(row["next_attempt_at"]),
            sent_at=decode_optional_time(row["sent_at"]),
            result=row["result"],
            last_error=row["last_error"],
            failed_at=decode_optional_time(row["failed_at"]),
            priority=row["priority"],
        )


@dataclass(frozen=True, slots=True)
class UndecryptedEvent:
    event_id: str
    room_id: str
    sender: str
    session_id: str
    event_json: dict[str, Any] = field(hash=False)
    first_seen_at: datetime
    notified_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> UndecryptedEvent:
        return cls(
            event_id=row["event_id"],
            room_id=row["room_id"],
            sender=row["sender"],
            session_id=row["session_id"],
            event_json=decode_json_object(row["event_json"]),
            first_seen_at=decode_time(row["first_seen_at"]),
            notified_at=decode_optional_time(row["notified_at"]),
        )


@dataclass(frozen=True, slots=True)
class FamilyView:
    """A family member's own room with the bot, showing who supports them."""

    id: int
    family_id: int
    user_id: str
    room_id: str | None
    status: Literal["active", "ended"]
    card_event_id: str | None
    shared_by: str
    shared_at: datetime
    ended_at: datetime | None

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    @classmethod
    def from_row(cls, row: Row) -> FamilyView:
        return cls(
            id=row["id"],
            family_id=row["family_id"],
            user_id=row["user_id"],
            room_id=row["room_id"],
            status=row["status"],
            card_event_id=row["card_event_id"],
            shared_by=row["shared_by"],
            shared_at=decode_time(row["shared_at"]),
            ended_at=decode_optional_time(row["ended_at"]),
        )
