"""Governance against a real Synapse with real nio clients in encrypted rooms: the audit read
and verified, encrypted exports decrypted by another member, sensitive involvements, alerts
that notify in Element, and a family closed, purged and its reference used again."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from nio import DownloadResponse, RoomEncryptedFile, RoomSendResponse
from nio.crypto.attachments import decrypt_attachment

from bot.devserver import LocalSynapse
from devkit.botproc import BotProcess
from devkit.practitioner import Practitioner
from storage.dossier import family_dossier, practitioner_dossier
from tests.integration.conftest import BotFactory, MakePractitioner
from tests.integration.test_element_interop import (
    element_account,
    element_config,
    run_element_client,
)
from tests.integration.test_family_rooms import (
    activate,
    bot_database,
    create_family,
    direct_chat,
)

REFERENCE = "LDC-2026-0900"
LEADS_ONLY = "Only this family's lead or a Patchwork administrator can do that."


async def join_team(
    bot: BotProcess, lead: Practitioner, room_id: str, person: Practitioner, role: str
) -> None:
    """`!invite` someone in their role; they accept and have joined when this returns."""
    await lead.ask(room_id, f"!invite {person.user_id} {role}", bot=bot.user_id)
    name = lead.client.rooms[room_id].name
    await person.wait_for_invite(name)
    await person.join(room_id)
    await lead.wait_for_membership(room_id, person.user_id, "join")


async def team_of(
    bot: BotProcess, lead: Practitioner, *members: tuple[Practitioner, str]
) -> str:
    """An active family led by `lead`, with each member invited in their role and joined."""
    room_id, _ = await create_family(lead, bot, REFERENCE)
    await activate(lead, bot, room_id)
    for person, role in members:
        await join_team(bot, lead, room_id, person, role)
    return room_id


async def received_files(
    person: Practitioner, room_id: str, bot: BotProcess, after: str
) -> dict[str, bytes]:
    """The two export files the bot posts after `after`, downloaded and decrypted: by suffix."""
    files: dict[str, bytes] = {}
    for _ in range(2):

        def new_file(event: Any) -> bool:
            return (
                isinstance(event, RoomEncryptedFile)
                and event.sender == bot.user_id
                and event.body.rsplit(".", 1)[-1] not in files
            )

        event = await person.wait_for_event(room_id, new_file, after_event_id=after, timeout=60)
        assert isinstance(event, RoomEncryptedFile)
        content = event.source["content"]
        assert content["msgtype"] == "m.file"
        assert "url" not in content, "no plain media link: the file is encrypted"
        assert content["file"]["v"] == "v2"
        download = await person.client.download(mxc=event.url)
        assert isinstance(download, DownloadResponse), download
        plain = decrypt_attachment(download.body, event.key["k"], event.hashes["sha256"], event.iv)
        # Not "does not start with {": one ciphertext in 256 or so does.
        assert plain[:64] not in download.body, "the server holds only ciphertext"
        files[event.body.rsplit(".", 1)[-1]] = plain
        assert content["info"]["mimetype"] == (
            "application/json" if event.body.endswith(".json") else "text/plain"
        )
    return files


def same_rows(exported: list[dict[str, Any]], stored: list[dict[str, Any]]) -> None:
    assert exported == stored[: len(exported)]
    assert len(exported) >= len(stored) - 2, "only rows written after the export may be missing"


async def test_audit_exports_and_sensitive_involvements(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    bot = await make_bot()
    lead = await make_practitioner("lead", displayname="Lena Lead")
    teacher = await make_practitioner("teacher", displayname="Tom Teacher")
    worker = await make_practitioner("worker", displayname="Dee Worker")
    room_id = await team_of(bot, lead, (teacher, "Class teacher"), (worker, "DV support"))
    await worker.ask(room_id, "!sensitive on", bot=bot.user_id)

    # An ordinary member never sees the sensitive involvement; the lead sees it privately.
    seen = await teacher.ask(room_id, "!whois", bot=bot.user_id)
    assert "Dee Worker" not in seen.body
    assert worker.user_id not in seen.formatted_body
    assert "A confidential service is also involved" in seen.body
    lead_dm = next(r for r in lead.client.rooms if r != room_id)
    answer = await lead.ask(room_id, "!whois", bot=bot.user_id)
    assert "Dee Worker" not in answer.body, "the room is read by everyone"
    private = await lead.wait_for_notice(
        lead_dm, sender=bot.user_id, predicate=lambda e: "Dee Worker" in e.body
    )
    assert "DV support" in private.body

    # The lead reads who looked a moment ago; an ordinary member may not.
    audit = await lead.ask(room_id, "!audit 5", bot=bot.user_id)
    [line] = [row for row in audit.body.splitlines() if "Tom Teacher" in row]
    assert "looked up the team (!whois)" in line
    for command in ("!audit", "!export", "!family close"):
        refused = await teacher.ask(room_id, command, bot=bot.user_id)
        assert LEADS_ONLY in refused.body, command

    # The export: two encrypted files the teacher's client decrypts, holding the database.
    started = time.monotonic()
    asked = await lead.send_text(room_id, "!export")
    files = await received_files(teacher, room_id, bot, asked)
    export_seconds = time.monotonic() - started
    exported = json.loads(files["json"])
    async with bot_database(bot) as db, db.read() as tx:
        family = await tx.families.by_room(room_id)
        assert family is not None
        stored = await family_dossier(tx, family.id)
    for key in ("family", "governance_records", "involvements", "prompts"):
        assert exported[key] == stored[key], key
    same_rows(exported["audit"], stored["audit"])
    assert {row["user_id"] for row in exported["involvements"]} == {
        lead.user_id, teacher.user_id, worker.user_id
    }
    assert f"Patchwork record for {REFERENCE}" in files["txt"].decode()
    print(f"export of a 3-member family: {len(files['json'])} bytes in {export_seconds:.2f} s")

    # !mydata in the teacher's direct chat: their own record only.
    dm = await direct_chat(teacher, bot)
    await teacher.ask(dm, "!contact set org Oak Primary", bot=bot.user_id)
    asked = await teacher.send_text(dm, "!mydata")
    mine = json.loads((await received_files(teacher, dm, bot, asked))["json"])
    async with bot_database(bot) as db, db.read() as tx:
        held = await practitioner_dossier(tx, teacher.user_id)
    assert mine["practitioner"] == held["practitioner"]
    assert mine["practitioner"]["organisation"] == "Oak Primary"
    assert mine["involvements"] == held["involvements"]
    same_rows(mine["audit"], held["audit"])

    # The operator verifies the chain, then a row changed by hand is named.
    status, said = await verify(bot)
    assert (status, said.split(":")[0]) == (0, "audit chain intact"), said
    data = bot.config_path.parent / "data" / "patchwork.db"
    with sqlite3.connect(data) as conn:
        conn.execute("DROP TRIGGER audit_redact_only")
        [row_id] = conn.execute(
            "SELECT id FROM audit WHERE action = 'whois' AND actor = ?", (teacher.user_id,)
        ).fetchone()
        conn.execute("UPDATE audit SET detail = '{}' WHERE id = ?", (row_id,))
    status, said = await verify(bot)
    assert status == 1
    assert said.startswith(f"audit chain BROKEN at row {row_id}:"), said


async def verify(bot: BotProcess) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "audit", "verify", "--config", str(bot.config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, (out + err).decode().strip()


async def test_attention_notifies_every_member_in_their_own_client(
    synapse: LocalSynapse,
    make_practitioner: MakePractitioner,
    make_bot: BotFactory,
    tmp_path: Path,
) -> None:
    bot = await make_bot()
    lead = await make_practitioner("lead", displayname="Lena Lead")
    nurse = await make_practitioner("nurse", displayname="Nia Nurse")
    room_id = await team_of(bot, lead, (nurse, "Health visitor"))
    element_user, element_password = await element_account(synapse)
    await lead.ask(room_id, f"!invite {element_user} Class teacher", bot=bot.user_id)

    async def alert_once_joined() -> str:
        await lead.wait_for_membership(room_id, element_user, "join", timeout=90)
        await asyncio.sleep(3)  # the client sends its command and reads the reply first
        return await lead.send_text(room_id, "!attention please call the school today")

    alerting = asyncio.create_task(alert_once_joined())
    try:
        result, stderr = await run_element_client(
            tmp_path,
            element_config(
                synapse, element_user, element_password, room_id, bot.user_id, "!help",
                timeout=90, wait_for_mention=True,
            ),
        )
    finally:
        asked = await alerting
    assert result["ok"], f"{result}\nstderr:\n{stderr}\n{bot.log_tail()}"
    [alert] = [m for m in result["mentions"] if m["msgtype"] == "m.text"]
    assert alert["body"].startswith(f"Attention, team for {REFERENCE}: ")  # (shortened)
    assert alert["notify"] is True, "Element notifies the member of the alert"
    assert alert["highlight"] is True
    # The nio member got the same alert, mentioning them, as a notifying m.text.
    seen = await nurse.wait_for_notice(
        room_id, sender=bot.user_id, after_event_id=asked,
        predicate=lambda e: "please call the school" in e.body,
    )
    content = seen.source["content"]
    assert content["msgtype"] == "m.text"
    assert set(content["m.mentions"]["user_ids"]) == {nurse.user_id, element_user}


async def test_a_closed_family_is_read_only_then_purged_and_its_reference_reused(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    bot = await make_bot(extra={"retention": {"closed_case": "3s", "purge_every": "1s"}})
    lead = await make_practitioner("lead", displayname="Lena Lead")
    teacher = await make_practitioner("teacher", displayname="Tom Teacher")
    room_id = await team_of(bot, lead, (teacher, "Class teacher"))
    await teacher.ask(room_id, "!whois", bot=bot.user_id)
    closed = await lead.ask(room_id, "!family close case stepped down", bot=bot.user_id)
    assert f"The record for {REFERENCE} is closed" in closed.body

    # Read-only for members: the power levels change, and a message is refused.
    async def refused() -> bool:
        response = await teacher.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "still here?"},
            ignore_unverified_devices=True,
        )
        return not isinstance(response, RoomSendResponse)

    deadline = time.monotonic() + 20
    while not await refused():
        assert time.monotonic() < deadline, "the room did not become read-only"
        await asyncio.sleep(0.5)

    # The purge: the bot leaves, and only the minimal record remains.
    await teacher.wait_for_membership(room_id, bot.user_id, "leave", timeout=60)
    async with bot_database(bot) as db, db.read() as tx:
        family = await tx.fetchone("SELECT * FROM family WHERE status = 'purged'")
        assert family is not None
        counts = {
            table: (await tx.fetchone(f"SELECT COUNT(*) FROM {table}"))[0]  # noqa: S608
            for table in ("involvement", "prompt", "governance_record")
        }
        rows = await tx.audit.for_family(int(family["id"]))
        assert await tx.audit.verify() is None
        assert await tx.outbox.for_room(room_id, ("message", "state")) == []
    assert (family["reference"], family["room_id"], family["lawful_basis"]) == (
        f"~purged-{family['id']}", None, None
    )
    assert counts == {"involvement": 0, "prompt": 0, "governance_record": 0}
    kept = json.dumps([[row.actor, row.detail] for row in rows])
    for private in (lead.user_id, teacher.user_id, REFERENCE, "case stepped down"):
        assert private not in kept
    assert rows[-1].action == "family_purged"
    assert outbox_kinds(bot, room_id) == ["leave"], "nothing else waits for the room"

    # The reference can be used again, for a new room.
    dm = next(r for r in lead.client.rooms if r != room_id)
    again = await lead.ask(dm, f"!family new {REFERENCE}", bot=bot.user_id)
    assert "I am creating the room" in again.body
    new_room = await lead.wait_for_invite(f"Team {REFERENCE}")
    assert new_room != room_id


def outbox_kinds(bot: BotProcess, room_id: str) -> list[str]:
    with sqlite3.connect(bot.config_path.parent / "data" / "patchwork.db") as conn:
        rows = conn.execute("SELECT kind FROM outbox WHERE room_id = ? ORDER BY id", (room_id,))
        return [row[0] for row in rows]
