"""Element's own crypto stack (matrix-js-sdk, Rust crypto) in "only signed devices" mode talks
to the bot both ways: the bot decrypts the client's command and the client decrypts the reply."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import pytest

from bot.devserver import LocalSynapse
from tests.integration.conftest import BotFactory, MakePractitioner

INTEROP = Path(__file__).resolve().parent.parent / "interop"


async def test_element_client_in_only_signed_devices_mode_gets_a_decryptable_reply(
    synapse: LocalSynapse,
    make_practitioner: MakePractitioner,
    make_bot: BotFactory,
    tmp_path: Path,
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed for the Element interop test"
    assert (INTEROP / "node_modules" / "matrix-js-sdk").is_dir(), (
        "run `make interop` (part of `make test`) to install matrix-js-sdk"
    )
    owner = await make_practitioner("owner")
    bot = await make_bot()
    element_password = uuid.uuid4().hex
    element_user = await synapse.register_user(
        f"element-{uuid.uuid4().hex[:8]}", element_password
    )
    room_id = await owner.create_encrypted_room(invite=[bot.user_id, element_user])
    await owner.wait_for_membership(room_id, bot.user_id, "join")

    config = tmp_path / "interop.json"
    config.write_text(
        json.dumps(
            {
                "homeserver": synapse.base_url,
                "user_id": element_user,
                "password": element_password,
                "room_id": room_id,
                "bot_user_id": bot.user_id,
                "text": "!help",
                "timeout_seconds": 60,
                "isolation": "only_signed",
                "require_in_reply_to": True,
            }
        ),
        encoding="utf-8",
    )
    process = await asyncio.create_subprocess_exec(
        node, str(INTEROP / "client.mjs"), str(config),
        cwd=INTEROP,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        pytest.fail("the Element-like client did not finish in 90 s")
    lines = stdout.decode().strip().splitlines()
    assert lines, f"no result from the client; stderr:\n{stderr.decode()[-3000:]}"
    result = json.loads(lines[-1])
    assert result["ok"], f"{result}\nstderr:\n{stderr.decode()[-3000:]}\n{bot.log_tail()}"
    assert process.returncode == 0
    # The bot could read the command: its reply points at the event the client sent.
    assert result["reply_in_reply_to"] == result["sent_event_id"]
    assert result["reply_msgtype"] == "m.notice"
    assert "!help" in result["reply_body"]
    assert "<code>" in result["reply_formatted_body"]
    # The client saw the bot's device as cross-signed by its owner.
    assert result["reply_sender_device_verified_by_owner"] is True
