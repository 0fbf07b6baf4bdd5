"""Crash-safe file writes: a reader sees the old file or the new one, never a mix.

A writer killed mid-write (``kill -9``, power cut) leaves its temporary file behind. Every
write to a path holds an exclusive lock on ``.NAME.lock`` beside it; holding that lock, no
other writer of the same path is running, so the temp files of that path's pattern are debris
of dead writers and are removed (and logged) before the new one is made.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_open", "atomic_write", "fsync_dir", "remove_debris"]

_log = logging.getLogger("veritee.fs")


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: Path, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path``; on clean exit fsync it, rename over ``path``, fsync
    the directory. On any exception the temp file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _path_lock(path):
        for stale in remove_debris(path):
            _log.warning("removed %s, left by an interrupted write to %s", stale, path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)


@contextmanager
def _path_lock(path: Path) -> Iterator[None]:
    # flock is released by the kernel when its holder dies, so a killed writer never blocks
    # the next one; the lock file itself (empty) stays.
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_debris(path: Path) -> list[Path]:
    """Remove the temp files interrupted writes to ``path`` left; return them.

    Call only while holding ``path``'s write lock (as :func:`atomic_open` does): then no live
    writer owns such a file. Only names of the exact pattern ``atomic_open`` creates
    (``.NAME.`` + mkstemp's 8 characters + ``.tmp``) are touched.
    """
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp")
    removed: list[Path] = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        candidate = path.parent / name
        if pattern.fullmatch(name) and candidate.is_file() and not candidate.is_symlink():
            try:
                candidate.unlink()
            except OSError:
                continue
            removed.append(candidate)
    return removed


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, directory fsync)."""
    with atomic_open(path, mode) as fh:
        fh.write(data)
