"""Key verification requests to the bot are cancelled at once with a reason code and explained
in the direct chat, never accepted; `patchwork fingerprint` prints the identity to check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from nio import Event, KeyVerificationStart, ToDeviceEvent

from bot.cli import main
from bot.crosssigning import CrossSigningKeys
from bot.matrix import CROSS_SIGNING_FILE
from bot.verification import CANCEL, CANCEL_CODE, VerificationRefuser, refuse_in_room
from storage import Database
from tests.unit.test_team_commands_support import DM, TEACHER, outbox

pytest_plugins = ("tests.unit.test_team_commands_support",)

BOT = "@patchwork:council.example"


def room_event(event_type: str, content: dict[str, Any], event_id: str = "$req") -> Any:
    return Event.parse_decrypted_event(
        {
            "type": event_type,
            "event_id": event_id,
            "sender": TEACHER,
            "origin_server_ts": 1,
            "content": content,
        }
    )


REQUEST = {
    "msgtype": "m.key.verification.request",
    "body": "Tara is asking to verify your key",
    "from_device": "TARADEVICE",
    "methods": ["m.sas.v1"],
    "to": BOT,
}


async def test_an_in_room_request_is_cancelled_and_explained_once(db: Database) -> None:
    for _ in range(2):  # the replay after a crash queues nothing more
        async with db.transaction() as tx:
            assert await refuse_in_room(tx, DM, room_event("m.room.message", REQUEST))
    cancel, explanation = await outbox(db)
    assert cancel.room_id == DM
    assert cancel.payload["type"] == CANCEL
    assert cancel.payload["content"] == {
        "code": CANCEL_CODE,
        "reason": cancel.payload["content"]["reason"],
        "m.relates_to": {"rel_type": "m.reference", "event_id": "$req"},
    }
    assert "cross-signing identity" in cancel.payload["content"]["reason"]
    content = explanation.payload["content"]
    assert (explanation.room_id, content["msgtype"]) == (DM, "m.notice")
    assert "I cancelled the verification request" in content["body"]
    assert "`patchwork fingerprint`" in content["body"]
    assert "IT team" in content["body"]


async def test_a_start_without_a_request_is_cancelled_and_other_events_are_not(
    db: Database,
) -> None:
    start = room_event(
        "m.key.verification.start",
        {"from_device": "D", "method": "m.sas.v1",
         "m.relates_to": {"rel_type": "m.reference", "event_id": "$earlier"}},
        event_id="$start",
    )
    text = room_event("m.room.message", {"msgtype": "m.text", "body": "hello"}, "$hi")
    async with db.transaction() as tx:
        assert await refuse_in_room(tx, DM, start)
        assert not await refuse_in_room(tx, DM, text)
    cancel, _ = await outbox(db)
    assert cancel.payload["content"]["m.relates_to"]["event_id"] == "$earlier"


class FakeClient:
    user_id = BOT
    olm = None

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def to_device(self, message: Any) -> None:
        self.sent.append(message)


async def test_to_device_requests_are_cancelled_and_explained_in_the_direct_chat(
    db: Database,
) -> None:
    client = FakeClient()
    refuser = VerificationRefuser(client, db, {TEACHER: DM}.get)  # type: ignore[arg-type]
    request = ToDeviceEvent.parse_event(
        {
            "type": "m.key.verification.request",
            "sender": TEACHER,
            "content": {"from_device": "TARADEVICE", "methods": ["m.sas.v1"],
                        "transaction_id": "T1", "timestamp": 1},
        }
    )
    start = KeyVerificationStart.from_dict(
        {
            "type": "m.key.verification.start",
            "sender": "@nobody:elsewhere.example",
            "content": {"from_device": "X", "method": "m.sas.v1", "transaction_id": "T2",
                        "key_agreement_protocols": ["curve25519"], "hashes": ["sha256"],
                        "message_authentication_codes": ["hkdf-hmac-sha256"],
                        "short_authentication_string": ["emoji"]},
        }
    )
    own = ToDeviceEvent.parse_event(
        {"type": "m.key.verification.request", "sender": BOT,
         "content": {"from_device": "B", "methods": [], "transaction_id": "T3"}}
    )
    assert await refuser.refuse_to_device([request, start, own]) == 2
    assert await refuser.refuse_to_device([request]) == 1  # a replayed response
    recipients = [(m.type, m.recipient, m.recipient_device) for m in client.sent]
    assert recipients == [
        (CANCEL, TEACHER, "TARADEVICE"),
        (CANCEL, "@nobody:elsewhere.example", "X"),
        (CANCEL, TEACHER, "TARADEVICE"),
    ]
    assert client.sent[0].content["transaction_id"] == "T1"
    assert client.sent[0].content["code"] == CANCEL_CODE
    # One explanation, in the requester's direct chat; none for someone without one.
    [explanation] = await outbox(db)
    assert explanation.room_id == DM
    assert "I cancelled the verification request" in explanation.payload["content"]["body"]


def test_fingerprint_prints_the_master_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "homeserver": {"url": "http://127.0.0.1:9"},
        "bot": {"user_id": BOT, "password": "secret"},
        "storage": {"path": str(tmp_path / "data"), "pickle_key": "0123456789abcdef"},
        "policy": {"allowed_servers": ["council.example"]},
    }
    path = tmp_path / "patchwork.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["fingerprint", "--config", str(path)]) == 2
    assert "start the bot once" in capsys.readouterr().err
    (tmp_path / "data").mkdir(mode=0o700)
    keys = CrossSigningKeys.load_or_create(tmp_path / "data" / CROSS_SIGNING_FILE)
    assert main(["fingerprint", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"Master cross-signing key: {keys.master.public_key}" in out
    assert keys.master.public_key[:4] + " " + keys.master.public_key[4:8] in out
