"""Files and folders that hold secrets: written through a fresh exclusive temporary file that is
never a symlink an attacker planted, and a storage folder nobody else can read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bot import files
from bot.files import PrivateDirError, ensure_private_dir, write_private


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_creates_the_file_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    write_private(path, "secret")
    assert path.read_text(encoding="utf-8") == "secret"
    assert mode_of(path) == 0o600
    assert list(tmp_path.iterdir()) == [path], "no temporary file left behind"


def test_write_private_replaces_a_loose_file_with_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text(encoding="utf-8") == "new"
    assert mode_of(path) == 0o600


def test_a_planted_tmp_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious", encoding="utf-8")
    target.chmod(0o644)
    path = tmp_path / "session.json"
    planted = tmp_path / "session.json.tmp"
    planted.symlink_to(target)

    write_private(path, "secret")

    assert target.read_text(encoding="utf-8") == "precious"
    assert mode_of(target) == 0o644
    assert planted.is_symlink(), "the planted link is left alone"
    assert not path.is_symlink()
    assert path.read_text(encoding="utf-8") == "secret"
    assert mode_of(path) == 0o600


def test_a_planted_tmp_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    planted = tmp_path / "session.json.tmp"
    planted.write_text("someone else's", encoding="utf-8")
    write_private(path, "secret")
    assert planted.read_text(encoding="utf-8") == "someone else's"
    assert path.read_text(encoding="utf-8") == "secret"


def test_a_failed_write_leaves_no_temporary_file_and_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "session.json"
    write_private(path, "old")

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_private(path, "new")
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == "old"
    assert list(tmp_path.iterdir()) == [path]


def test_a_missing_storage_folder_is_created_0700(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "patchwork"
    old = os.umask(0o000)
    try:
        ensure_private_dir(folder)
    finally:
        os.umask(old)
    assert folder.is_dir()
    assert mode_of(folder) == 0o700


def test_a_private_storage_folder_is_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o700)
    ensure_private_dir(folder)
    assert mode_of(folder) == 0o700


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701, 0o777])
def test_a_storage_folder_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(PrivateDirError) as caught:
        ensure_private_dir(folder)
    message = str(caught.value)
    assert str(folder) in message
    assert oct(mode)[2:] in message
    assert f"chmod 700 {folder}" in message
    assert mode_of(folder) == mode, "the operator decides; the mode is not changed behind them"


def test_a_file_where_the_folder_should_be_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("", encoding="utf-8")
    with pytest.raises(PrivateDirError, match="not a folder"):
        ensure_private_dir(path)


def test_run_refuses_a_loose_storage_folder_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main
    from tests.unit.test_cli import _write_config

    path = _write_config(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    # Checked before the database is opened or the (unreachable) homeserver is contacted.
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"chmod 700 {data}" in err
    assert "Traceback" not in err
    assert list(data.iterdir()) == []
