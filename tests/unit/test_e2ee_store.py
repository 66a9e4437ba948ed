"""The bot's nio store: what nio writes after every sync, and what it must still keep."""

from __future__ import annotations

from pathlib import Path

from nio.crypto import OlmAccount

from bot.config import load_config
from bot.matrix import E2EEStore, _make_client
from devkit.botproc import write_bot_config


def _store(tmp_path: Path) -> E2EEStore:
    store = E2EEStore("@patchwork:localhost", "PATCHWORK", str(tmp_path), pickle_key="key")
    store.save_account(OlmAccount())
    return store


def test_a_sync_that_brings_no_encrypted_room_writes_nothing(tmp_path: Path) -> None:
    """nio calls save_encrypted_rooms after every sync, with no rooms at all on most of them:
    its own store then begins a transaction and reads the account each time, on the event
    loop, before the bot sees the sync's events."""
    store = _store(tmp_path)
    statements: list[str] = []
    store.database.connection().set_trace_callback(statements.append)
    store.save_encrypted_rooms(set())
    assert statements == []
    store.save_encrypted_rooms({"!family:localhost"})
    assert any("INSERT" in statement for statement in statements)


def test_encrypted_rooms_are_still_kept_across_a_restart(tmp_path: Path) -> None:
    _store(tmp_path).save_encrypted_rooms(["!family:localhost", "!team:localhost"])
    assert _store(tmp_path).load_encrypted_rooms() == {"!family:localhost", "!team:localhost"}


def test_the_bot_uses_that_store(tmp_path: Path) -> None:
    config = load_config(write_bot_config(
        tmp_path / "patchwork.yaml", homeserver_url="http://127.0.0.1:9",
        user_id="@patchwork:localhost", password="secret-password", storage=tmp_path / "data",
    ))
    assert _make_client(config).config.store is E2EEStore
