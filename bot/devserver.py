"""An embedded Synapse on a loopback address for `make run` and the integration tests.

It runs the real homeserver from PyPI as a child process with SQLite, a shared registration secret
and (optionally) relaxed rate limits, and registers users through Synapse's admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import signal
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml

from bot.files import write_private

HOMESERVER_CONFIG = "homeserver.yaml"
OVERRIDES_CONFIG = "overrides.yaml"
LOG_CONFIG = "log.config"
LOG_FILE = "homeserver.log"
CONSOLE_FILE = "console.log"
SECRET_FILE = "registration_secret"  # noqa: S105 (a file name, not a secret)

# Far above anything a test or a demo does; rate limits are still exercised with
# relaxed_rate_limits=False, which keeps Synapse's defaults.
_GENEROUS = {"per_second": 1000, "burst_count": 10000}

RELAXED_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _GENEROUS,
    "rc_registration": _GENEROUS,
    "rc_registration_token_validity": _GENEROUS,
    "rc_login": {
        "address": _GENEROUS,
        "account": _GENEROUS,
        "failed_attempts": _GENEROUS,
    },
    "rc_admin_redaction": _GENEROUS,
    "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
    "rc_joins_per_room": _GENEROUS,
    "rc_3pid_validation": _GENEROUS,
    "rc_invites": {
        "per_room": _GENEROUS,
        "per_user": _GENEROUS,
        "per_issuer": _GENEROUS,
    },
    "rc_third_party_invite": _GENEROUS,
    "rc_key_requests": _GENEROUS,
    "rc_media_create": _GENEROUS,
    "rc_presence": {"per_user": _GENEROUS},
    "rc_delayed_event_mgmt": _GENEROUS,
    "rc_room_creation": _GENEROUS,
    "rc_reports": _GENEROUS,
    "rc_user_directory": _GENEROUS,
    "rc_profile": _GENEROUS,
}



class SynapseError(RuntimeError):
    """Synapse could not be started, or refused an admin request."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    """Whether something already answers on host:port (we would poll the wrong server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace")
    return "".join(text.splitlines(keepends=True)[-lines:])


def _load_or_create_secret(path: Path) -> str:
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if secret:
            return secret
    secret = secrets.token_urlsafe(32)
    write_private(path, secret + "\n")
    return secret


def registration_mac(secret: str, nonce: str, user: str, password: str, *, admin: bool) -> str:
    """The HMAC-SHA1 that Synapse's shared-secret registration expects (SHA1 is its choice)."""
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha1)
    for part in (nonce, user, password):
        mac.update(part.encode("utf-8"))
        mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


class LocalSynapse:
    """One Synapse child process serving the client API on host:port (a loopback address)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 8008,
        server_name: str = "localhost",
        relaxed_rate_limits: bool = True,
        own_process_group: bool = False,
        host: str = "127.0.0.1",
        access_log: bool = False,
    ) -> None:
        """`own_process_group` keeps a terminal's Ctrl-C away from Synapse, so the caller can
        stop its own clients first and Synapse last. `access_log` writes a line for every
        request to the log (a benchmark reads the legs of a round trip from it)."""
        self.data_dir = data_dir.resolve()
        self.port = port
        self.server_name = server_name
        self.relaxed_rate_limits = relaxed_rate_limits
        self.own_process_group = own_process_group
        self.host = host
        self.access_log = access_log
        self.base_url = f"http://{host}:{port}"
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.registration_secret = _load_or_create_secret(self.data_dir / SECRET_FILE)
        self._process: asyncio.subprocess.Process | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def pid(self) -> int:
        """The Synapse process's id (it must be running)."""
        if self._process is None:
            raise SynapseError("Synapse is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of Synapse's own log and of its console output, for error messages."""
        parts = []
        for path in (self.log_path, self.data_dir / CONSOLE_FILE):
            tail = _tail(path, lines)
            if tail:
                parts.append(f"--- {path.name} ---\n{tail}")
        return "\n".join(parts) or "(no output)"

    async def __aenter__(self) -> LocalSynapse:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self, *, timeout: float = 60) -> None:  # noqa: ASYNC109 (public API)
        """Generate the base config once, write our overrides, launch, wait until it serves."""
        if self.running:
            return
        if await asyncio.to_thread(_port_in_use, self.host, self.port):
            raise SynapseError(f"{self.host}:{self.port} is already in use")
        if not (self.data_dir / HOMESERVER_CONFIG).exists():
            await self._generate_config()
        await asyncio.to_thread(self._write_overrides)
        await self._launch()
        try:
            async with asyncio.timeout(timeout):
                await self._wait_until_ready()
        except TimeoutError:
            await self.stop()
            raise SynapseError(
                f"Synapse was not ready on {self.base_url} after {timeout:g} s:\n" + self.log_tail()
            ) from None
        except BaseException:
            await self.stop()
            raise

    async def _generate_config(self) -> None:
        """Let Synapse write its own config, secrets and signing key (once per data folder)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "synapse.app.homeserver",
            "--server-name",
            self.server_name,
            "--config-path",
            str(self.data_dir / HOMESERVER_CONFIG),
            "--data-directory",
            str(self.data_dir),
            "--generate-config",
            "--report-stats=no",
            cwd=self.data_dir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            (self.data_dir / HOMESERVER_CONFIG).unlink(missing_ok=True)
            raise SynapseError(
                "Synapse could not generate its config:\n"
                + output.decode("utf-8", errors="replace")
            )

    def overrides(self) -> dict[str, Any]:
        """Settings layered over the generated config on every start."""
        data = self.data_dir
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": f"{self.base_url}/",
            "pid_file": str(data / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": [self.host],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(data / "homeserver.db")}},
            "media_store_path": str(data / "media_store"),
            "log_config": str(data / LOG_CONFIG),
            "registration_shared_secret": self.registration_secret,
            "enable_registration": False,
            "bcrypt_rounds": 4,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "report_stats": False,
            "enable_metrics": False,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
        }
        if self.relaxed_rate_limits:
            config.update(RELAXED_RATE_LIMITS)
        return config

    def _log_config(self) -> dict[str, Any]:
        return {
            "version": 1,
            "formatters": {
                "precise": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}
            },
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                    "encoding": "utf8",
                }
            },
            "root": {"level": "WARNING", "handlers": ["file"]},
            "loggers": {"synapse.access": {"level": "INFO" if self.access_log else "WARNING"}},
            "disable_existing_loggers": False,
        }

    def _write_overrides(self) -> None:
        write_private(self.data_dir / LOG_CONFIG, yaml.safe_dump(self._log_config()))
        write_private(
            self.data_dir / OVERRIDES_CONFIG,
            "# Written by Patchwork's LocalSynapse on every start; edits are lost.\n"
            + yaml.safe_dump(self.overrides(), sort_keys=True),
        )

    async def _launch(self) -> None:
        console = await asyncio.to_thread((self.data_dir / CONSOLE_FILE).open, "ab")
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "synapse.app.homeserver",
                "-c",
                str(self.data_dir / HOMESERVER_CONFIG),
                "-c",
                str(self.data_dir / OVERRIDES_CONFIG),
                cwd=self.data_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=console,
                stderr=console,
                process_group=0 if self.own_process_group else None,
            )
        finally:
            console.close()

    async def _wait_until_ready(self) -> None:
        """Poll the versions endpoint; fail fast, with Synapse's log, if the process dies."""
        process = self._process
        assert process is not None
        url = f"{self.base_url}/_matrix/client/versions"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                if process.returncode is not None:
                    raise SynapseError(
                        f"Synapse exited with code {process.returncode} while starting:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM, give Synapse 15 s to shut down, then SIGKILL."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self._process = None

    async def register_user(
        self,
        localpart: str,
        password: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> str:
        """Register through the shared-secret admin API; an existing user with this password
        is fine (a second `make run`, a re-run test), any other refusal is an error."""
        user_id = f"@{localpart}:{self.server_name}"
        url = f"{self.base_url}/_synapse/admin/v1/register"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while True:
                async with session.get(url) as response:
                    body = await response.json()
                    if response.status != 200:
                        raise SynapseError(f"no registration nonce: {response.status} {body}")
                nonce = str(body["nonce"])
                payload: dict[str, Any] = {
                    "nonce": nonce,
                    "username": localpart,
                    "password": password,
                    "admin": admin,
                    "mac": registration_mac(
                        self.registration_secret, nonce, localpart, password, admin=admin
                    ),
                }
                if displayname is not None:
                    payload["displayname"] = displayname
                async with session.post(url, json=payload) as response:
                    body = await response.json()
                    status = response.status
                if status == 200:
                    return str(body["user_id"])
                if status == 429:
                    await asyncio.sleep(int(body.get("retry_after_ms", 1000)) / 1000)
                    continue
                if body.get("errcode") == "M_USER_IN_USE":
                    await self._check_password(session, localpart, password)
                    return user_id
                raise SynapseError(f"could not register {user_id}: {status} {body}")

    async def _check_password(
        self, session: aiohttp.ClientSession, localpart: str, password: str
    ) -> None:
        """Log in (and straight out again) to prove an existing account has this password."""
        login = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
            "initial_device_display_name": "Patchwork registration check",
        }
        async with session.post(f"{self.base_url}/_matrix/client/v3/login", json=login) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise SynapseError(
                    f"@{localpart}:{self.server_name} exists with another password: "
                    f"{resp.status} {body.get('errcode')}"
                )
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        async with session.post(
            f"{self.base_url}/_matrix/client/v3/logout", headers=headers
        ) as resp:
            await resp.read()
