"""Messages whose room key is held back: what a recipient sees when a sender's client is slow to
share a megolm session, or never shares it (a flaky phone, a client that withholds keys).

`send_withheld` encrypts a message with a fresh outbound megolm session that is shared with
nobody, and remembers the session key as it was before the message (index 0), so
`share_late` can send it afterwards, Olm-encrypted to one device, exactly as a client's
m.room_key would. The practitioner's next ordinary message starts a new, properly shared
session again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from nio import RoomSendResponse, ToDeviceError, ToDeviceMessage
from nio.api import Api

from devkit.practitioner import MEGOLM, HarnessError, Practitioner


@dataclass(frozen=True)
class WithheldKey:
    """A megolm session key nobody has received yet, and the message it encrypts."""

    room_id: str
    session_id: str
    session_key: str
    event_id: str


async def send_withheld(person: Practitioner, room_id: str, body: str) -> WithheldKey:
    """Send an m.text encrypted with a megolm session whose key goes to no device."""
    client = person.client
    olm = client.olm
    if olm is None:
        raise HarnessError(f"{person.user_id} has no encryption")
    await person.wait_for_sync()
    async with person._key_lock:
        olm.create_outbound_group_session(room_id)
        session = olm.outbound_group_sessions[room_id]
        session_key = str(session.session_key)  # before the first message: index 0
        session.shared = True  # so nio encrypts with it instead of sharing it first
        try:
            event_type, content = client.encrypt(
                room_id, "m.room.message", {"msgtype": "m.text", "body": body}
            )
            method, path, data = Api.room_send(
                client.access_token, room_id, event_type, content, f"withheld-{uuid.uuid4()}"
            )
            response = await client._send(RoomSendResponse, method, path, data, (room_id,))
        finally:
            # The next ordinary send creates and shares a new session.
            olm.outbound_group_sessions.pop(room_id, None)
    if not isinstance(response, RoomSendResponse):
        raise HarnessError(f"{person.user_id} could not send to {room_id}: {response}")
    return WithheldKey(room_id, str(session.id), session_key, str(response.event_id))


async def share_late(
    person: Practitioner, key: WithheldKey, user_id: str, device_id: str
) -> None:
    """Send the withheld room key to one device, as an Olm-encrypted m.room_key."""
    client = person.client
    olm = client.olm
    if olm is None:
        raise HarnessError(f"{person.user_id} has no encryption")
    async with person._key_lock:
        device = next(
            (d for d in olm.device_store.active_user_devices(user_id) if d.id == device_id), None
        )
        if device is None:
            raise HarnessError(f"{person.user_id} does not know the device {user_id} {device_id}")
        session = olm.session_store.get(device.curve25519)
        if session is None:
            raise HarnessError(
                f"{person.user_id} has no Olm session with {user_id} {device_id}: send it an "
                "ordinary message first"
            )
        content = olm._olm_encrypt(
            session,
            device,
            "m.room_key",
            {
                "algorithm": MEGOLM,
                "room_id": key.room_id,
                "session_id": key.session_id,
                "session_key": key.session_key,
            },
        )
        response = await client.to_device(
            ToDeviceMessage("m.room.encrypted", user_id, device_id, content)
        )
    if isinstance(response, ToDeviceError):
        raise HarnessError(f"{person.user_id} could not send the room key: {response}")
