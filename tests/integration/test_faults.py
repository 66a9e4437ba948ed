"""Faults at Synapse's default settings: rate limits (429) and a homeserver outage.

This module runs its own Synapse with the default rate limits, as operators run it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from bot.devserver import LocalSynapse, free_port
from tests.integration.conftest import BotFactory, PractitionerFactory
from tests.integration.replies import reply_counts
from tests.integration.test_bot_trunk import _room_with_bot, _settle, _wait_for_replies


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def default_synapse(tmp_path_factory: object) -> AsyncIterator[LocalSynapse]:
    folder = tmp_path_factory.mktemp("synapse-defaults")  # type: ignore[attr-defined]
    server = LocalSynapse(folder, port=free_port(), relaxed_rate_limits=False)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def factories(
    default_synapse: LocalSynapse, tmp_path: Path
) -> AsyncIterator[tuple[PractitionerFactory, BotFactory]]:
    people = PractitionerFactory(default_synapse, tmp_path / "clients")
    bots = BotFactory(default_synapse, tmp_path / "bots")
    try:
        yield people, bots
    finally:
        for bot in bots.started:
            await bot.stop()
        await people.close_all()


async def test_rate_limited_replies_are_waited_out_and_sent_once(
    factories: tuple[PractitionerFactory, BotFactory],
) -> None:
    people, bots = factories
    alice = await people("alice")
    bot = await bots()
    room_id = await _room_with_bot(alice, bot.user_id)

    # Synapse's default rc_message allows a burst of 10, then 0.2 messages a second per user.
    burst = [await alice.send_text(room_id, "!help") for _ in range(14)]
    await _wait_for_replies(alice, room_id, bot.user_id, burst, timeout=120)
    await _settle(alice, room_id, bot.user_id)

    counts = reply_counts(alice.notices(room_id, bot.user_id))
    assert [counts[event_id] for event_id in burst] == [1] * len(burst)
    limited = bot.log_tail(400).count("Got 429 response")
    assert limited >= 1, "the burst must actually have hit the rate limit"
    # Sends are one at a time and each 429 is waited out for as long as Synapse asks, so there
    # is no storm of retries: fewer refusals than replies.
    assert limited <= len(burst), f"{limited} rate-limit refusals for {len(burst)} replies"


async def test_homeserver_outage_is_backed_off_and_survived(
    default_synapse: LocalSynapse,
    factories: tuple[PractitionerFactory, BotFactory],
) -> None:
    people, bots = factories
    alice = await people("alice")
    bot = await bots()
    room_id = await _room_with_bot(alice, bot.user_id)
    before_outage = bot.log_tail(2000).count("sync failed")

    await default_synapse.stop()
    await asyncio.sleep(8)
    await default_synapse.start()

    failures = bot.log_tail(2000).count("sync failed") - before_outage
    assert 1 <= failures <= 6, f"{failures} failed syncs in 8 s: expected a back-off"
    assert bot.process is not None
    assert bot.process.returncode is None, "the bot must survive the outage"

    command = await alice.send_text(room_id, "!help")
    await _wait_for_replies(alice, room_id, bot.user_id, [command], timeout=90)
    await _settle(alice, room_id, bot.user_id)
    assert reply_counts(alice.notices(room_id, bot.user_id))[command] == 1
    delays = re.findall(r"sync failed", bot.log_tail(2000))
    assert delays, "the outage must have been noticed"
