"""The bot's trunk against a real Synapse: encrypted replies, invite policy, restarts, crashes."""

from __future__ import annotations

import asyncio
import re

from nio import RoomMessageNotice

from devkit.practitioner import Practitioner
from tests.integration.conftest import BotFactory, MakePractitioner
from tests.integration.replies import in_reply_to, reply_counts


async def _room_with_bot(owner: Practitioner, bot_user: str) -> str:
    room_id = await owner.create_encrypted_room(invite=[bot_user])
    await owner.wait_for_membership(room_id, bot_user, "join")
    return room_id


async def _wait_for_replies(
    person: Practitioner, room_id: str, bot_user: str, event_ids: list[str], timeout: float = 60
) -> None:
    """Wait until every event in `event_ids` has at least one reply from the bot."""

    async def all_answered() -> None:
        while True:
            counts = reply_counts(person.notices(room_id, bot_user))
            if all(counts[event_id] >= 1 for event_id in event_ids):
                return
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(all_answered(), timeout)
    except TimeoutError:
        counts = reply_counts(person.notices(room_id, bot_user))
        missing = [event_id for event_id in event_ids if counts[event_id] == 0]
        raise AssertionError(f"{len(missing)} of {len(event_ids)} commands unanswered") from None


async def _settle(person: Practitioner, room_id: str, bot_user: str) -> None:
    """A last command as a barrier: once it is answered, any duplicate would have arrived."""
    barrier = await person.send_text(room_id, "!help help")
    await _wait_for_replies(person, room_id, bot_user, [barrier])
    await asyncio.sleep(1.0)


async def test_help_is_answered_with_an_encrypted_html_notice(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    alice = await make_practitioner("alice")
    bot = await make_bot()
    room_id = await _room_with_bot(alice, bot.user_id)

    command_id = await alice.send_text(room_id, "!help")
    notice = await alice.wait_for_notice(room_id, sender=bot.user_id, after_event_id=command_id)

    assert isinstance(notice, RoomMessageNotice)
    assert notice.decrypted, "the bot's reply must be end-to-end encrypted"
    content = notice.source["content"]
    assert content["msgtype"] == "m.notice"
    assert content["format"] == "org.matrix.custom.html"
    assert "!help" in content["body"]
    assert "<code>!help</code>" in content["formatted_body"]
    assert content["m.mentions"] == {"user_ids": []}
    assert in_reply_to(notice) == command_id


async def test_unknown_and_malformed_commands_get_clear_errors_with_usage(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    alice = await make_practitioner("alice")
    bot = await make_bot()
    room_id = await _room_with_bot(alice, bot.user_id)

    unknown = await alice.ask(room_id, "!frobnicate", bot=bot.user_id)
    assert "!frobnicate" in unknown.body
    assert "!help" in unknown.body

    typo = await alice.ask(room_id, "!hlep", bot=bot.user_id)
    assert "!help" in typo.body
    assert "mean" in typo.body.lower()

    escaped = await alice.ask(room_id, "!help <b>bold</b>", bot=bot.user_id)
    formatted = escaped.source["content"]["formatted_body"]
    assert "<b>bold</b>" not in formatted
    assert "&lt;b&gt;" in formatted

    unknown_topic = await alice.ask(room_id, "!help nosuchcommand", bot=bot.user_id)
    assert "nosuchcommand" in unknown_topic.body

    unclosed = await alice.ask(room_id, '!help "whois', bot=bot.user_id)
    assert "quote" in unclosed.body.lower()
    assert "Usage: `!help [command]`" in unclosed.body


async def test_invite_from_a_server_not_allowed_is_refused(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    alice = await make_practitioner("alice")
    bot = await make_bot(allowed_servers=("example.org",))
    room_id = await alice.create_encrypted_room(invite=[bot.user_id])

    await alice.wait_for_membership(room_id, bot.user_id, "leave")
    assert alice.membership(room_id, bot.user_id) == "leave"


async def test_unencrypted_room_is_told_once_why_the_bot_will_not_work(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    alice = await make_practitioner("alice")
    bot = await make_bot()
    response = await alice.client.room_create(invite=[bot.user_id])
    room_id = str(response.room_id)
    await alice.wait_for_membership(room_id, bot.user_id, "join")

    first = await alice.ask(room_id, "!help", bot=bot.user_id)
    assert "encrypted" in first.body
    second_id = await alice.send_text(room_id, "!help")
    await asyncio.sleep(2.0)
    later = [n for n in alice.notices(room_id, bot.user_id) if n.event_id != first.event_id]
    assert later == [], "the warning is given once per room, and nothing else is answered"
    assert second_id not in reply_counts(alice.notices(room_id, bot.user_id))


async def test_commands_sent_while_the_bot_is_down_are_answered_once_after_restart(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    alice = await make_practitioner("alice")
    # A timeline limit of 2 makes the first sync after the restart "limited", so the bot must
    # page back through /messages to find all three commands.
    bot = await make_bot(extra={"bot": {"timeline_limit": 2}})
    room_id = await _room_with_bot(alice, bot.user_id)
    before = await alice.send_text(room_id, "!help")
    await _wait_for_replies(alice, room_id, bot.user_id, [before])

    assert await bot.stop() == 0
    while_down = [
        await alice.send_text(room_id, text) for text in ("!help", "!help help", "!nosuch")
    ]
    await bot.start()
    await _wait_for_replies(alice, room_id, bot.user_id, while_down)
    await _settle(alice, room_id, bot.user_id)
    paged = re.findall(r"paged back (\d+) events", bot.log_tail(400))
    assert paged, "the limited sync after the restart must be paged back"
    assert int(paged[-1]) >= 1

    counts = reply_counts(alice.notices(room_id, bot.user_id))
    for event_id in [before, *while_down]:
        assert counts[event_id] == 1, f"{event_id} answered {counts[event_id]} times"


async def test_sigkill_mid_stream_loses_and_doubles_nothing(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    alice = await make_practitioner("alice")
    bot = await make_bot()
    room_id = await _room_with_bot(alice, bot.user_id)
    total = 24
    sent: list[str] = []
    first_five_sent = asyncio.Event()

    async def stream() -> None:
        for index in range(total):
            sent.append(await alice.send_text(room_id, f"!help {'help' if index % 2 else ''}"))
            if len(sent) == 5:
                first_five_sent.set()
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(stream())
    await first_five_sent.wait()
    await _wait_for_replies(alice, room_id, bot.user_id, sent[:5])
    await bot.kill()
    killed_after = len(reply_counts(alice.notices(room_id, bot.user_id)))
    await sender
    assert killed_after < total, "the crash must come while commands are still arriving"

    await bot.start()
    await _wait_for_replies(alice, room_id, bot.user_id, sent)
    await _settle(alice, room_id, bot.user_id)

    counts = reply_counts(alice.notices(room_id, bot.user_id))
    answered_once = sum(1 for event_id in sent if counts[event_id] == 1)
    assert answered_once == total, {e: counts[e] for e in sent if counts[e] != 1}
