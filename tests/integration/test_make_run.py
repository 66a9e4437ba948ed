"""`make run` as README.md describes it: a local Synapse, the bot, a demo account; Ctrl-C stops
both; a second run reuses the same accounts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from pathlib import Path

from bot.devserver import free_port
from devkit.practitioner import Practitioner

REPO = Path(__file__).resolve().parents[2]


class MakeRun:
    def __init__(self, demo_dir: Path, port: int) -> None:
        self.demo_dir = demo_dir
        self.port = port
        self.output: list[str] = []
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 240) -> str:
        """Start `make run`; return the demo password once the bot is ready."""
        env = dict(
            os.environ,
            PATCHWORK_DEMO_DIR=str(self.demo_dir),
            PATCHWORK_DEMO_PORT=str(self.port),
            PYTHONUNBUFFERED="1",
        )
        self.process = await asyncio.create_subprocess_exec(
            "make", "--no-print-directory", "run",
            cwd=REPO, env=env, start_new_session=True,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        await asyncio.wait_for(self._read_until("Patchwork is ready"), timeout)
        text = "".join(self.output)
        match = re.search(r"Password:\s+(\S+)", text)
        assert match, text
        return match.group(1)

    async def _read_until(self, marker: str) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise AssertionError("make run ended early:\n" + "".join(self.output))
            self.output.append(line.decode("utf-8", "replace"))
            if marker in self.output[-1]:
                return

    async def interrupt(self, timeout: float = 45) -> int:
        """Ctrl-C: SIGINT to the whole foreground process group, as a terminal sends it."""
        assert self.process is not None
        assert self.process.stdout is not None
        os.killpg(self.process.pid, signal.SIGINT)
        rest = await asyncio.wait_for(self.process.stdout.read(), timeout)
        self.output.append(rest.decode("utf-8", "replace"))
        return await asyncio.wait_for(self.process.wait(), timeout)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_make_run_starts_synapse_and_the_bot_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    port = free_port()
    demo = MakeRun(tmp_path / "demo", port)
    password = await demo.start()
    assert "Homeserver:  http://127.0.0.1:" in "".join(demo.output)

    person = Practitioner(f"http://127.0.0.1:{port}", "@demo:localhost", password,
                          tmp_path / "element")
    try:
        await person.login()
        room_id = await person.create_encrypted_room(invite=["@patchwork:localhost"])
        await person.wait_for_membership(room_id, "@patchwork:localhost", "join")
        reply = await person.ask(room_id, "!help", bot="@patchwork:localhost")
        assert reply.decrypted
        assert "!help" in reply.body
    finally:
        await person.close()

    await demo.interrupt()
    output = "".join(demo.output)
    assert "Traceback" not in output, output
    assert "Patchwork stopped" in output
    assert not _port_open(port), "Synapse must be stopped with the bot"

    again = MakeRun(tmp_path / "demo", port)
    assert await again.start() == password, "a second run reuses the same demo account"
    await again.interrupt()
    assert not _port_open(port)
