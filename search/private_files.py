"""Database files readable by their owner only.

The key database holds key hashes, the events database every shopper's queries and clicks, and
the merchandising database the shop's rules and audit log: none of them is for other users of
the machine. SQLite creates a missing file with the process umask (usually 0644) and gives its
``-wal``/``-shm``/``-journal`` files the main file's permissions, so the main file is created
with mode 0600 before SQLite opens it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_MODE = 0o600
"""Owner read and write, nothing for group and others."""


def prepare_private_db(path: str | Path) -> Path | None:
    """Create a SQLite database file (and its folder) with mode 0600 before it is opened.

    An existing file readable or writable by group or others is narrowed to 0600. In-memory
    databases (``":memory:"``, ``""``) and SQLite URIs are left alone.

    Args:
        path: The database file.

    Returns:
        The file's path, or None for an in-memory database or URI.

    Raises:
        OSError: the folder or file cannot be created.
    """
    text = str(path)
    if text in ("", ":memory:") or text.startswith("file:"):
        return None
    file = Path(text)
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        _narrow(file)
    else:
        os.close(fd)
    # Side files left by an older version or a run under another umask.
    for suffix in ("-wal", "-shm", "-journal"):
        side = file.with_name(file.name + suffix)
        if side.exists():
            _narrow(side)
    return file


def _narrow(file: Path) -> None:
    mode = stat.S_IMODE(file.stat().st_mode)
    if mode & 0o077:
        os.chmod(file, mode & 0o700)


__all__ = ["PRIVATE_MODE", "prepare_private_db"]
