"""Subject access: `!export` (a family's record) and `!mydata` (a practitioner's own).

An export is queued as two outbox items that name only what to export (a family id or a user
id) and the format; the process builds the file when it sends it and uploads it encrypted, so
no copy of the data waits in the queue. One file is the JSON of the stored rows, field for
field (`storage.dossier`); the other renders the same rows for reading.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rooms.audit_log import describe_action
from storage import FamilyView, Transaction, transaction_id
from storage.codec import decode_time
from storage.dossier import family_dossier, practitioner_dossier

EXPORT = "export"
"""The outbox kind of one exported file."""
FORMATS = ("json", "text")
FAMILY_KEY = "family_id"
USER_KEY = "user_id"
FAMILY_VIEW_KEY = "family_view_id"
"""A family member's `!mydata`: what they are entitled to see about their own family."""
LOOK_UPS = frozenset({"whois", "export", "audit", "cases", "view_team", "view_mydata"})
"""Audit actions that read the family's record: the access history a family is shown."""


@dataclass(frozen=True)
class Attachment:
    """A file to upload encrypted and post as an `m.file`."""

    filename: str
    mimetype: str
    data: bytes


async def queue_export(
    tx: Transaction, room_id: str, subject: Mapping[str, Any], *cause: str
) -> None:
    """Queue the JSON and the readable file for `subject` ({FAMILY_KEY: id} or {USER_KEY: id})."""
    for fmt in FORMATS:
        await tx.outbox.enqueue(
            transaction_id(*cause, EXPORT, fmt), room_id, EXPORT, {**subject, "format": fmt}
        )


async def build_attachment(tx: Transaction, payload: Mapping[str, Any]) -> Attachment:
    """The file an export item stands for, read from the database now."""
    stamp = tx.now().date().isoformat()
    if FAMILY_VIEW_KEY in payload:
        dossier = await family_member_dossier(tx, int(payload[FAMILY_VIEW_KEY]))
        stem = f"patchwork-{dossier['reference']}-your-record-{stamp}"
        render = render_family_member
    elif FAMILY_KEY in payload:
        dossier = await family_dossier(tx, int(payload[FAMILY_KEY]))
        stem = f"patchwork-{dossier['family']['reference']}-{stamp}"
        render = render_family
    else:
        dossier = await practitioner_dossier(tx, str(payload[USER_KEY]))
        stem = f"patchwork-my-data-{stamp}"
        render = render_practitioner
    dossier = {"exported_at": tx.now().isoformat(), **dossier}
    if payload.get("format") == "json":
        data = json.dumps(dossier, indent=2, ensure_ascii=False, sort_keys=True)
        return Attachment(f"{stem}.json", "application/json", data.encode("utf-8"))
    return Attachment(f"{stem}.txt", "text/plain", render(dossier).encode("utf-8"))


async def family_member_dossier(tx: Transaction, view_id: int) -> dict[str, Any]:
    """What a family member may see: the reference, the lawful basis, who is and was involved
    (organisation and role, as their card shows them), and when the record was looked at and
    by which organisation. No practitioner's user id; contact details only as on the card."""
    view = await tx.views.get(view_id)
    family = None if view is None else await tx.families.get(view.family_id)
    if view is None or family is None:
        raise LookupError(f"no family view {view_id}")
    roster = await tx.involvements.for_family(family.id, active_only=False)
    people = await tx.practitioners.many(item.user_id for item in roster)
    involved = []
    for item in roster:
        if item.sensitive or item.membership == "invite" and item.is_active:
            continue
        person = people.get(item.user_id)
        entry: dict[str, Any] = {
            "name": person.display_name if person is not None else None,
            "organisation": person.organisation if person is not None else None,
            "job_title": person.job_title if person is not None else None,
            "role": item.role,
            "lead": item.is_lead and item.is_active,
            "from": item.started_at.date().isoformat(),
            "until": None if item.ended_at is None else item.ended_at.date().isoformat(),
        }
        if item.is_active and person is not None and person.share_family:
            entry.update(phone=person.phone, email=person.email)
        involved.append(entry)
    looked = await tx.audit.for_family(family.id)
    readers = await tx.practitioners.many(entry.actor for entry in looked)
    return {
        "reference": family.reference,
        "lawful_basis": family.lawful_basis,
        "told_about_the_team": _stamp(family.family_informed_at),
        "involved": involved,
        "record_looked_at": [
            {
                "at": entry.at.isoformat(timespec="minutes"),
                "organisation": _organisation(readers.get(entry.actor), entry.actor, view),
                "what": describe_action(entry.action, {}, redacted=False),
            }
            for entry in looked
            if entry.action in LOOK_UPS
        ],
    }


def _organisation(person: Any, actor: str, view: FamilyView) -> str:
    if actor == view.user_id:
        return "you"
    if person is not None and person.organisation:
        return str(person.organisation)
    return "an organisation on the team"


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.date().isoformat()


def render_family_member(dossier: Mapping[str, Any]) -> str:
    lines = [
        f"What Patchwork holds about your family ({dossier['reference']})",
        f"Copied {_when(dossier['exported_at'])}",
        "",
        f"Why your information is shared: {dossier['lawful_basis'] or 'not recorded'}",
        f"You were told about the team: {dossier['told_about_the_team'] or '-'}",
        "",
        "People who support or supported your family:",
        *_items(
            ", ".join(
                str(part)
                for part in (
                    entry["name"], entry["role"], entry["job_title"], entry["organisation"],
                    "the lead" if entry["lead"] else None,
                    f"from {entry['from']}",
                    f"until {entry['until']}" if entry["until"] else "now",
                    entry.get("phone"), entry.get("email"),
                )
                if part
            )
            for entry in dossier["involved"]
        ),
        "",
        "When your record was looked at:",
        *_items(
            f"{entry['at']}: {entry['organisation']} {entry['what']}"
            for entry in dossier["record_looked_at"]
        ),
    ]
    return "\n".join(lines) + "\n"


def render_family(dossier: Mapping[str, Any]) -> str:
    family = dossier["family"]
    lines = [
        f"Patchwork record for {family['reference']}",
        f"Exported {_when(dossier['exported_at'])}",
        "",
        f"Status: {family['status']}",
        f"Lawful basis: {family['lawful_basis'] or 'not recorded'}",
        *_closing(family),
        "",
        "Governance records, oldest first:",
        *_items(
            f"{_when(row['recorded_at'])}: {row['kind']}"
            + (f" {row['value']}" if row["value"] else "")
            + (f" by {row['recorded_by']}" if row["recorded_by"] else "")
            + (f", note: {row['note']}" if row["note"] else "")
            for row in dossier["governance_records"]
        ),
        "",
        "Team, past and present:",
        *_items(_involvement(row) for row in dossier["involvements"]),
        "",
        "Still-involved questions:",
        *_items(_prompt(row) for row in dossier["prompts"]),
        "",
        *_audit(dossier["audit"]),
    ]
    return "\n".join(lines) + "\n"


def render_practitioner(dossier: Mapping[str, Any]) -> str:
    person = dossier["practitioner"] or {}
    consent = "yes" if person.get("share_contact") else "no"
    lines = [
        f"Patchwork: what is held about {person.get('user_id', 'you')}",
        f"Exported {_when(dossier['exported_at'])}",
        "",
        "Contact record:",
        *_items(
            f"{label}: {person.get(key) or 'not set'}"
            for label, key in (
                ("Name", "display_name"),
                ("Organisation", "organisation"),
                ("Job title", "job_title"),
                ("Phone", "phone"),
                ("Email", "email"),
                ("Away until", "away_until"),
            )
        ),
        f"Consent to share contact details with your teams: {consent}"
        + _since(person.get("share_contact_changed_at")),
        "",
        "Involvements, past and present:",
        *_items(
            f"{row['family_reference']}: " + _involvement(row) for row in dossier["involvements"]
        ),
        "",
        "Still-involved questions:",
        *_items(_prompt(row) for row in dossier["prompts"]),
        "",
        *_audit(dossier["audit"]),
    ]
    return "\n".join(lines) + "\n"


def _closing(family: Mapping[str, Any]) -> list[str]:
    if family["closed_at"] is None:
        return []
    return [
        f"Closed: {_when(family['closed_at'])}" + _reason(family["close_reason"]),
        f"Kept until: {_when(family['purge_after'])}",
    ]


def _involvement(row: Mapping[str, Any]) -> str:
    parts = [row["user_id"], f"role: {row['role'] or 'not set'}"]
    if row["is_lead"]:
        parts.append("lead")
    if row["sensitive"]:
        parts.append("hidden from ordinary look-ups")
    parts.append(f"since {_when(row['started_at'])}")
    if row["status"] == "ended":
        parts.append(f"ended {_when(row['ended_at'])} ({row['end_reason']})")
    else:
        parts.append("current")
    return ", ".join(parts)


def _prompt(row: Mapping[str, Any]) -> str:
    text = f"due {_when(row['due_at'])}"
    if row["sent_at"]:
        text += f", asked {_when(row['sent_at'])}"
    if row["answered_at"]:
        text += f", answered {row['answer']} {_when(row['answered_at'])}"
    return text


def _audit(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    listed = list(rows)
    return [
        f"Audit trail ({len(listed)} entries, oldest first):",
        *_items(
            f"{_when(row['at'])} {row['actor']} "
            + describe_action(row["action"], row["detail"], redacted=row["redacted_at"] is not None)
            for row in listed
        ),
    ]


def _items(items: Iterable[str]) -> list[str]:
    shown = [f"- {item}" for item in items]
    return shown or ["- none"]


def _when(stored: str | None) -> str:
    if stored is None:
        return "-"
    if len(stored) == 10:  # a date
        return stored
    value: datetime = decode_time(stored)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _since(stored: str | None) -> str:
    return "" if stored is None else f" (since {_when(stored)})"


def _reason(reason: str | None) -> str:
    return "" if not reason else f", reason: {reason}"
