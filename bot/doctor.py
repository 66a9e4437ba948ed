"""`patchwork doctor --config FILE`: is this bot healthy? Each check prints PASS or FAIL with
what to do about a failure (or SKIP when a check it needs failed); the exit status is 0 only
when every check passes.

Safe while the bot runs: it reads, and changes nothing. Login is checked without logging in:
the saved (or configured) access token is asked who it belongs to, and the password is
checked by answering the homeserver's password challenge for deleting no devices at all,
which makes no new device and ends no session. The database is opened for the audit chain
only when its schema is current, so opening it never migrates it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from nio.store import DefaultStore

from bot.app import DATABASE_FILE
from bot.auditkey import AuditKeyError, load_audit_key
from bot.config import Config, ConfigError, load_config
from bot.crosssigning import CrossSigningError, CrossSigningKeys, verify_json
from bot.files import exposed_paths
from bot.matrix import CROSS_SIGNING_FILE, SESSION_FILE, e2ee_store_file
from storage import LATEST_VERSION, Database

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass(frozen=True)
class Result:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str
    fix: str = ""


class _Failed(Exception):
    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


@dataclass
class _Facts:
    """What earlier checks learnt, for later ones."""

    token: str | None = None
    ed25519: str | None = None


class _Homeserver:
    def __init__(self, session: aiohttp.ClientSession, config: Config) -> None:
        self._session = session
        self._base = config.homeserver.url

    async def call(
        self, method: str, path: str, token: str | None = None, body: object = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self._session.request(
            method, self._base + path, json=body, headers=headers
        ) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = None
            return response.status, data if isinstance(data, dict) else {}


async def run_checks(config_path: Path) -> list[Result]:
    try:
        config = await asyncio.to_thread(load_config, config_path)
    except ConfigError as exc:
        return [Result("config", "FAIL", str(exc), "correct the file, then run doctor again")]
    results = [Result("config", "PASS", f"{config_path} is valid")]
    facts = _Facts()
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
        server = _Homeserver(session, config)
        checks: list[tuple[str, Callable[[], Awaitable[str]], tuple[str, ...]]] = [
            ("storage permissions", lambda: _permissions(config), ()),
            ("homeserver", lambda: _homeserver(server), ()),
            ("login", lambda: _login(server, config, facts), ("homeserver",)),
            ("e2ee store", lambda: _e2ee_store(config, facts), ()),
            ("device and cross-signing", lambda: _device(server, config, facts), ("login",)),
            ("database", lambda: _database(config), ()),
            ("audit chain", lambda: _audit(config), ("database",)),
        ]
        failed: set[str] = set()
        for name, check, needs in checks:
            blocked = [need for need in needs if need in failed]
            if blocked:
                failed.add(name)
                results.append(Result(name, "SKIP", f"not checked: {blocked[0]} failed"))
                continue
            try:
                results.append(Result(name, "PASS", await check()))
            except _Failed as failure:
                failed.add(name)
                results.append(Result(name, "FAIL", failure.detail, failure.fix))
    return results


async def _permissions(config: Config) -> str:
    root = config.storage.path
    if not root.is_dir():
        raise _Failed(f"{root} does not exist", "start the bot once: it creates the folder")
    exposed = await asyncio.to_thread(exposed_paths, root)
    if exposed:
        listed = ", ".join(f"{path} ({mode:o})" for path, mode in exposed[:5])
        raise _Failed(
            f"other users on this machine can reach {listed}",
            f"run `chmod -R go-rwx {root}` (as the bot's user)",
        )
    uid = os.getuid()
    foreign = [path for path in [root, *root.rglob("*")] if path.lstat().st_uid != uid]
    if foreign:
        raise _Failed(
            f"{foreign[0]} belongs to another user",
            "run doctor as the bot's user, or give the files back to it with chown -R",
        )
    return f"{root} and everything in it are readable by this user only"


async def _homeserver(server: _Homeserver) -> str:
    try:
        status, data = await server.call("GET", "/_matrix/client/versions")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Failed(
            f"no answer ({type(exc).__name__}: {exc})",
            "check homeserver.url, that Synapse runs, and the network between them",
        ) from None
    if status != 200 or "versions" not in data:
        raise _Failed(f"HTTP {status} without a versions list", "check homeserver.url")
    return f"answers (client API {', '.join(data['versions'][-2:])})"


async def _login(server: _Homeserver, config: Config, facts: _Facts) -> str:
    user_id = config.bot.user_id
    if config.bot.access_token is not None:
        token = config.bot.access_token.get_secret_value()
        await _whoami(server, token, user_id, "bot.access_token")
        facts.token = token
        return f"bot.access_token belongs to {user_id}"
    assert config.bot.password is not None
    password = config.bot.password.get_secret_value()
    saved = await asyncio.to_thread(_saved_token, config.storage.path / SESSION_FILE)
    if saved is None:
        raise _Failed(
            "no saved session", "start the bot once: it logs in and saves its session"
        )
    await _whoami(server, saved, user_id, "the saved access token")
    facts.token = saved
    # The password challenge of deleting no devices: changes nothing, and needs the password.
    status, data = await server.call("POST", "/_matrix/client/v3/delete_devices", saved,
                                     {"devices": []})
    if status == 401 and "session" in data:
        body = {
            "devices": [],
            "auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user_id},
                "password": password,
                "session": data["session"],
            },
        }
        status, data = await server.call("POST", "/_matrix/client/v3/delete_devices", saved,
                                         body)
    if status != 200:
        raise _Failed(
            f"the homeserver refused bot.password: HTTP {status} {data.get('errcode', '')}",
            "set bot.password to the account's current password (see 'Rotating the password' "
            "in docs/operating.md)",
        )
    return f"the saved session and bot.password both work for {user_id}"


async def _whoami(server: _Homeserver, token: str, user_id: str, what: str) -> None:
    status, data = await server.call("GET", "/_matrix/client/v3/account/whoami", token)
    if status != 200:
        raise _Failed(
            f"{what} was refused: HTTP {status} {data.get('errcode', '')}",
            "restart the bot so it logs in again with bot.password, or give a new access token",
        )
    if data.get("user_id") != user_id:
        raise _Failed(f"{what} belongs to {data.get('user_id')}, not {user_id}",
                      "check bot.user_id and the token")


def _saved_token(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    token = data.get("access_token") if isinstance(data, dict) else None
    return str(token) if token else None


async def _e2ee_store(config: Config, facts: _Facts) -> str:
    path = e2ee_store_file(config)
    if not path.exists() or path.stat().st_size == 0:
        raise _Failed(f"{path} does not exist", "start the bot once: it creates the store")

    def open_account() -> str | None:
        store = DefaultStore(
            config.bot.user_id, config.bot.device_id, str(path.parent),
            config.storage.pickle_key.get_secret_value(),
        )
        try:
            account = store.load_account()
            return None if account is None else str(account.identity_keys["ed25519"])
        finally:
            store.database.close()

    try:
        key = await asyncio.to_thread(open_account)
    except Exception as exc:  # vodozemac's pickle errors have no common public base
        raise _Failed(
            f"storage.pickle_key does not open the store ({type(exc).__name__})",
            "set storage.pickle_key back to the key the store was made with; a new key "
            "needs a new store, device and cross-signature",
        ) from None
    if key is None:
        raise _Failed(f"the store holds no account for device {config.bot.device_id}",
                      "check bot.device_id: the store belongs to the device that made it")
    facts.ed25519 = key
    return f"opens with storage.pickle_key (device {config.bot.device_id}, ed25519 {key[:8]}…)"


async def _device(server: _Homeserver, config: Config, facts: _Facts) -> str:
    user_id, device_id = config.bot.user_id, config.bot.device_id
    status, held = await server.call("POST", "/_matrix/client/v3/keys/query", facts.token,
                                     {"device_keys": {user_id: [device_id]}})
    device = held.get("device_keys", {}).get(user_id, {}).get(device_id)
    if status != 200 or not isinstance(device, dict):
        raise _Failed(f"device {device_id} has no keys on the homeserver",
                      "start the bot: it uploads its device keys")
    published = device.get("keys", {}).get(f"ed25519:{device_id}")
    if facts.ed25519 is not None and published != facts.ed25519:
        raise _Failed(
            f"device {device_id} on the homeserver is not the one in the E2EE store",
            "restore the E2EE store that belongs to this device, or see 'Lost keys' in "
            "docs/operating.md",
        )
    try:
        keys = await asyncio.to_thread(CrossSigningKeys.load, config.storage.path /
                                       CROSS_SIGNING_FILE)
    except (FileNotFoundError, CrossSigningError) as exc:
        raise _Failed(f"the cross-signing key file cannot be read ({exc})",
                      "restore cross_signing_keys.json from a backup") from None
    server_master = _public(held.get("master_keys", {}).get(user_id))
    if server_master != keys.master.public_key:
        raise _Failed(
            f"the homeserver's master key ({server_master}) is not the local one "
            f"({keys.master.public_key})",
            "restore the matching cross_signing_keys.json from a backup; see 'Lost keys' in "
            "docs/operating.md",
        )
    if not verify_json(device, keys.self_signing.public_key, user_id):
        raise _Failed(f"device {device_id} is not signed by the bot's self-signing key",
                      "restart the bot: it signs its own device at start")
    return f"device {device_id} is cross-signed; master key {keys.master.public_key[:8]}… matches"


def _public(key_object: object) -> str | None:
    keys = key_object.get("keys", {}) if isinstance(key_object, dict) else {}
    return next(iter(keys.values()), None) if isinstance(keys, dict) else None


async def _database(config: Config) -> str:
    path = config.storage.path / DATABASE_FILE
    if not path.exists():
        raise _Failed(f"{path} does not exist", "start the bot once: it creates the database")

    def check() -> tuple[list[str], int]:
        connection = sqlite3.connect(path, timeout=30)
        try:
            rows = connection.execute("PRAGMA integrity_check").fetchall()
            version = connection.execute("PRAGMA user_version").fetchone()[0]
        finally:
            connection.close()
        return [str(row[0]) for row in rows], int(version)

    fix = "stop the bot and restore the last good backup (`patchwork restore`)"
    try:
        problems, version = await asyncio.to_thread(check)
    except sqlite3.DatabaseError as exc:
        raise _Failed(f"SQLite cannot read {path}: {exc}", fix) from None
    if problems != ["ok"]:
        raise _Failed(f"PRAGMA integrity_check: {'; '.join(problems[:3])}", fix)
    if version > LATEST_VERSION:
        raise _Failed(f"schema version {version} is newer than this Patchwork ({LATEST_VERSION})",
                      "install the newer Patchwork that wrote it")
    if version < LATEST_VERSION:
        raise _Failed(f"schema version {version}; this Patchwork needs {LATEST_VERSION}",
                      "start the bot: it migrates the database at start")
    return f"integrity ok, schema version {version} (current)"


async def _audit(config: Config) -> str:
    try:
        key = await asyncio.to_thread(load_audit_key, config.storage.path, create=False)
    except AuditKeyError as exc:
        raise _Failed(str(exc), "restore audit_hmac.key from the backup") from None
    if key is None:
        raise _Failed("audit_hmac.key is missing", "restore audit_hmac.key from the backup")
    db = await Database.open(config.storage.path / DATABASE_FILE, audit_key=key)
    try:
        async with db.read() as tx:
            broken = await tx.audit.verify()
    finally:
        await db.close()
    if broken is not None:
        raise _Failed(
            f"the audit chain is broken at row {broken}: rows were changed or removed",
            "keep a copy of the database as evidence, tell your information-governance "
            "officer, and compare with your backups (`patchwork audit verify` names the row)",
        )
    return "every row verifies"


def report(results: list[Result]) -> tuple[str, int]:
    """The printed report and the exit status (0 only when every check passed)."""
    lines = []
    for result in results:
        lines.append(f"{result.status:4} {result.name}: {result.detail}")
        if result.fix:
            lines.append(f"     what to do: {result.fix}")
    passed = all(result.status == "PASS" for result in results)
    lines.append("all checks passed" if passed else "some checks did not pass")
    return "\n".join(lines), 0 if passed else 1
