"""Exceptions the storage layer raises, so callers never have to parse sqlite3 messages."""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """Base class for Patchwork storage errors."""


class DatabaseTooNewError(StorageError):
    """The file was written by a newer Patchwork; touching it could corrupt data."""

    def __init__(self, path: Path, found: int, known: int) -> None:
        self.path = path
        self.found = found
        self.known = known
        super().__init__(
            f"The database at {path} has schema version {found}, but this Patchwork only knows "
            f"versions up to {known}. Upgrade Patchwork, or restore a backup made by this version."
        )


class NotFoundError(StorageError, LookupError):
    """A row that an update or command refers to does not exist."""


class ConflictError(StorageError):
    """The change would break a rule the data must keep (a duplicate, an ended involvement)."""
