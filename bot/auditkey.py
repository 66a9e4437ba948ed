"""The audit chain's HMAC key: 32 random bytes in a file beside the signing keys, never in the
database, so someone who can write the database alone cannot rewrite the audit unnoticed."""

from __future__ import annotations

import secrets
from pathlib import Path

from bot.files import write_private

AUDIT_KEY_FILE = "audit_hmac.key"
_KEY_BYTES = 32


class AuditKeyError(Exception):
    """The key file exists but cannot be used; the message says what to do."""


def audit_key_path(storage_path: Path) -> Path:
    return storage_path / AUDIT_KEY_FILE


def load_audit_key(storage_path: Path, *, create: bool) -> bytes | None:
    """The key, created on first use when `create`; None when it is missing and not created."""
    path = audit_key_path(storage_path)
    if not path.exists():
        if not create:
            return None
        write_private(path, secrets.token_hex(_KEY_BYTES) + "\n")
    text = path.read_text(encoding="utf-8").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != _KEY_BYTES:
        raise AuditKeyError(
            f"{path} does not hold a {_KEY_BYTES}-byte hex key; restore it from your backup "
            "(without it the audit chain cannot be verified)"
        )
    return key
