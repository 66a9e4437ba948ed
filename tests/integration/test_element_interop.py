"""Element's own crypto stack (matrix-js-sdk, Rust crypto) in "only signed devices" mode talks
to the bot both ways: the bot decrypts the client's command and the client decrypts the reply."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.devserver import LocalSynapse
from devkit.clock import CLOCK_FILE_ENV
from devkit.practitioner import Practitioner
from tests.integration.conftest import BotFactory, MakePractitioner
from tests.integration.test_family_rooms import activate, create_family
from tests.integration.test_prompts import FAST_SWEEPS, BotClock

INTEROP = Path(__file__).resolve().parent.parent / "interop"


async def run_element_client(
    tmp_path: Path, config: dict[str, object]
) -> tuple[dict[str, Any], str]:
    """Run the matrix-js-sdk client with `config`; its JSON result and the tail of its stderr."""
    node = shutil.which("node")
    assert node is not None, "node is needed for the Element interop test"
    assert (INTEROP / "node_modules" / "matrix-js-sdk").is_dir(), (
        "run `make interop` (part of `make test`) to install matrix-js-sdk"
    )
    path = tmp_path / f"interop-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        node, str(INTEROP / "client.mjs"), str(path),
        cwd=INTEROP,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    limit = float(str(config.get("timeout_seconds", 60))) + 30
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        process.kill()
        pytest.fail(f"the Element-like client did not finish in {limit:g} s")
    lines = stdout.decode().strip().splitlines()
    tail = stderr.decode()[-3000:]
    assert lines, f"no result from the client; stderr:\n{tail}"
    result: dict[str, Any] = json.loads(lines[-1])
    if result.get("ok"):
        assert process.returncode == 0
    return result, tail


async def element_account(synapse: LocalSynapse) -> tuple[str, str]:
    """A fresh account for the Element-like client: its user id and password."""
    password = uuid.uuid4().hex
    user_id = await synapse.register_user(f"element-{uuid.uuid4().hex[:8]}", password)
    return user_id, password


def element_config(
    synapse: LocalSynapse,
    user_id: str,
    password: str,
    room_id: str,
    bot_user_id: str,
    text: str,
    *,
    timeout: int,
    **options: bool,
) -> dict[str, object]:
    """What the client does: log in, send `text` in `room_id`, wait for the bot's reply, in
    Element's "only signed devices" mode; `options` as client.mjs describes them."""
    return {
        "homeserver": synapse.base_url,
        "user_id": user_id,
        "password": password,
        "room_id": room_id,
        "bot_user_id": bot_user_id,
        "text": text,
        "timeout_seconds": timeout,
        "isolation": "only_signed",
        "require_in_reply_to": True,
        **options,
    }


async def test_element_client_in_only_signed_devices_mode_gets_a_decryptable_reply(
    synapse: LocalSynapse,
    make_practitioner: MakePractitioner,
    make_bot: BotFactory,
    tmp_path: Path,
) -> None:
    owner = await make_practitioner("owner")
    bot = await make_bot()
    element_user, element_password = await element_account(synapse)
    room_id = await owner.create_encrypted_room(invite=[bot.user_id, element_user])
    await owner.wait_for_membership(room_id, bot.user_id, "join")

    result, stderr = await run_element_client(
        tmp_path,
        element_config(
            synapse, element_user, element_password, room_id, bot.user_id, "!help",
            timeout=60,
        ),
    )
    assert result["ok"], f"{result}\nstderr:\n{stderr}\n{bot.log_tail()}"
    # The bot could read the command: its reply points at the event the client sent.
    assert result["reply_in_reply_to"] == result["sent_event_id"]
    assert result["reply_msgtype"] == "m.notice"
    assert "!help" in result["reply_body"]
    assert "<code>" in result["reply_formatted_body"]
    # The client saw the bot's device as cross-signed by its owner.
    assert result["reply_sender_device_verified_by_owner"] is True


async def test_a_prompt_notifies_in_element_and_a_reply_does_not(
    synapse: LocalSynapse,
    make_practitioner: MakePractitioner,
    make_bot: BotFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Element decides on the decrypted event whether to notify (the server sees only
    m.room.encrypted): the still-involved question, an m.text that mentions the practitioner,
    notifies them; the bot's m.notice reply to a command does not."""
    clock = BotClock(tmp_path / "clock.txt")
    monkeypatch.setenv(CLOCK_FILE_ENV, str(clock.path))
    clock.set(2026, 6, 1, 10, 0)  # a Monday in working hours
    bot = await make_bot(extra=FAST_SWEEPS)
    lead = await make_practitioner("lead")
    reference = "LDC-2026-0777"
    room_id, _ = await create_family(lead, bot, reference)
    await activate(lead, bot, room_id)
    element_user, element_password = await element_account(synapse)
    await lead.ask(room_id, f"!invite {element_user} Class teacher", bot=bot.user_id)

    async def move_the_clock_once_joined() -> None:
        await lead.wait_for_membership(room_id, element_user, "join", timeout=90)
        await asyncio.sleep(2)  # the client sends its command first
        clock.set(2026, 7, 27, 11, 0)  # eight weeks on, in working hours: the prompts are due

    mover = asyncio.create_task(move_the_clock_once_joined())
    try:
        result, stderr = await run_element_client(
            tmp_path,
            element_config(
                synapse, element_user, element_password, room_id, bot.user_id, "!whois",
                timeout=90, wait_for_mention=True, wait_for_poll=True,
            ),
        )
    finally:
        await mover
    assert result["ok"], f"{result}\nstderr:\n{stderr}\n{bot.log_tail()}"
    assert result["reply_msgtype"] == "m.notice"
    assert result["reply_push"]["notify"] is False, "a reply to a command stays quiet"
    [prompt] = [m for m in result["mentions"] if m["msgtype"] == "m.text"]
    assert "are you still involved" in prompt["body"]
    assert prompt["notify"] is True, "the practitioner's client notifies them of the prompt"
    assert prompt["highlight"] is True
    # The prompt is followed by a poll Element shows as one-tap buttons; the prompt (an m.text)
    # is what notifies, so the poll needs to decrypt but not to notify.
    localpart = element_user.removeprefix("@").split(":")[0]
    [poll] = [poll for poll in result["polls"] if localpart in str(poll["question"])]
    print(f"\nthe poll as the client saw it, with its push decision: {poll}")
    assert poll["question"].endswith("are you still involved with this family?")
    assert [answer[0] for answer in poll["answers"]] == ["\u2705", "\u274c"]


async def test_verify_user_in_element_is_cancelled_at_once_with_an_explanation(
    synapse: LocalSynapse,
    make_bot: BotFactory,
    tmp_path: Path,
) -> None:
    """Element's "Verify User" on the bot (matrix-js-sdk's requestVerificationDM in the direct
    chat) used to wait for ever; now the request ends cancelled by the bot within seconds,
    with the reason code `m.user`, and the bot explains why in the chat."""
    bot = await make_bot()
    element_user, element_password = await element_account(synapse)
    # The same person on a second device opens the direct chat, as Element's "Start chat" does.
    other_device = Practitioner(
        synapse.base_url, element_user, element_password, tmp_path / "other-device"
    )
    await other_device.login()
    try:
        dm = await other_device.create_encrypted_room(invite=[bot.user_id])
        await other_device.wait_for_membership(dm, bot.user_id, "join")
    finally:
        await other_device.close()

    result, stderr = await run_element_client(
        tmp_path,
        element_config(
            synapse, element_user, element_password, dm, bot.user_id, "!help",
            timeout=60, verify_bot=True,
        ),
    )
    assert result["ok"], f"{result}\nstderr:\n{stderr}\n{bot.log_tail()}"
    verification = result["verification"]
    print(f"\nElement's verification request ended {verification}")
    assert verification["phase"] == "Cancelled"
    assert verification["cancellation_code"] == "m.user"
    assert verification["cancelled_by"] == bot.user_id
    assert verification["answered_ms"] < 10_000
    assert verification["explanation"]["msgtype"] == "m.notice"
    assert "patchwork fingerprint" in verification["explanation"]["body"]
