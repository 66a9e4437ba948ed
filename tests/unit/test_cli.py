"""The `patchwork` command line: config checking and refusing a database newer than the code."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from storage import LATEST_VERSION


def _write_config(folder: Path, **bot: object) -> Path:
    config = {
        "homeserver": {"url": "http://127.0.0.1:9"},
        "bot": {"user_id": "@patchwork:example.org", "password": "secret", **bot},
        "storage": {"path": str(folder / "data"), "pickle_key": "0123456789abcdef"},
        "policy": {"allowed_servers": ["example.org"]},
    }
    path = folder / "patchwork.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_check_config_accepts_a_valid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(_write_config(tmp_path))]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_config_names_the_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_config(tmp_path, sync_timeout="soon")
    assert main(["check-config", str(path)]) == 2
    assert "bot.sync_timeout" in capsys.readouterr().err


def test_run_refuses_a_database_newer_than_the_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_config(tmp_path)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with sqlite3.connect(data / "patchwork.db") as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 3}")
    # The database is checked before any network use, so the unreachable homeserver
    # (port 9 on loopback) is never contacted.
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(LATEST_VERSION + 3) in err
    assert str(LATEST_VERSION) in err
    assert "Traceback" not in err
