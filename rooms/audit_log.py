"""The audit trail in words: what each action means, for `!audit` and for exports.

Every action the team logic and the commands record is listed here, so a reader never meets
a bare code; an action this table does not know yet is still shown, by its code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage import AuditEntry

ACTIONS: Mapping[str, str] = {
    "whois": "looked up the team (!whois)",
    "whois_refused": "tried to look up the team without being on it",
    "cases": "listed their families (!cases)",
    "audit": "read this audit trail (!audit)",
    "export": "exported the family's record (!export)",
    "export_refused": "asked for an export without permission",
    "mydata": "asked for a copy of their own data (!mydata)",
    "invite": "invited a colleague",
    "invite_failed": "invite could not be delivered",
    "membership": "membership changed",
    "membership_revoked": "removed someone the policy does not allow",
    "role": "set their role",
    "lead": "handed over the lead",
    "sensitive": "changed whether their involvement is hidden (!sensitive)",
    "attention": "raised the team's attention (!attention)",
    "contact_update": "updated their contact details",
    "contact_share": "changed consent to share contact details",
    "contact_share_family": "changed consent to show contact details to families",
    "contact_away": "set when they are away",
    "family_create": "asked for a family room",
    "family_create_failed": "family room could not be created",
    "family_room": "family room created",
    "family_basis": "recorded the lawful basis",
    "family_informed": "recorded whether the family was told",
    "family_consent_withdrawn": "recorded that the family withdrew consent",
    "family_close": "closed the family's record",
    "family_purged": "purged the family's record at the end of its retention",
    "prompt": "asked whether still involved",
    "prompt_reminder": "reminded about the still-involved question",
    "confirm": "confirmed still involved",
    "leave": "said they are no longer involved",
    "lapse": "involvement lapsed without an answer",
    "practitioner_erased": "erased a practitioner's details",
    "roster_export": "exported the roster for the council's records",
    "audit_rekeyed": "audit chain keyed",
    "view_shared": "gave a family member their view of the team (!family share-with)",
    "view_unshared": "ended a family member's view of the team",
    "view_updated": "updated the family's view of the team",
    "view_team": "looked at the team card (!team)",
    "view_mydata": "asked for a copy of the family's record (!mydata)",
    "correction_requested": "asked for a correction (!correct)",
    "correction_relayed": "passed a correction request to the lead",
}

_SHOWN_DETAIL = ("user", "role", "to", "from", "membership", "basis", "informed", "field")
"""Detail keys worth reading; others (hashes, event ids) stay in the exported JSON."""


def describe(entry: AuditEntry) -> str:
    """One row as a phrase, e.g. "looked up the team (!whois)", with its useful detail."""
    return describe_action(entry.action, entry.detail, redacted=entry.redacted)


def describe_action(action: str, detail: Mapping[str, Any], *, redacted: bool) -> str:
    phrase = ACTIONS.get(action, action)
    if redacted:
        return f"{phrase} (details removed)"
    extras = _details(detail)
    return f"{phrase} ({extras})" if extras else phrase


def _details(detail: Mapping[str, Any]) -> str:
    shown = []
    for key in _SHOWN_DETAIL:
        value = detail.get(key)
        if value is None or isinstance(value, dict | list):
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        shown.append(f"{key}: {value}")
    return ", ".join(shown)
