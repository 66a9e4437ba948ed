"""`patchwork backup` and `patchwork restore`: a consistent copy of everything the bot needs
(the database, the E2EE store, the session, the cross-signing and audit keys), taken while the
bot runs, and put back only while it is stopped.

SQLite files (recognised by their header, so the E2EE store is one too) are copied with
SQLite's online backup API, which gives a consistent snapshot even while the bot writes; the
other files are replaced atomically by the bot, so a plain copy is whole. Every copy is made
0600 from its first byte and keeps its source's mode; folders are 0700. The running bot holds
an exclusive lock on `patchwork.lock` in the storage folder: restore refuses while it is held
(and so does a second bot). A restore never deletes: the data it replaces is moved aside.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot import __version__
from bot.files import PRIVATE_DIR_MODE, create_private_file, ensure_private_dir

LOCK_FILE = "patchwork.lock"
MANIFEST_FILE = "patchwork-backup.json"
SQLITE_HEADER = b"SQLite format 3\x00"
_SIDECARS = ("-wal", "-shm", "-journal")


class StorageInUse(Exception):
    """Another process (a running bot) holds the storage folder."""


class BackupError(Exception):
    """A backup or restore cannot be made as asked; the message says what to do."""


class StorageLock:
    """An exclusive flock on the storage folder's lock file, held while the bot runs."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, storage_path: Path) -> StorageLock:
        fd = os.open(storage_path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageInUse(
                f"another Patchwork process is using {storage_path} (it holds {LOCK_FILE}); "
                "stop it first"
            ) from None
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class Copied:
    """What a backup or restore copied, relative to its folder."""

    files: tuple[str, ...]
    folder: Path
    moved_aside: Path | None = None


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def _wanted(root: Path) -> list[Path]:
    """The files to copy: not the lock, SQLite's sidecars (the backup API reads through them),
    half-written temporary files or an earlier manifest."""
    found = []
    for path in sorted(root.rglob("*")):
        name = path.name
        if path.is_symlink() or not path.is_file():
            continue
        if name in (LOCK_FILE, MANIFEST_FILE) or name.endswith(_SIDECARS):
            continue
        if name.startswith(".") and name.endswith(".tmp"):
            continue
        found.append(path)
    return found


def _copy_file(source: Path, target: Path) -> None:
    target.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    target.parent.chmod(PRIVATE_DIR_MODE)
    create_private_file(target)
    if source.stat().st_size and _is_sqlite(source):
        src = sqlite3.connect(source, timeout=30)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    else:
        with source.open("rb") as reader, target.open("wb") as writer:
            shutil.copyfileobj(reader, writer)
            writer.flush()
            os.fsync(writer.fileno())
    for sidecar in _SIDECARS:
        Path(f"{target}{sidecar}").unlink(missing_ok=True)
    target.chmod(stat.S_IMODE(source.stat().st_mode) & 0o600)


def _copy_tree(source: Path, target: Path) -> tuple[str, ...]:
    copied = []
    for path in _wanted(source):
        relative = path.relative_to(source)
        _copy_file(path, target / relative)
        copied.append(str(relative))
    return tuple(copied)


def backup(storage_path: Path, to: Path) -> Copied:
    """Copy the storage folder into `to`, a new or empty folder outside it."""
    if not (storage_path / "patchwork.db").exists():
        raise BackupError(f"{storage_path} holds no patchwork.db: is storage.path right?")
    if to.resolve().is_relative_to(storage_path.resolve()):
        raise BackupError(f"{to} is inside the storage folder; choose a folder outside it")
    if to.exists() and any(to.iterdir()):
        raise BackupError(f"{to} is not empty; give a new folder for each backup")
    ensure_private_dir(to)
    files = _copy_tree(storage_path, to)
    manifest = {
        "patchwork": __version__,
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "from": str(storage_path),
        "files": list(files),
    }
    create_private_file(to / MANIFEST_FILE)
    (to / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Copied(files, to)


def restore(backup_dir: Path, storage_path: Path) -> Copied:
    """Put a backup in place of the storage folder, which is moved aside, never deleted.
    Refused while a bot holds the folder."""
    manifest_path = backup_dir / MANIFEST_FILE
    if not manifest_path.exists():
        raise BackupError(f"{backup_dir} is not a Patchwork backup (no {MANIFEST_FILE})")
    listed = json.loads(manifest_path.read_text(encoding="utf-8")).get("files", [])
    missing = [name for name in listed if not (backup_dir / name).is_file()]
    if missing:
        raise BackupError(f"the backup in {backup_dir} is incomplete: {', '.join(missing)}")
    moved_aside = None
    if storage_path.exists():
        lock = StorageLock.acquire(storage_path)
        try:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            moved_aside = storage_path.with_name(f"{storage_path.name}.before-restore-{stamp}")
            storage_path.rename(moved_aside)
        finally:
            lock.release()
    ensure_private_dir(storage_path)
    files = tuple(name for name in _copy_tree(backup_dir, storage_path) if name in listed)
    return Copied(files, storage_path, moved_aside)
