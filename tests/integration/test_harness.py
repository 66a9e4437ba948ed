"""Proves the test harness itself against a real Synapse, before any bot test relies on it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from nio import Event, ReactionEvent, RoomMessageNotice, RoomMessageText

from bot.devserver import RELAXED_RATE_LIMITS, LocalSynapse, SynapseError
from devkit.practitioner import HarnessError, Practitioner
from tests.integration.conftest import MakePractitioner


async def test_encrypted_text_and_notice_round_trip(make_practitioner: MakePractitioner) -> None:
    alice = await make_practitioner("alice")
    bob = await make_practitioner("bob")
    room_id = await alice.create_encrypted_room(invite=[bob.user_id], name="Team TEST-1")

    await bob.wait_for_membership(room_id, bob.user_id, "invite")
    await bob.join(room_id)
    await alice.wait_for_membership(room_id, bob.user_id, "join")

    started = time.monotonic()
    sent_id = await alice.send_text(room_id, "hello from alice")
    received = await bob.wait_for_event(
        room_id,
        lambda e: isinstance(e, RoomMessageText) and e.body == "hello from alice",
        what="alice's text",
    )
    assert received.event_id == sent_id
    assert received.decrypted, "the text must have travelled encrypted"
    assert received.sender == alice.user_id

    reply_id = await bob.send_message(room_id, {"msgtype": "m.notice", "body": "hello back"})
    notice = await alice.wait_for_notice(room_id, sender=bob.user_id, after_event_id=sent_id)
    assert isinstance(notice, RoomMessageNotice)
    assert notice.event_id == reply_id
    assert notice.body == "hello back"
    assert notice.decrypted
    assert alice.notices(room_id, bob.user_id) == [notice]
    assert alice.undecryptable(room_id) == []

    reaction_id = await bob.react(room_id, sent_id, "✅")
    reaction = await alice.wait_for_event(
        room_id, lambda e: e.event_id == reaction_id, what="bob's reaction"
    )
    assert isinstance(reaction, ReactionEvent)
    assert (reaction.reacts_to, reaction.key) == (sent_id, "✅")
    assert time.monotonic() - started < 10


async def test_wait_for_notice_respects_order_and_predicate(
    make_practitioner: MakePractitioner,
) -> None:
    alice = await make_practitioner("alice")
    bob = await make_practitioner("bob")
    room_id = await alice.create_encrypted_room(invite=[bob.user_id])
    await bob.wait_for_membership(room_id, bob.user_id, "invite")
    await bob.join(room_id)
    await alice.wait_for_membership(room_id, bob.user_id, "join")

    await bob.send_message(room_id, {"msgtype": "m.notice", "body": "first"})
    await alice.wait_for_notice(room_id, sender=bob.user_id)
    marker = await alice.send_text(room_id, "marker")
    await bob.send_message(room_id, {"msgtype": "m.notice", "body": "second"})

    after = await alice.wait_for_notice(room_id, sender=bob.user_id, after_event_id=marker)
    assert after.body == "second"
    chosen = await alice.wait_for_notice(
        room_id, sender=bob.user_id, predicate=lambda n: n.body.startswith("f")
    )
    assert chosen.body == "first"
    with pytest.raises(HarnessError, match=r"notices from .* so far: \['first', 'second'\]"):
        await alice.wait_for_notice(
            room_id, sender=bob.user_id, predicate=lambda n: n.body == "third", timeout=0.5
        )


async def test_member_who_logs_in_after_the_invite_gets_the_room_key(
    synapse: LocalSynapse, make_practitioner: MakePractitioner, tmp_path: Path
) -> None:
    """Like a bot started after being invited: it had no device at alice's first key query,
    and Synapse tells alice nothing about the devices of a member who is only invited."""
    alice = await make_practitioner("alice")
    localpart = f"late-{uuid.uuid4().hex[:8]}"
    late_id = await synapse.register_user(localpart, "late-password")
    room_id = await alice.create_encrypted_room(invite=[late_id])
    first = await alice.send_text(room_id, "before the late member has any device")
    await alice.wait_for_sync()

    late = Practitioner(synapse.base_url, late_id, "late-password", tmp_path / "late")
    try:
        await late.login()
        await late.wait_for_membership(room_id, late_id, "invite")
        while_invited = await alice.send_text(room_id, "while the late member is invited")
        await late.join(room_id)
        await alice.wait_for_membership(room_id, late_id, "join")
        after_join = await alice.send_text(room_id, "after the late member joined")

        for event_id, body in (
            (while_invited, "while the late member is invited"),
            (after_join, "after the late member joined"),
        ):
            received = await late.wait_for_event(
                room_id, _decrypted_text(event_id), what=f"{body!r}, decrypted", timeout=10
            )
            assert isinstance(received, RoomMessageText)
            assert received.body == body
        # The first message was never shared with a device that did not exist yet.
        assert [e.event_id for e in late.undecryptable(room_id)] == [first]
    finally:
        await late.close()


def _decrypted_text(event_id: str) -> Callable[[Event], bool]:
    return lambda event: event.event_id == event_id and isinstance(event, RoomMessageText)


async def test_practitioner_restarts_on_its_store_with_the_same_device(
    make_practitioner: MakePractitioner,
) -> None:
    alice = await make_practitioner("alice")
    bob = await make_practitioner("bob")
    room_id = await alice.create_encrypted_room(invite=[bob.user_id])
    await bob.wait_for_membership(room_id, bob.user_id, "invite")
    await bob.join(room_id)
    await alice.wait_for_membership(room_id, bob.user_id, "join")
    device_id = bob.device_id
    await bob.close()

    again = Practitioner(
        alice.client.homeserver, bob.user_id, bob.password, bob.store_dir, device_id=device_id
    )
    try:
        await again.login()
        assert again.device_id == device_id
        await again.wait_for_membership(room_id, bob.user_id, "join")
        sent_id = await alice.send_text(room_id, "for the restarted client")
        received = await again.wait_for_event(
            room_id, _decrypted_text(sent_id), what="the text, decrypted", timeout=10
        )
        assert received.sender == alice.user_id
    finally:
        await again.close()


async def test_leave_and_kick_are_seen_by_others(make_practitioner: MakePractitioner) -> None:
    alice = await make_practitioner("alice")
    bob = await make_practitioner("bob")
    carol = await make_practitioner("carol")
    room_id = await alice.create_encrypted_room(invite=[bob.user_id, carol.user_id])
    for member in (bob, carol):
        await member.wait_for_membership(room_id, member.user_id, "invite")
        await member.join(room_id)

    await bob.leave(room_id)
    await alice.wait_for_membership(room_id, bob.user_id, "leave")
    await alice.kick(room_id, carol.user_id, reason="no longer involved")
    await carol.wait_for_membership(room_id, carol.user_id, "leave")
    await alice.wait_for_membership(room_id, carol.user_id, "leave")


async def test_registering_twice_returns_the_same_user(synapse: LocalSynapse) -> None:
    localpart = f"twice-{uuid.uuid4().hex[:8]}"
    first = await synapse.register_user(localpart, "same-password")
    second = await synapse.register_user(localpart, "same-password")
    assert first == second == f"@{localpart}:localhost"
    with pytest.raises(SynapseError, match="another password"):
        await synapse.register_user(localpart, "a-different-password")


async def test_relaxed_rate_limits_cover_every_limit_synapse_reads(tmp_path: Path) -> None:
    """If Synapse renames or adds a limiter, the tests would meet its defaults; catch that here."""
    from synapse.config.ratelimiting import RatelimitConfig, RatelimitSettings

    server = LocalSynapse(tmp_path, port=1, relaxed_rate_limits=True)
    config = RatelimitConfig(None)  # type: ignore[arg-type]
    config.read_config(server.overrides())
    limits = {
        name: value
        for name, value in vars(config).items()
        if isinstance(value, RatelimitSettings) and name != "remote_media_downloads"
    }
    assert len(limits) >= 20
    too_tight = {
        name: (value.per_second, value.burst_count)
        for name, value in limits.items()
        if value.per_second < 1000 or value.burst_count < 10000
    }
    assert too_tight == {}

    strict = LocalSynapse(tmp_path, port=1, relaxed_rate_limits=False).overrides()
    assert not any(key.startswith("rc_") for key in strict)
    assert set(RELAXED_RATE_LIMITS) <= set(server.overrides())
