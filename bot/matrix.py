"""The bot's Matrix connection: login with a stable device, the persistent E2EE store,
device keys and cross-signing, and the narrow gateway that commands and rooms use."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinedMembersResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    LoginResponse,
    ProfileGetDisplayNameResponse,
    ProfileGetResponse,
    RoomGetStateResponse,
    WhoamiResponse,
)
from nio.store import DefaultStore

from bot.config import Config
from bot.crosssigning import ensure_cross_signed
from bot.direct_chats import direct_rooms_of
from bot.files import create_private_file, tighten_tree, write_private

log = logging.getLogger(__name__)

PROFILE_TIMEOUT = timedelta(seconds=5)
SESSION_FILE = "session.json"
CROSS_SIGNING_FILE = "cross_signing_keys.json"
E2EE_STORE_DIR = "e2ee"


def e2ee_store_file(config: Config) -> Path:
    """nio's SQLite store, named as nio names it (`MatrixStore.database_name`)."""
    return config.storage.path / E2EE_STORE_DIR / f"{config.bot.user_id}_{config.bot.device_id}.db"


class E2EEStore(DefaultStore):
    """nio's store, but a sync that brings no encrypted room writes nothing: nio's own opens a
    transaction and looks the account up after every sync (about a millisecond of the event
    loop on a small server, before the bot sees the sync's events)."""

    def save_encrypted_rooms(self, rooms: Iterable[str]) -> None:
        rooms = set(rooms)
        if rooms:
            super().save_encrypted_rooms(rooms)


class LoginError(Exception):
    """The bot could not log in; the message says what the operator should check."""


def _read_session(path: Path) -> dict[str, str] | None:
    if not path.exists():
        return None
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _make_client(config: Config) -> AsyncClient:
    store = config.storage.path / E2EE_STORE_DIR
    store.mkdir(parents=True, exist_ok=True, mode=0o700)
    # nio's SQLite would create the store with the umask's mode (often 0644).
    create_private_file(e2ee_store_file(config))
    client_config = AsyncClientConfig(
        encryption_enabled=True,
        store=E2EEStore,
        # The sync token lives in our database, committed with the effects of the events.
        store_sync_tokens=False,
        pickle_key=config.storage.pickle_key.get_secret_value(),
        # 429s are waited out for as long as the server asks (None = no cap).
        max_limit_exceeded=None,
        # Connection failures surface to our own loops, which back off and retry.
        max_timeouts=2,
        request_timeout=config.bot.sync_timeout.total_seconds() + 30,
    )
    return AsyncClient(
        config.homeserver.url,
        config.bot.user_id,
        device_id=config.bot.device_id,
        store_path=str(store),
        config=client_config,
    )


async def connect(config: Config) -> AsyncClient:
    """Log in (reusing the saved access token when it still works) and make the device usable.

    The device id is fixed by configuration so the E2EE store and the cross-signature stay
    valid across restarts.
    """
    client = _make_client(config)
    session_path = config.storage.path / SESSION_FILE
    try:
        await _login(client, config, session_path)
        for path in await asyncio.to_thread(tighten_tree, config.storage.path):
            log.warning("%s was readable by other users; now readable by the bot only", path)
        if client.should_upload_keys:
            response = await client.keys_upload()
            log.info("uploaded device keys: %s", type(response).__name__)
        password = config.bot.password.get_secret_value() if config.bot.password else None
        await ensure_cross_signed(
            client,
            config.storage.path / CROSS_SIGNING_FILE,
            password=password,
            reset=config.bot.reset_cross_signing,
        )
        await _ensure_display_name(client, config.bot.display_name)
    except BaseException:
        await client.close()
        raise
    return client


async def _login(client: AsyncClient, config: Config, session_path: Path) -> None:
    user_id, device_id = config.bot.user_id, config.bot.device_id
    if config.bot.access_token is not None:
        client.restore_login(user_id, device_id, config.bot.access_token.get_secret_value())
        await _check_token(client, user_id)
        return
    saved = await asyncio.to_thread(_read_session, session_path)
    if saved is not None:
        if saved.get("user_id") == user_id and saved.get("device_id") == device_id:
            client.restore_login(user_id, device_id, saved["access_token"])
            whoami = await client.whoami()
            if isinstance(whoami, WhoamiResponse) and whoami.user_id == user_id:
                log.info("restored session for %s device %s", user_id, device_id)
                return
            log.info("saved access token no longer works; logging in again")
            client.access_token = ""
    assert config.bot.password is not None  # the config model guarantees one of the two
    response = await client.login(
        config.bot.password.get_secret_value(), device_name=config.bot.display_name
    )
    if not isinstance(response, LoginResponse):
        raise LoginError(
            f"could not log in as {user_id} at {config.homeserver.url}: "
            f"{getattr(response, 'message', response)}"
        )
    if response.device_id != device_id:
        raise LoginError(
            f"the homeserver gave device {response.device_id}, expected {device_id}"
        )
    await asyncio.to_thread(
        write_private,
        session_path,
        json.dumps(
            {"user_id": user_id, "device_id": device_id, "access_token": response.access_token}
        ),
    )
    log.info("logged in as %s device %s", user_id, device_id)


async def _check_token(client: AsyncClient, user_id: str) -> None:
    whoami = await client.whoami()
    if not isinstance(whoami, WhoamiResponse):
        raise LoginError(f"bot.access_token was refused: {getattr(whoami, 'message', whoami)}")
    if whoami.user_id != user_id:
        raise LoginError(f"bot.access_token belongs to {whoami.user_id}, not {user_id}")


async def _ensure_display_name(client: AsyncClient, display_name: str) -> None:
    current = await client.get_displayname(client.user_id)
    if isinstance(current, ProfileGetDisplayNameResponse) and current.displayname == display_name:
        return
    await client.set_displayname(display_name)


class KeySharingIncomplete(ConnectionError):
    """Some member devices did not get the room key; the send is retried with a new one."""


async def share_room_key(client: AsyncClient, room_id: str) -> None:
    """Make sure every member device holds the room's megolm key before a send, and leave
    nio nothing to do before it encrypts.

    nio's own path is not trusted: it marks a session shared even when its to-device requests
    failed, and skips a device whose one-time key could not be claimed, and would then encrypt
    every later message with a key nobody received. Its `room_send` also awaits a member list
    before it checks the session, so the sync loop could replace the key meanwhile and nio
    would share the new one unchecked. So here the member list, the device keys and the Olm
    sessions are fetched first; a share that did not reach every device is thrown away, so
    the next try shares a new key; and `room_send`, called right after, finds nothing left to
    await before it encrypts."""
    olm = client.olm
    room = client.rooms.get(room_id)
    if olm is None or room is None:
        return
    if not room.members_synced:
        members = await client.joined_members(room_id)
        if not isinstance(members, JoinedMembersResponse):
            raise KeySharingIncomplete(f"could not read the members of {room_id}: {members}")
    await refresh_device_keys(client, strict=True)
    if not olm.should_share_group_session(room_id):
        return
    without_session = client.get_missing_sessions(room_id)
    if without_session:
        claimed = await client.keys_claim(without_session)
        if not isinstance(claimed, KeysClaimResponse):
            raise KeySharingIncomplete(f"could not claim one-time keys: {claimed}")
    await client.share_group_session(room_id, ignore_unverified_devices=True)
    session = olm.outbound_group_sessions.get(room_id)
    if session is None:
        return
    missing = _key_recipients(client, room_id) - session.users_shared_with - session.users_ignored
    if missing:
        client.invalidate_outbound_session(room_id)
        raise KeySharingIncomplete(f"the room key did not reach {len(missing)} device(s)")


async def refresh_members(client: AsyncClient, room_id: str) -> None:
    """Drop from nio's member list everyone the homeserver says is no longer in the room.

    After the bot removed someone, a sync that was already on its way can put them back in
    nio's list for a moment; a key shared then would reach them. The homeserver's current state
    is the truth, so it is asked before encrypting, and a room key they may hold is replaced.
    """
    room = client.rooms.get(room_id)
    if room is None:
        return
    response = await client.room_get_state(room_id)
    if not isinstance(response, RoomGetStateResponse):
        raise KeySharingIncomplete(f"could not read the members of {room_id}: {response}")
    present = {
        event.get("state_key")
        for event in response.events
        if event.get("type") == "m.room.member"
        and event.get("content", {}).get("membership") in ("join", "invite")
    }
    for user_id in [user_id for user_id in room.users if user_id not in present]:
        forget_member(client, room_id, user_id)


def forget_member(client: AsyncClient, room_id: str, user_id: str) -> None:
    """The bot removed `user_id`: stop counting them as a member at once (not only when the
    sync says so), and never encrypt for them again with a key they may have received."""
    room = client.rooms.get(room_id)
    if room is not None and room.remove_member(user_id):
        log.info("dropped a removed member's devices from the room's key sharing")
    if client.olm is not None:
        client.invalidate_outbound_session(room_id)


def _key_recipients(client: AsyncClient, room_id: str) -> set[tuple[str, str]]:
    """The member devices nio shares a room key with: active, not ours, with an Olm session."""
    olm = client.olm
    room = client.rooms.get(room_id)
    if olm is None or room is None:
        return set()
    return {
        (user_id, device.id)
        for user_id in room.users
        for device in olm.device_store.active_user_devices(user_id)
        if device.id != client.device_id
        and not olm.is_device_blacklisted(device)
        and olm.session_store.get(device.curve25519) is not None
    }


async def refresh_device_keys(client: AsyncClient, *, strict: bool = False) -> None:
    """Do the key housekeeping that nio's sync_forever would do after each sync. `strict`,
    before a send: a failed device-key query raises, as a member whose devices are not known
    would not get the room key."""
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        response = await client.keys_query()
        if not isinstance(response, KeysQueryResponse):
            if strict:
                raise KeySharingIncomplete(f"could not query device keys: {response}")
            log.warning("key query failed: %s", response)
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    await client.send_to_device_messages()


ROOM_POLL_SECONDS = 0.05


async def wait_for_room(client: AsyncClient, room_id: str, within: float) -> bool:
    """Wait up to `within` seconds for the sync loop to bring `room_id` into the client's
    rooms (a room the bot has just created or joined); True once it is there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while room_id not in client.rooms:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(ROOM_POLL_SECONDS)
    return True


def _not_found(response: ErrorResponse) -> bool:
    transport = getattr(response, "transport_response", None)
    return response.status_code == "M_NOT_FOUND" or getattr(transport, "status", None) == 404


class NioGateway:
    """What commands and rooms may ask of Matrix, answered without a network call: commands
    run inside the database's single write transaction, where a slow homeserver would hold up
    everything. Names come from the synced room state; whether accounts exist was looked up
    before the transaction began (`look_up_accounts`)."""

    def __init__(
        self, client: AsyncClient, accounts: Mapping[str, bool | None] | None = None
    ) -> None:
        self._client = client
        self._accounts = dict(accounts or {})

    async def get_display_name(self, user_id: str, room_id: str | None = None) -> str | None:
        """The command's own room first: looking through every room the bot is in, for each
        member of a `!whois`, grows with the council (12,000 look-ups at 1,000 rooms)."""
        rooms = self._client.rooms
        own = rooms.get(room_id) if room_id is not None else None
        for room in itertools.chain([own] if own is not None else [], rooms.values()):
            member = room.users.get(user_id)
            if member is not None and member.display_name:
                return str(member.display_name)
        return None

    async def direct_room(self, user_id: str) -> str | None:
        return direct_rooms_of(self._client)(user_id)

    async def user_exists(self, user_id: str) -> bool | None:
        """True or False as the user's homeserver answered; None if it did not answer."""
        if user_id not in self._accounts:
            log.warning("no account look-up was made for %s before the command ran", user_id)
            return None
        return self._accounts[user_id]

    async def look_up_accounts(self, user_ids: Iterable[str]) -> NioGateway:
        """A gateway that knows whether these accounts exist: profile look-ups made now,
        concurrently and with a short timeout, outside any database transaction."""
        wanted = sorted(set(user_ids))
        found = await asyncio.gather(*(self._exists(user_id) for user_id in wanted))
        return NioGateway(self._client, {**self._accounts, **dict(zip(wanted, found, strict=True))})

    async def _exists(self, user_id: str) -> bool | None:
        """Only "not found" (M_NOT_FOUND, or a 404: Synapse answers a missing local user with
        404 M_UNKNOWN) means there is no such user. Any other error (Synapse answers 502
        M_UNKNOWN when the user's homeserver cannot be reached), a timeout or a connection
        failure means we cannot tell: None."""
        try:
            response = await asyncio.wait_for(
                self._client.get_profile(user_id), PROFILE_TIMEOUT.total_seconds()
            )
        except (TimeoutError, OSError, aiohttp.ClientError):
            log.info("profile look-up did not complete in time")
            return None
        if isinstance(response, ProfileGetResponse):
            return True
        if isinstance(response, ErrorResponse) and _not_found(response):
            return False
        log.info("profile look-up not answered: %s", getattr(response, "status_code", response))
        return None

    async def room_members(self, room_id: str) -> dict[str, str]:
        """Current members (joined and invited) as the bot's synced room state knows them."""
        room = self._client.rooms.get(room_id)
        if room is None:
            return {}
        members = {user: "join" for user in room.users}
        members.update({user: "invite" for user in room.invited_users})
        return members
