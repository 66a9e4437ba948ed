"""The operator's kit against a real Synapse: `patchwork doctor` passes on a healthy bot and
names each failure; `/healthz` follows the sync; `/metrics` counts commands; a backup taken
while commands stream restores with nothing lost or doubled."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bot.config import load_config
from bot.devserver import LocalSynapse, free_port
from bot.doctor import run_checks
from devkit.botproc import BotProcess
from tests.integration.conftest import BotFactory, MakePractitioner, PractitionerFactory
from tests.integration.replies import reply_counts
from tests.integration.test_bot_trunk import _room_with_bot, _settle, _wait_for_replies


async def _patchwork(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def _variant(bot: BotProcess, name: str, section: str, key: str, value: object) -> Path:
    config: dict[str, Any] = yaml.safe_load(bot.config_path.read_text(encoding="utf-8"))
    config[section][key] = value
    path = bot.config_path.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


async def _failed_checks(config_path: Path) -> list[str]:
    return [result.name for result in await run_checks(config_path) if result.status == "FAIL"]


async def test_doctor_passes_on_a_healthy_bot_and_names_each_failure(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    alice = await make_practitioner("alice")
    bot = await make_bot()
    room_id = await _room_with_bot(alice, bot.user_id)
    command = await alice.send_text(room_id, "!contact set email alice@example.org")  # audited
    await _wait_for_replies(alice, room_id, bot.user_id, [command])

    status, out = await _patchwork("doctor", "--config", str(bot.config_path))
    assert status == 0, out
    assert "FAIL" not in out
    assert "SKIP" not in out
    for name in ("login", "e2ee store", "device and cross-signing", "database", "audit chain"):
        assert f"PASS {name}:" in out

    wrong_password = _variant(bot, "wrong-password", "bot", "password", "not-the-password")
    status, out = await _patchwork("doctor", "--config", str(wrong_password))
    assert status == 1
    assert "FAIL login:" in out
    assert "what to do:" in out
    assert await _failed_checks(wrong_password) == ["login"]
    wrong_key = _variant(bot, "wrong-key", "storage", "pickle_key", "another-pickle-key-987654")
    assert await _failed_checks(wrong_key) == ["e2ee store"]

    storage = (await asyncio.to_thread(load_config, bot.config_path)).storage.path
    storage.chmod(0o755)
    try:
        assert await _failed_checks(bot.config_path) == ["storage permissions"]
    finally:
        storage.chmod(0o700)

    await bot.stop()
    database = storage / "patchwork.db"
    with sqlite3.connect(database) as connection:
        triggers = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'"
        ).fetchall()
        for (trigger,) in triggers:  # the append-only guards
            connection.execute(f"DROP TRIGGER {trigger}")
        changed = connection.execute(
            "UPDATE audit SET detail = '{\"field\": \"phone\"}'"
            " WHERE id = (SELECT MIN(id) FROM audit)"
        ).rowcount
    connection.close()
    assert changed == 1, [notice.body for notice in alice.notices(room_id, bot.user_id)]
    assert await _failed_checks(bot.config_path) == ["audit chain"]

    await asyncio.to_thread(_overwrite, database, 4096, b"\xde\xad\xbe\xef" * 2048)
    assert await _failed_checks(bot.config_path) == ["database"]


async def _get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(url) as response,
    ):
        return response.status, await response.text()


async def _health_until(url: str, wanted: int, timeout: float) -> list[int]:
    """The /healthz statuses seen until `wanted` came (connection refusals are skipped)."""
    seen: list[int] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            status, _ = await _get(url)
        except aiohttp.ClientError:
            await asyncio.sleep(0.2)
            continue
        seen.append(status)
        if status == wanted:
            return seen
        await asyncio.sleep(0.3)
    raise AssertionError(f"/healthz never answered {wanted}; saw {seen[-5:]}")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_healthz_follows_the_sync_and_metrics_count_commands(tmp_path: Path) -> None:
    # A Synapse of its own: stopping the session's would hurt the other tests.
    server = LocalSynapse(tmp_path / "synapse", port=free_port(), relaxed_rate_limits=True)
    await server.start()
    people = PractitionerFactory(server, tmp_path / "clients")
    bots = BotFactory(server, tmp_path / "bots")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        bot = await bots(
            start=False,
            extra={"metrics": {"listen": f"127.0.0.1:{port}", "max_sync_lag": "8s"}},
        )
        await server.stop()
        starting = asyncio.create_task(bot.start(timeout=120))
        seen = await _health_until(f"{base}/healthz", 503, timeout=30)
        assert seen == [503], "unhealthy before the first sync"
        await server.start()
        await starting
        assert (await _get(f"{base}/healthz"))[0] == 200

        alice = await people("alice")
        room_id = await _room_with_bot(alice, bot.user_id)
        before = _samples((await _get(f"{base}/metrics"))[1])
        commands = [
            await alice.send_text(room_id, "!help"),
            await alice.send_text(room_id, "!help whois"),
            await alice.send_text(room_id, "!nosuchcommand"),
        ]
        await _wait_for_replies(alice, room_id, bot.user_id, commands)
        status, text = await _get(f"{base}/metrics")
        assert status == 200
        after = _samples(text)

        def moved(name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0.0) - before.get(key, 0.0)

        assert moved("patchwork_commands_total", command="help", outcome="ok") == 2
        assert moved("patchwork_commands_total", command="unknown", outcome="user_error") == 1
        assert moved("patchwork_outbox_sent_items_total", kind="message") >= 3
        assert any(name == "patchwork_build_info" for name, _ in after)
        assert after[("patchwork_outbox_pending_items", ())] >= 0
        assert after[("patchwork_sync_lag_seconds", ())] < 8
        for personal in (alice.user_id, bot.user_id, room_id, "nosuchcommand"):
            assert personal not in text, f"{personal} must not appear in /metrics"

        await server.stop()
        await _health_until(f"{base}/healthz", 503, timeout=40)
    finally:
        for started in bots.started:
            await started.stop()
        await people.close_all()
        await server.stop()


async def test_backup_while_commands_stream_restores_with_nothing_lost_or_doubled(
    make_practitioner: MakePractitioner, make_bot: BotFactory, tmp_path: Path
) -> None:
    alice = await make_practitioner("alice")
    bot = await make_bot(extra={"bot": {"command_burst": 1000}})
    config = str(bot.config_path)
    room_id = await _room_with_bot(alice, bot.user_id)
    sent = [await alice.send_text(room_id, "!help")]
    await _wait_for_replies(alice, room_id, bot.user_id, sent)  # room keys shared both ways

    async def stream(count: int) -> None:
        for _ in range(count):
            sent.append(await alice.send_text(room_id, "!help"))
            await asyncio.sleep(0.15)

    streaming = asyncio.create_task(stream(20))
    await asyncio.sleep(1.0)
    backup = tmp_path / "backup"
    status, out = await _patchwork("backup", "--config", config, "--to", str(backup))
    assert status == 0, out
    assert not streaming.done(), "the backup must be taken while commands stream"
    await streaming
    await _wait_for_replies(alice, room_id, bot.user_id, sent)

    status, out = await _patchwork("restore", "--from", str(backup), "--config", config)
    assert status == 2, out
    assert "stop it first" in out

    await bot.stop()
    status, out = await _patchwork("restore", "--from", str(backup), "--config", config)
    assert status == 0, out
    assert "moved the previous data to" in out
    while_down = [await alice.send_text(room_id, "!help") for _ in range(3)]
    await bot.start()
    everything = sent + while_down
    await _wait_for_replies(alice, room_id, bot.user_id, everything, timeout=90)
    await _settle(alice, room_id, bot.user_id)

    counts = reply_counts(alice.notices(room_id, bot.user_id))
    assert [counts[event_id] for event_id in everything] == [1] * len(everything)
    assert await _failed_checks(bot.config_path) == []
