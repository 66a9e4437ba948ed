"""A lost or unreadable cross-signing key file never silently resets the bot's identity: the
bot refuses to start unless the operator sets `bot.reset_cross_signing: true` for one start.
The homeserver is the offline fake of tests/unit/test_crosssigning.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bot import matrix
from bot.config import parse_config
from bot.crosssigning import CrossSigningError, CrossSigningKeys, ensure_cross_signed
from tests.unit.test_crosssigning import USER, FakeHomeserver, _device_is_cross_signed

CORRUPT = '{"version": 1, "master": "short"}'


async def _server_with_identity(tmp_path: Path) -> tuple[FakeHomeserver, dict[str, Any]]:
    server = FakeHomeserver()
    await ensure_cross_signed(server, tmp_path / "original.json", password=None)
    server.calls.clear()
    return server, dict(server.cross_signing)


async def test_a_lost_key_file_is_refused_even_with_the_password(tmp_path: Path) -> None:
    server, identity = await _server_with_identity(tmp_path)
    path = tmp_path / "keys.json"
    with pytest.raises(CrossSigningError) as caught:
        await ensure_cross_signed(server, path, password=server.PASSWORD)
    message = str(caught.value)
    assert f"cross-signing key file {path} is missing" in message
    assert identity["master"]["keys"].popitem()[1] in message, "names the identity on the server"
    assert "resets the bot's identity" in message
    assert "Element" in message
    assert "bot.reset_cross_signing: true" in message
    assert "restore" in message
    assert server.cross_signing == identity
    assert server.calls == ["keys/query"]
    assert not path.exists(), "no new identity is written"


async def test_an_unreadable_key_file_is_refused_and_kept(tmp_path: Path) -> None:
    server, identity = await _server_with_identity(tmp_path)
    path = tmp_path / "keys.json"
    path.write_text(CORRUPT)
    with pytest.raises(CrossSigningError) as caught:
        await ensure_cross_signed(server, path, password=server.PASSWORD)
    message = str(caught.value)
    assert "unreadable" in message
    assert "bot.reset_cross_signing: true" in message
    assert path.read_text() == CORRUPT
    assert server.cross_signing == identity


async def test_resetting_on_purpose_replaces_the_keys_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, identity = await _server_with_identity(tmp_path)
    path = tmp_path / "keys.json"
    with caplog.at_level(logging.WARNING, logger="bot.crosssigning"):
        assert await ensure_cross_signed(server, path, password=server.PASSWORD, reset=True)
    assert server.cross_signing["master"] != identity["master"]
    assert server.cross_signing["master"] == CrossSigningKeys.load(path).master_key_object(USER)
    assert _device_is_cross_signed(server)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("bot.reset_cross_signing" in text and "new" in text for text in warnings), warnings


def _kept_copies(folder: Path) -> list[str]:
    return [path.read_text() for path in sorted(folder.glob("keys.json.unreadable-*"))]


async def test_resetting_an_unreadable_file_keeps_a_copy_of_it(tmp_path: Path) -> None:
    server, identity = await _server_with_identity(tmp_path)
    path = tmp_path / "keys.json"
    path.write_text(CORRUPT)
    assert await ensure_cross_signed(server, path, password=server.PASSWORD, reset=True)
    assert server.cross_signing["master"] == CrossSigningKeys.load(path).master_key_object(USER)
    assert _kept_copies(tmp_path) == [CORRUPT]


async def test_the_first_start_needs_no_flag(tmp_path: Path) -> None:
    server = FakeHomeserver()
    path = tmp_path / "keys.json"
    assert await ensure_cross_signed(server, path, password=None)
    assert server.cross_signing["master"] == CrossSigningKeys.load(path).master_key_object(USER)
    assert _device_is_cross_signed(server)


async def test_a_flag_left_set_changes_nothing_and_says_to_remove_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeHomeserver()
    path = tmp_path / "keys.json"
    await ensure_cross_signed(server, path, password=None)
    identity = dict(server.cross_signing)
    server.calls.clear()
    with caplog.at_level(logging.WARNING, logger="bot.crosssigning"):
        uploaded = await ensure_cross_signed(server, path, password=server.PASSWORD, reset=True)
    assert uploaded is False
    assert server.cross_signing == identity
    assert server.calls == ["keys/query"]
    assert any("remove" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_a_key_file_for_another_identity_is_refused(tmp_path: Path) -> None:
    server, identity = await _server_with_identity(tmp_path)
    path = tmp_path / "keys.json"
    CrossSigningKeys.generate().save(path)
    with pytest.raises(CrossSigningError, match="bot.reset_cross_signing: true"):
        await ensure_cross_signed(server, path, password=server.PASSWORD)
    assert server.cross_signing == identity
    assert await ensure_cross_signed(server, path, password=server.PASSWORD, reset=True)
    assert server.cross_signing["master"] == CrossSigningKeys.load(path).master_key_object(USER)


def _config(tmp_path: Path, **bot: object) -> Any:
    return parse_config(
        {
            "homeserver": {"url": "https://matrix.example.org"},
            "bot": {"user_id": "@patchwork:example.org", "password": "secret", **bot},
            "storage": {"path": str(tmp_path), "pickle_key": "0123456789abcdef-key"},
            "policy": {"allowed_servers": ["example.org"]},
        },
        environ={},
    )


def test_the_reset_flag_is_off_unless_set(tmp_path: Path) -> None:
    assert _config(tmp_path).bot.reset_cross_signing is False
    assert _config(tmp_path, reset_cross_signing=True).bot.reset_cross_signing is True


@pytest.mark.parametrize("flag", [False, True])
async def test_connect_hands_the_flag_to_cross_signing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: bool
) -> None:
    seen: dict[str, Any] = {}

    async def logged_in(*args: object) -> None:
        return None

    async def cross_signed(client: object, path: Path, **kwargs: Any) -> bool:
        seen.update(kwargs, path=path)
        return False

    monkeypatch.setattr(matrix, "_login", logged_in)
    monkeypatch.setattr(matrix, "_ensure_display_name", logged_in)
    monkeypatch.setattr(matrix, "ensure_cross_signed", cross_signed)
    client = await matrix.connect(_config(tmp_path, reset_cross_signing=flag))
    await client.close()
    assert seen == {
        "password": "secret",
        "reset": flag,
        "path": tmp_path / matrix.CROSS_SIGNING_FILE,
    }
