"""Ed25519 signing of JSON objects as the Matrix specification defines it.

The primitives cross-signing is built from: the spec's unpadded base64, canonical JSON (the
exact bytes signatures cover), Ed25519 key pairs kept as their 32-byte seeds, and signing and
verifying an object's ``signatures`` entry. Nothing here talks to a homeserver or touches a file.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from Crypto.Signature import eddsa

SEED_BYTES = 32
_MAX_SAFE_INT = 2**53 - 1


def unpadded_b64encode(data: bytes) -> str:
    """Encode as the spec's unpadded base64 (RFC 4648 alphabet, no '=')."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def unpadded_b64decode(text: str) -> bytes:
    """Decode base64 with or without padding, as the spec asks readers to accept."""
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _check_canonical(value: Any) -> None:
    """Refuse values canonical JSON cannot carry (floats, out-of-range integers, odd keys)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"canonical JSON keys must be strings, got {type(key).__name__}")
            _check_canonical(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_canonical(item)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            raise ValueError(f"integer {value} is outside canonical JSON's range")
    else:
        raise TypeError(f"canonical JSON cannot encode {type(value).__name__}")


def canonical_json(obj: Any) -> bytes:
    """Matrix canonical JSON: sorted keys, no whitespace, UTF-8, integers only.

    Signatures are computed over these exact bytes, so any deviation breaks verification.
    """
    _check_canonical(obj)
    return json.dumps(
        obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 key pair, kept as its 32-byte seed (the form the key file stores)."""

    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(self.seed)}")

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(SEED_BYTES))

    @property
    def public_key(self) -> str:
        """The public key in unpadded base64, which is also the key's name on Matrix."""
        key = eddsa.import_private_key(self.seed)
        raw: bytes = key.public_key().export_key(format="raw")
        return unpadded_b64encode(raw)

    @property
    def key_id(self) -> str:
        """`ed25519:<public key>`, the id signatures are filed under."""
        return f"ed25519:{self.public_key}"

    def sign(self, message: bytes) -> str:
        """Pure Ed25519 (RFC 8032) signature of `message`, unpadded base64."""
        signer = eddsa.new(eddsa.import_private_key(self.seed), "rfc8032")
        return unpadded_b64encode(signer.sign(message))


def _signable(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of an object that signatures cover: everything but `signatures` and `unsigned`."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def sign_json(obj: dict[str, Any], key: SigningKey, user_id: str) -> dict[str, Any]:
    """Return a copy of `obj` with `key`'s signature added under signatures[user_id][key id].

    Existing signatures are kept (a device object already carries its own); `unsigned` is
    dropped because it is server-side data a signed upload must not carry.
    """
    signed = copy.deepcopy(obj)
    signed.pop("unsigned", None)
    signature = key.sign(canonical_json(_signable(signed)))
    signatures = signed.setdefault("signatures", {})
    signatures.setdefault(user_id, {})[key.key_id] = signature
    return signed


def verify_json(obj: dict[str, Any], public_key: str, user_id: str) -> bool:
    """Whether `obj` carries a valid signature by `public_key` under signatures[user_id]."""
    signature = obj.get("signatures", {}).get(user_id, {}).get(f"ed25519:{public_key}")
    if not isinstance(signature, str):
        return False
    try:
        verifier = eddsa.new(eddsa.import_public_key(unpadded_b64decode(public_key)), "rfc8032")
        verifier.verify(canonical_json(_signable(obj)), unpadded_b64decode(signature))
    except (ValueError, TypeError, binascii.Error):
        return False
    return True
