"""Cross-signing of Patchwork's own Matrix device (design handbook, section 7).

Element excludes devices their owner has not cross-signed ("exclude insecure devices", MSC4153):
it neither shares room keys with them nor shows their messages. matrix-nio has no cross-signing,
so this module keeps the bot's three cross-signing keys (master, self-signing, user-signing) in a
private file, publishes them once, and signs the bot's device with the self-signing key, all with
plain client-server API calls made through the nio client's own HTTP session. The signing
primitives it builds on (canonical JSON, Ed25519 keys, signed objects) live in bot.signing and
are re-exported here.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nio

from bot.files import fsync_dir
from bot.signing import SEED_BYTES as SEED_BYTES
from bot.signing import SigningKey as SigningKey
from bot.signing import canonical_json as canonical_json
from bot.signing import sign_json as sign_json
from bot.signing import unpadded_b64decode as unpadded_b64decode
from bot.signing import unpadded_b64encode as unpadded_b64encode
from bot.signing import verify_json as verify_json

logger = logging.getLogger(__name__)

KEY_FILE_VERSION = 1
_MAX_RATE_LIMIT_RETRIES = 10
_PATH_QUERY = "/_matrix/client/v3/keys/query"
_PATH_DEVICE_SIGNING = "/_matrix/client/v3/keys/device_signing/upload"
_PATH_SIGNATURES = "/_matrix/client/v3/keys/signatures/upload"


class CrossSigningError(Exception):
    """The bot's device could not be cross-signed; the message says why and what to do."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _public_of(key_object: Any) -> str | None:
    """The Ed25519 public key a cross-signing key object on the server holds, if any."""
    if not isinstance(key_object, dict):
        return None
    keys = key_object.get("keys")
    if not isinstance(keys, dict):
        return None
    for key_id, public in keys.items():
        if isinstance(key_id, str) and key_id.startswith("ed25519:") and isinstance(public, str):
            return public
    return None


@dataclass(frozen=True)
class CrossSigningKeys:
    """The bot's cross-signing identity: master, self-signing and user-signing keys.

    Losing the master key is an identity reset that Element shows every user as a warning, so the
    seeds live in a file readable only by the bot and are created exactly once.
    """

    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        """Three fresh key pairs."""
        return cls(SigningKey.generate(), SigningKey.generate(), SigningKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> CrossSigningKeys:
        """Load the key file, or create it (mode 0600, atomically) if it does not exist.

        A file that exists but cannot be read as keys is an error, never silently replaced:
        replacing it would reset the bot's identity.
        """
        try:
            return cls.load(path)
        except FileNotFoundError:
            pass
        keys = cls.generate()
        return keys._create(path)

    @classmethod
    def load(cls, path: Path) -> CrossSigningKeys:
        """Read a key file written by `save`; FileNotFoundError if there is none."""
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            raw = handle.read()
        if stat.S_IMODE(mode) & 0o077:
            logger.warning("cross-signing key file %s was readable by others; now 0600", path)
            path.chmod(0o600)
        try:
            return cls._parse(raw)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise CrossSigningError(
                f"cross-signing key file {path} is unreadable ({exc}); restore it from backup. "
                "Deleting it creates a new identity that Element users will be warned about."
            ) from exc

    @classmethod
    def _parse(cls, raw: bytes) -> CrossSigningKeys:
        """The keys in a key file's content; ValueError and friends if it is not one."""
        data = json.loads(raw)
        if data.get("version") != KEY_FILE_VERSION:
            raise ValueError(f"unknown key file version {data.get('version')!r}")
        return cls(
            master=SigningKey(unpadded_b64decode(data["master"])),
            self_signing=SigningKey(unpadded_b64decode(data["self_signing"])),
            user_signing=SigningKey(unpadded_b64decode(data["user_signing"])),
        )

    def to_json(self) -> bytes:
        """The key file's content: the three seeds (secret) and, for operators, the master's id."""
        data = {
            "version": KEY_FILE_VERSION,
            "master": unpadded_b64encode(self.master.seed),
            "self_signing": unpadded_b64encode(self.self_signing.seed),
            "user_signing": unpadded_b64encode(self.user_signing.seed),
            "master_public_key": self.master.public_key,
        }
        return json.dumps(data, indent=2, sort_keys=True).encode("utf-8") + b"\n"

    def save(self, path: Path) -> None:
        """Write the key file atomically with mode 0600, replacing any previous one."""
        tmp = self._write_temp(path)
        try:
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def _create(self, path: Path) -> CrossSigningKeys:
        """Publish this key file only if none exists yet; otherwise load the one that won."""
        tmp = self._write_temp(path)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return CrossSigningKeys.load(path)
        except OSError:
            # Filesystems without hard links: fall back to an atomic rename.
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        logger.info("created cross-signing keys in %s (master %s)", path, self.master.public_key)
        return self

    def _write_temp(self, path: Path) -> Path:
        """Write the content to a fresh 0600 file next to `path` and flush it to disk."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.to_json())
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def master_key_object(self, user_id: str) -> dict[str, Any]:
        """The public master key as uploaded (unsigned by any device here)."""
        return _key_object(user_id, "master", self.master)

    def self_signing_key_object(self, user_id: str) -> dict[str, Any]:
        """The public self-signing key, signed by the master key."""
        return sign_json(
            _key_object(user_id, "self_signing", self.self_signing), self.master, user_id
        )

    def user_signing_key_object(self, user_id: str) -> dict[str, Any]:
        """The public user-signing key, signed by the master key."""
        return sign_json(
            _key_object(user_id, "user_signing", self.user_signing), self.master, user_id
        )

    def device_signing_upload(self, user_id: str) -> dict[str, Any]:
        """Body of POST /keys/device_signing/upload (without `auth`)."""
        return {
            "master_key": self.master_key_object(user_id),
            "self_signing_key": self.self_signing_key_object(user_id),
            "user_signing_key": self.user_signing_key_object(user_id),
        }

    def sign_device(self, device_keys: dict[str, Any], user_id: str) -> dict[str, Any]:
        """The device object as the server holds it, plus the self-signing key's signature."""
        return sign_json(device_keys, self.self_signing, user_id)


def _key_object(user_id: str, usage: str, key: SigningKey) -> dict[str, Any]:
    return {"user_id": user_id, "usage": [usage], "keys": {key.key_id: key.public_key}}


async def _request(
    client: nio.AsyncClient, method: str, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """One JSON call through nio's own HTTP session, waiting out rate limits.

    Transport errors (aiohttp.ClientError, TimeoutError) propagate unchanged so the caller's
    outage back-off treats them like any other unreachable homeserver.
    """
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {client.access_token}",
    }
    payload = json.dumps(body)
    for _attempt in range(_MAX_RATE_LIMIT_RETRIES + 1):
        async with await client.send(method, path, payload, headers) as response:
            status = response.status
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = None
        if not isinstance(data, dict):
            data = {}
        if status == 429 or data.get("errcode") == "M_LIMIT_EXCEEDED":
            retry_ms = data.get("retry_after_ms")
            delay = retry_ms / 1000 if isinstance(retry_ms, int) and retry_ms > 0 else 5.0
            logger.warning("rate limited on %s; retrying in %.1fs", path, delay)
            await asyncio.sleep(delay)
            continue
        return status, data
    raise CrossSigningError(f"{path}: still rate limited after several retries", status=429)


def _fail(what: str, status: int, data: dict[str, Any]) -> CrossSigningError:
    errcode = data.get("errcode", "?")
    error = data.get("error", "")
    return CrossSigningError(
        f"{what} failed: HTTP {status} {errcode} {error}".rstrip(), status=status
    )


async def _upload_device_signing_keys(
    client: nio.AsyncClient, keys: CrossSigningKeys, password: str | None, *, replacing: bool
) -> None:
    """Publish the three public keys, answering the password challenge when one is needed."""
    user_id: str = client.user_id
    body = keys.device_signing_upload(user_id)
    status, data = await _request(client, "POST", _PATH_DEVICE_SIGNING, body)
    if status == 200:
        return
    if status != 401 or "flows" not in data:
        raise _fail("uploading cross-signing keys", status, data)
    if password is None:
        raise CrossSigningError(
            f"the homeserver already holds a different cross-signing identity for {user_id} "
            "(was the key file lost or replaced?). Replacing it needs the bot account's password "
            "in the configuration, or restore the original key file.",
            status=401,
        )
    stages = {stage for flow in data.get("flows", []) for stage in flow.get("stages", [])}
    if "m.login.password" not in stages:
        raise CrossSigningError(
            f"the homeserver does not offer password authentication for replacing {user_id}'s "
            f"cross-signing keys (it offers {sorted(stages)}); reset them from a client instead.",
            status=401,
        )
    body["auth"] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
        "session": data.get("session"),
    }
    status, data = await _request(client, "POST", _PATH_DEVICE_SIGNING, body)
    if status != 200:
        raise _fail("replacing cross-signing keys with the bot's password", status, data)
    if replacing:
        logger.warning(
            "replaced %s's cross-signing identity; Element users will see a changed identity",
            user_id,
        )


async def ensure_cross_signed(
    client: nio.AsyncClient, keys_path: Path, *, password: str | None, reset: bool = False
) -> bool:
    """Make sure the server holds our cross-signing keys and our device carries their signature.

    Needs a logged-in client whose device keys are already uploaded. Returns True if anything
    was uploaded; a restart with the same device and key file uploads nothing. The first start
    (no identity on the server yet) creates and publishes the keys. Raises CrossSigningError
    when the homeserver refuses, or when the server already holds an identity and the key file
    is missing, unreadable or holds another one: replacing the identity is the operator's
    decision (`reset`, from `bot.reset_cross_signing`), never a side effect of a lost file.
    """
    user_id: str = client.user_id
    device_id: str = client.device_id
    if not (client.access_token and user_id and device_id):
        raise CrossSigningError("cross-signing needs a logged-in client with a device id")

    status, held = await _request(
        client, "POST", _PATH_QUERY, {"device_keys": {user_id: [device_id]}}
    )
    if status != 200:
        raise _fail("querying the bot's own keys", status, held)
    device = held.get("device_keys", {}).get(user_id, {}).get(device_id)
    if not isinstance(device, dict):
        raise CrossSigningError(
            f"device {device_id} of {user_id} has no keys on the homeserver; "
            "upload the device keys before cross-signing"
        )

    on_server = (
        _public_of(held.get("master_keys", {}).get(user_id)),
        _public_of(held.get("self_signing_keys", {}).get(user_id)),
        _public_of(held.get("user_signing_keys", {}).get(user_id)),
    )
    server_master = on_server[0]
    keys = await asyncio.to_thread(_local_keys, keys_path, user_id, server_master, reset=reset)
    ours = (keys.master.public_key, keys.self_signing.public_key, keys.user_signing.public_key)
    identity_changes = server_master is not None and server_master != ours[0]
    if identity_changes and not reset:
        raise CrossSigningError(
            f"the cross-signing key file {keys_path} holds master key {ours[0]}, but the "
            f"homeserver holds a different cross-signing identity for {user_id} (master key "
            f"{server_master}): was the file replaced, or the identity reset from another "
            "client? Please restore the matching key file from a backup. "
            + _RESET_CONSEQUENCES
        )
    if on_server != ours:
        replacing = server_master is not None
        await _upload_device_signing_keys(client, keys, password, replacing=replacing)
        logger.info("published cross-signing keys for %s (master %s)", user_id, ours[0])
        if identity_changes:
            logger.warning(
                "bot.reset_cross_signing: replaced %s's cross-signing identity (master %s) "
                "with the key file's (master %s); Element shows its users a changed identity. "
                "Set bot.reset_cross_signing back to false.",
                user_id,
                server_master,
                ours[0],
            )
    elif verify_json(device, keys.self_signing.public_key, user_id):
        _nothing_reset(reset)
        return False

    signed = keys.sign_device(device, user_id)
    status, result = await _request(
        client, "POST", _PATH_SIGNATURES, {user_id: {device_id: signed}}
    )
    if status != 200:
        raise _fail("uploading the device signature", status, result)
    failures = result.get("failures") or {}
    if failures:
        raise CrossSigningError(
            f"the homeserver rejected the signature on device {device_id}: {json.dumps(failures)}"
        )
    logger.info("cross-signed device %s of %s", device_id, user_id)
    _nothing_reset(reset and not identity_changes)
    return True


_RESET_CONSEQUENCES = (
    "Replacing the cross-signing keys resets the bot's identity: Element shows everyone who "
    "talks to the bot a warning that its identity has changed. To reset it on purpose, set "
    "bot.reset_cross_signing: true in the configuration for one start, then back to false."
)


def _local_keys(
    path: Path, user_id: str, server_master: str | None, *, reset: bool
) -> CrossSigningKeys:
    """The key file's keys.

    New keys are created on the first start (nothing on the server), or, with `reset`, in
    place of a missing or unreadable file; an unreadable file is then kept beside the new one.
    """
    try:
        return CrossSigningKeys.load(path)
    except FileNotFoundError:
        problem: CrossSigningError | None = None
    except CrossSigningError as exc:
        problem = exc
    if server_master is None and problem is None:
        return CrossSigningKeys.load_or_create(path)
    if not reset:
        if server_master is None and problem is not None:
            raise problem
        state = "is missing" if problem is None else f"is unreadable ({problem.__cause__})"
        raise CrossSigningError(
            f"the cross-signing key file {path} {state}, but the homeserver already holds a "
            f"cross-signing identity for {user_id} (master key {server_master}). Please "
            "restore the file from a backup and start the bot again. " + _RESET_CONSEQUENCES
        )
    if problem is not None:
        kept = path.with_name(f"{path.name}.unreadable-{secrets.token_hex(4)}")
        path.replace(kept)
        logger.warning("bot.reset_cross_signing: moved the unreadable key file to %s", kept)
    keys = CrossSigningKeys.load_or_create(path)
    logger.warning(
        "bot.reset_cross_signing is set: created new cross-signing keys for %s in %s "
        "(master %s)",
        user_id,
        path,
        keys.master.public_key,
    )
    return keys


def _nothing_reset(reset: bool) -> None:
    if reset:
        logger.warning(
            "bot.reset_cross_signing is set, but the key file matches the homeserver and "
            "nothing was reset; please remove the setting (or set it to false) so that a lost "
            "key file can never reset the bot's identity unnoticed"
        )
