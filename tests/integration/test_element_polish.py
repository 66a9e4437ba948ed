"""What a practitioner notices in Element, against a real Synapse with nio clients: a
verification request is cancelled at once and explained, `!cases` links each room, phone
numbers are checked and shown as `tel:` links, and `!help` is tailored to the caller."""

from __future__ import annotations

import time
import uuid
from typing import Any

from nio import KeyVerificationCancel, UnknownEvent, UnknownToDeviceEvent
from nio.event_builders import ToDeviceMessage

from devkit.botproc import BotProcess
from devkit.practitioner import Practitioner
from tests.integration.conftest import BotFactory, MakePractitioner
from tests.integration.test_family_rooms import activate, create_family, direct_chat

CANCEL = "m.key.verification.cancel"
EXPLAINED = "I cancelled the verification request"


def cancels_in(person: Practitioner, room_id: str, bot: BotProcess) -> list[dict[str, Any]]:
    return [
        event.source["content"]
        for event in person.timeline(room_id)
        if isinstance(event, UnknownEvent) and event.type == CANCEL and event.sender == bot.user_id
    ]


async def test_a_verification_request_is_cancelled_within_seconds_and_explained(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    """Element's "Verify User" sends an in-room request in the direct chat; verifying the
    bot's session sends one to-device. Both are cancelled with a reason code, never accepted."""
    bot = await make_bot()
    person = await make_practitioner("verifier")
    dm = await direct_chat(person, bot)

    started = time.monotonic()
    request_id = await person.send_message(
        dm,
        {
            "msgtype": "m.key.verification.request",
            "body": "verifier is asking to verify your key",
            "from_device": person.device_id,
            "methods": ["m.sas.v1"],
            "to": bot.user_id,
        },
    )
    explanation = await person.wait_for_notice(
        dm, sender=bot.user_id, predicate=lambda n: EXPLAINED in n.body, timeout=10
    )
    await person.wait_for_event(
        dm,
        lambda e: isinstance(e, UnknownEvent) and e.type == CANCEL,
        timeout=10,
        what="the bot's cancel",
    )
    seconds = time.monotonic() - started
    print(f"\nin-room verification request cancelled and explained in {seconds:.2f} s")
    assert seconds < 10
    [cancel] = cancels_in(person, dm, bot)
    assert cancel["code"] == "m.user"
    assert "cross-signing identity" in cancel["reason"]
    assert cancel["m.relates_to"] == {"rel_type": "m.reference", "event_id": request_id}
    assert "`patchwork fingerprint`" in explanation.body
    assert explanation.source["content"]["msgtype"] == "m.notice"

    # To-device, as when verifying the bot's session from its device list.
    received: list[Any] = []

    async def on_to_device(event: Any) -> None:
        received.append(event)

    person.client.add_to_device_callback(
        on_to_device, (KeyVerificationCancel, UnknownToDeviceEvent)
    )
    transaction = uuid.uuid4().hex
    started = time.monotonic()
    await person.client.to_device(
        ToDeviceMessage(
            "m.key.verification.request",
            bot.user_id,
            "*",
            {
                "from_device": person.device_id,
                "methods": ["m.sas.v1"],
                "transaction_id": transaction,
                "timestamp": int(time.time() * 1000),
            },
        )
    )
    explained_before = len([n for n in person.notices(dm, bot.user_id) if EXPLAINED in n.body])
    while not any(
        isinstance(event, KeyVerificationCancel) and event.transaction_id == transaction
        for event in received
    ):
        assert time.monotonic() - started < 10, f"no to-device cancel; got {received!r}"
        await person.wait_for_sync(timeout=10)
    seconds = time.monotonic() - started
    print(f"to-device verification request cancelled in {seconds:.2f} s")
    [cancelled] = [e for e in received if isinstance(e, KeyVerificationCancel)]
    assert cancelled.sender == bot.user_id
    assert cancelled.code == "m.user"
    await person.wait_for_notice(
        dm,
        sender=bot.user_id,
        predicate=lambda n: EXPLAINED in n.body
        and len([x for x in person.notices(dm, bot.user_id) if EXPLAINED in x.body])
        > explained_before,
        timeout=10,
    )


async def test_cases_links_rooms_phones_are_tel_links_and_help_fits_the_caller(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    bot = await make_bot()
    lead = await make_practitioner("lead", displayname="Sam Lead")
    member = await make_practitioner("member", displayname="Mo Member")
    first, _ = await create_family(lead, bot, "LDC-2026-0801")
    await activate(lead, bot, first)
    second, _ = await create_family(lead, bot, "LDC-2026-0802")
    lead_dm = await direct_chat(lead, bot)

    # !cases: each family links to its room (Element shows a pill that opens it).
    cases = await lead.ask(lead_dm, "!cases", bot=bot.user_id)
    html = cases.formatted_body or ""
    for room_id, reference in ((first, "LDC-2026-0801"), (second, "LDC-2026-0802")):
        assert f'<a href="https://matrix.to/#/{room_id}?via=localhost">{reference}</a>' in html
        assert f"https://matrix.to/#/{room_id}" in cases.body

    # A phone number is checked, kept in international form and shown as a tel: link.
    refused = await lead.ask(lead_dm, "!contact set phone 0123", bot=bot.user_id)
    assert "`0123` is not a phone number I can use" in refused.body
    saved = await lead.ask(lead_dm, "!contact set phone 020 7946 0123", bot=bot.user_id)
    assert saved.body.startswith("Saved your phone number.")
    await lead.ask(lead_dm, "!contact share on", bot=bot.user_id)
    mine = await lead.ask(lead_dm, "!contact", bot=bot.user_id)
    assert '<a href="tel:+442079460123">020 7946 0123</a>' in (mine.formatted_body or "")
    card = await lead.ask(first, f"!whois {lead.user_id}", bot=bot.user_id)
    assert '<a href="tel:+442079460123">020 7946 0123</a>' in (card.formatted_body or "")
    assert "`020 7946 0123`" not in card.body, "no longer inline code"

    # !help: the lead sees the lead's commands; an ordinary member sees who can use them.
    await lead.ask(first, f"!invite {member.user_id} Class teacher", bot=bot.user_id)
    await member.wait_for_invite("Team LDC-2026-0801")
    await member.join(first)
    await lead.wait_for_membership(first, member.user_id, "join")
    # The bot announces the join; wait for it so it is not taken for the answer to !help.
    for person in (lead, member):
        await person.wait_for_notice(
            first, sender=bot.user_id, predicate=lambda n: "Mo Member joined the team" in n.body
        )
    heading = "Only this family's lead or a Patchwork administrator can use these:"
    lead_help = await lead.ask(first, "!help", bot=bot.user_id)
    assert "`!lead` —" in lead_help.body
    assert "`!family basis` —" in lead_help.body
    assert heading not in lead_help.body
    member_help = await member.ask(first, "!help", bot=bot.user_id)
    own, _, theirs = member_help.body.partition(heading)
    assert theirs, member_help.body
    assert "`!lead` —" not in own
    assert "`!family basis` —" not in own
    assert "`!lead` —" in theirs
    assert "`!whois` —" in own
