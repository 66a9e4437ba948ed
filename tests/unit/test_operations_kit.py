"""The operator's kit without a homeserver: files at rest readable by the bot's user only
whatever the umask, logs without routine INFO lines or personal data, metrics in a registry of
their own, /healthz, and backup and restore around a running bot's lock."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from nio import ErrorResponse

from bot.auditkey import load_audit_key
from bot.backup import BackupError, StorageInUse, StorageLock, backup, restore
from bot.config import ConfigError, MetricsConfig, load_config
from bot.devserver import free_port
from bot.files import ensure_private_dir, exposed_paths
from bot.health import HealthServer
from bot.logs import setup_logging
from bot.matrix import _make_client, e2ee_store_file
from bot.metrics import Metrics
from bot.scheduler import SweepScheduler
from devkit.botproc import write_bot_config
from storage import Database


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _config_file(tmp_path: Path, **extra: dict[str, object]) -> Path:
    return write_bot_config(
        tmp_path / "patchwork.yaml",
        homeserver_url="http://127.0.0.1:9",
        user_id="@patchwork:localhost",
        password="secret-password",
        storage=tmp_path / "data",
        extra=extra or None,
    )


def _modes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): f"{stat.S_IMODE(path.stat().st_mode):o}"
        for path in sorted(root.rglob("*"))
    }


async def test_every_file_under_storage_is_private_whatever_the_umask(
    tmp_path: Path, loose_umask: None
) -> None:
    config = load_config(_config_file(tmp_path))
    ensure_private_dir(config.storage.path)
    load_audit_key(config.storage.path, create=True)
    db = await Database.open(config.storage.path / "patchwork.db")
    async with db.transaction() as tx:
        await tx.sync.set_next_batch("s1")
    client = _make_client(config)
    client.restore_login(config.bot.user_id, config.bot.device_id, "token")  # opens the store
    try:
        assert e2ee_store_file(config).stat().st_size > 0, "nio has written its store"
        modes = _modes(config.storage.path)
        assert exposed_paths(config.storage.path) == [], modes
        assert all(mode in ("600", "700") for mode in modes.values()), modes
    finally:
        await client.close()
        await db.close()


def test_json_logs_carry_event_names_and_ids(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream)
    try:
        logging.getLogger("bot.sync").info(
            "reconciled %d roster changes in family %s", 2, 7, extra={"family_id": 7}
        )
        logging.getLogger("bot.outbox").info("sent", extra={"event": "outbox_sent"})
    finally:
        setup_logging("WARNING")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "reconciled %d roster changes in family %s"
    assert first["message"] == "reconciled 2 roster changes in family 7"
    assert first["family_id"] == 7
    assert (first["level"], first["logger"]) == ("INFO", "bot.sync")
    assert second["event"] == "outbox_sent"


def test_logging_format_is_validated(tmp_path: Path) -> None:
    assert load_config(_config_file(tmp_path, logging={"format": "JSON"})).logging.format == "json"
    with pytest.raises(ConfigError, match="logging.format"):
        load_config(_config_file(tmp_path, logging={"format": "xml"}))
    with pytest.raises(ConfigError, match="metrics.listen"):
        load_config(_config_file(tmp_path, metrics={"listen": "9464"}))


async def test_an_idle_bot_logs_nothing_at_info_per_sweep() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "text", stream)
    sweeps = 0
    three = asyncio.Event()

    async def sweep() -> None:
        nonlocal sweeps
        sweeps += 1
        if sweeps >= 3:
            three.set()

    stop, ready = asyncio.Event(), asyncio.Event()
    ready.set()
    scheduler = SweepScheduler(sweep, timedelta(seconds=0.2))
    task = asyncio.create_task(scheduler.run(stop, ready))
    try:
        await asyncio.wait_for(three.wait(), 10)
    finally:
        stop.set()
        await task
        setup_logging("WARNING")
    assert sweeps >= 3
    assert stream.getvalue() == "", "APScheduler's per-run lines must not reach the log"


async def test_metrics_have_their_own_registry_and_follow_the_sync(tmp_path: Path) -> None:
    now = [100.0]
    first, second = Metrics(clock=lambda: now[0]), Metrics()  # no clash: no global registry
    assert first.registry is not second.registry
    assert first.health(30) == (False, "starting: the first sync has not been processed yet")
    first.synced()
    now[0] += 10
    assert first.health(30)[0] is True
    now[0] += 30
    assert first.health(30)[0] is False
    first.command("help", "ok")
    await first.on_response(ErrorResponse("slow down", "M_LIMIT_EXCEEDED", retry_after_ms=1500))
    await first.on_response(ErrorResponse("nope", "M_FORBIDDEN"))
    db = await Database.open(tmp_path / "patchwork.db")
    try:
        text = (await first.render(db)).decode()
    finally:
        await db.close()
    assert 'patchwork_commands_total{command="help",outcome="ok"} 1.0' in text
    assert "patchwork_rate_limited_responses_total 1.0" in text
    assert "patchwork_rate_limit_wait_seconds_total 1.5" in text
    assert 'patchwork_families{status="active"} 0.0' in text
    assert "patchwork_outbox_pending_items 0.0" in text
    assert "patchwork_sync_lag_seconds 40.0" in text


async def test_healthz_answers_503_until_the_first_sync(tmp_path: Path) -> None:
    metrics = Metrics()
    db = await Database.open(tmp_path / "patchwork.db")
    port = free_port()
    server = await HealthServer.start(MetricsConfig(listen=f"127.0.0.1:{port}"), metrics, db)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 503
            metrics.synced()
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                assert "patchwork_build_info" in await response.text()
    finally:
        await server.stop()
        await db.close()


async def test_metrics_are_off_unless_listen_is_set(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "patchwork.db")
    try:
        server = await HealthServer.start(MetricsConfig(), Metrics(), db)
        await server.stop()
        assert server._runner is None
    finally:
        await db.close()


async def test_backup_keeps_modes_and_restore_refuses_a_running_bot(tmp_path: Path) -> None:
    storage, copy = tmp_path / "data", tmp_path / "backup"
    ensure_private_dir(storage)
    db = await Database.open(storage / "patchwork.db")
    async with db.transaction() as tx:
        await tx.sync.set_next_batch("before-backup")
    (storage / "e2ee").mkdir(mode=0o700)
    (storage / "e2ee" / "store.db").touch(mode=0o600)
    (storage / "session.json").write_text("{}", encoding="utf-8")
    (storage / "session.json").chmod(0o600)
    lock = StorageLock.acquire(storage)
    try:
        made = backup(storage, copy)  # while "the bot" holds its lock and its database
        assert set(made.files) == {"patchwork.db", "e2ee/store.db", "session.json"}
        assert exposed_paths(copy) == []
        with pytest.raises(StorageInUse, match="stop it first"):
            restore(copy, storage)
        with pytest.raises(BackupError, match="not empty"):
            backup(storage, copy)
    finally:
        lock.release()
        async with db.transaction() as tx:
            await tx.sync.set_next_batch("after-backup")
        await db.close()

    done = restore(copy, storage)
    assert done.moved_aside is not None
    assert (done.moved_aside / "patchwork.db").exists()
    assert exposed_paths(storage) == []
    restored = await Database.open(storage / "patchwork.db")
    try:
        async with restored.read() as tx:
            assert await tx.sync.get_next_batch() == "before-backup"
    finally:
        await restored.close()


def test_the_cli_runs_doctor_backup_and_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    assert main(["doctor", "--config", str(tmp_path / "absent.yaml")]) == 1
    assert "FAIL config:" in capsys.readouterr().out
    config = str(_config_file(tmp_path))
    assert main(["backup", "--config", config, "--to", str(tmp_path / "copy")]) == 2
    assert "holds no patchwork.db" in capsys.readouterr().err
    assert main(["restore", "--from", str(tmp_path), "--config", config]) == 2
    assert "is not a Patchwork backup" in capsys.readouterr().err
