"""Files and folders that hold secrets (passwords, tokens, keys): readable by their owner only.

`write_private` replaces a file atomically through a fresh temporary file created exclusively
next to it, so a file or symlink someone planted at a predictable name is never written through.
`ensure_private_dir` creates the storage folder 0700, and refuses one that already exists with
access for group or others instead of quietly using it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

PRIVATE_DIR_MODE = 0o700


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
