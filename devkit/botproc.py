"""Runs the bot as operators do, `patchwork run --config FILE`, as a child process (through
`devkit.testbot`, which adds the tests' movable clock)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

READY_LINE = "Patchwork is ready"


def write_bot_config(
    path: Path,
    *,
    homeserver_url: str,
    user_id: str,
    password: str,
    storage: Path,
    allowed_servers: Sequence[str] = ("localhost",),
    admins: Sequence[str] = (),
    extra: dict[str, dict[str, object]] | None = None,
) -> Path:
    config: dict[str, dict[str, object]] = {
        "homeserver": {"url": homeserver_url},
        "bot": {
            "user_id": user_id,
            "password": password,
            "device_id": "PATCHWORKTEST",
            "sync_timeout": "5s",
            "undecryptable_grace": "20s",
        },
        "storage": {"path": str(storage), "pickle_key": "test-pickle-key-0123456789"},
        "policy": {"allowed_servers": list(allowed_servers), "admins": list(admins)},
        "logging": {"level": "INFO"},
    }
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class BotProcess:
    """One bot process; start() waits for its first completed sync."""

    def __init__(self, config_path: Path, log_path: Path, *, user_id: str) -> None:
        self.user_id = user_id
        self.config_path = config_path
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self, timeout: float = 60) -> None:
        self._ready = asyncio.Event()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devkit.testbot", "run", "--config", str(self.config_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self._reader = asyncio.create_task(self._read_log(self.process))
        waiter = asyncio.create_task(self._ready.wait())
        exited = asyncio.create_task(self.process.wait())
        done, _ = await asyncio.wait({waiter, exited}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        exited.cancel()
        if not self._ready.is_set():
            await self.kill()
            raise RuntimeError(f"bot did not become ready; log:\n{self.log_tail()}")

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            while True:
                line = await process.stderr.readline()
                if not line:
                    return
                text = line.decode("utf-8", "replace")
                log.write(text)
                log.flush()
                if READY_LINE in text:
                    self._ready.set()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "".join(self.log_path.read_text(encoding="utf-8").splitlines(True)[-lines:])

    async def stop(self, timeout: float = 20) -> int:
        """SIGTERM, as an operator's service manager would; returns the exit code."""
        return await self._end(signal.SIGTERM, timeout)

    async def kill(self) -> int:
        """SIGKILL: a crash, with no chance to clean up."""
        return await self._end(signal.SIGKILL, 10)

    async def _end(self, signum: int, timeout: float) -> int:
        process = self.process
        if process is None:
            return 0
        if process.returncode is None:
            process.send_signal(signum)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self.process = None
        assert process.returncode is not None
        return process.returncode
