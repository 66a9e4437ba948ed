"""Files and folders that hold secrets (passwords, tokens, keys): readable by their owner only.

`write_private` replaces a file atomically through a fresh temporary file created exclusively
next to it, so a file or symlink someone planted at a predictable name is never written through.
`ensure_private_dir` creates the storage folder 0700, and refuses one that already exists with
access for group or others instead of quietly using it. `create_private_file` makes a file 0600
before a library (SQLite, the E2EE store) opens it, whatever the umask; `exposed_paths` lists
what group or others could reach, and `tighten_tree` closes it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class PrivateDirError(Exception):
    """The storage folder cannot be used safely; the message says what to do."""


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, mode 0600 from the first byte.

    Written to a new, uniquely named temporary file in the same folder (O_EXCL, so never an
    existing file or symlink), synced, renamed over the old one, and the folder synced, so a
    crash leaves either the old or the new content, never half of it. On any error the
    temporary file is removed and `path` is left as it was.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        # mkstemp already creates 0600; made explicit so the guarantee does not rest on it.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the rename durable; harmless where directories cannot be fsynced."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ensure_private_dir(path: Path) -> None:
    """Create the folder with mode 0700 if it is missing; refuse one others can reach.

    An existing folder's mode is the operator's decision, so it is not changed here: a folder
    that group or others may read, write or enter raises PrivateDirError saying how to fix it.
    """
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True)
    except FileExistsError:
        pass
    else:
        # mkdir's mode is narrowed by the umask; set it exactly.
        path.chmod(PRIVATE_DIR_MODE)
        return
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise PrivateDirError(
            f"the storage path {path} is not a folder; set storage.path to a folder for the "
            "bot's data (it is created if it does not exist)"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise PrivateDirError(
            f"the storage folder {path} has mode {mode:o}, so other users on this machine can "
            "reach the bot's database and keys; it must be readable by the bot's user only. "
            f"Run `chmod 700 {path}` and start the bot again."
        )


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist, so whatever opens it next (an
    empty file is a valid empty SQLite database) never creates it with the umask's mode."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) & PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def exposed_paths(root: Path) -> list[tuple[Path, int]]:
    """Every folder and file under `root` (itself included) that group or others may reach,
    with its mode. Symlinks are not followed."""
    found: list[tuple[Path, int]] = []
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            found.append((path, mode))
    return found


def tighten_tree(root: Path) -> list[Path]:
    """Take group and other access off everything below `root` (files 0600 at most, folders
    0700), for files that a library created with the umask's mode; returns what changed.
    `root` itself is left to `ensure_private_dir`, which refuses rather than changes it."""
    changed: list[Path] = []
    for path, mode in exposed_paths(root):
        if path == root:
            continue
        path.chmod(mode & (PRIVATE_DIR_MODE if path.is_dir() else PRIVATE_FILE_MODE))
        changed.append(path)
    return changed
