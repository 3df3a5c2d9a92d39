"""Reading files that may come from an untrusted source: regular files only, never unbounded.

A checkpoint folder or a diffusers pipeline folder is read from wherever a user got it, so a
file in it may be a FIFO (opening it for reading waits for a writer forever), a character
device such as ``/dev/zero`` (reading it never ends), a symbolic link out of the folder, or
a sparse file claiming a terabyte. :func:`open_regular_file` opens without blocking and
checks the open descriptor, so the file checked is the file read; :func:`read_regular_file`
also refuses to read past a byte limit. Both raise the ebmflow error class the caller
names, so a checkpoint reports a :class:`~ebmflow.CheckpointError` and a converter its own
error, with the same wording.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ebmflow.errors import EbmflowError

_CHUNK = 1 << 20

_FILE_TYPES = (
    (stat.S_ISREG, "a file"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)
)


def file_type(mode: int) -> str:
    """What an ``st_mode`` describes, as words: ``"a file"``, ``"a folder"``, ``"a FIFO"``..."""
    return next((name for test, name in _FILE_TYPES if test(mode)), "a special file")


def open_regular_file(
    path: str | os.PathLike,
    *,
    follow_symlinks: bool = False,
    error: type[EbmflowError] = EbmflowError,
) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading and return the descriptor and its ``fstat``.

    Only a regular file is accepted, checked on the open descriptor (``O_NONBLOCK`` makes
    opening a FIFO return at once). With ``follow_symlinks=False`` a symbolic link is
    refused too (``O_NOFOLLOW``), so a link cannot lead the read out of its folder. A missing
    file raises ``FileNotFoundError`` for the caller to word; anything else raises ``error``.
    The caller closes the descriptor.
    """
    path = Path(path)
    flags = _OPEN_FLAGS
    if not follow_symlinks:
        if not hasattr(os, "O_NOFOLLOW") and os.path.islink(path):
            raise error(f"{path} is a symbolic link")
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if not follow_symlinks and os.path.islink(path):
            raise error(f"{path} is a symbolic link") from None
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise error(f"{path} is not a regular file (it is {file_type(info.st_mode)})")
    return fd, info


def iter_fd(
    fd: int, limit: int, path: str | os.PathLike, error: type[EbmflowError] = EbmflowError
) -> Iterator[bytes]:
    """The chunks read from ``fd`` to its end, but never more than ``limit + 1`` bytes in
    all (one byte more than allowed shows that the file is larger than it should be)."""
    total = 0
    try:
        while total <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                return
            total += len(chunk)
            yield chunk
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None


def read_fd(
    fd: int, limit: int, path: str | os.PathLike, error: type[EbmflowError] = EbmflowError
) -> bytes:
    """All of :func:`iter_fd`'s chunks, joined."""
    return b"".join(iter_fd(fd, limit, path, error))


def read_regular_file(
    path: str | os.PathLike,
    *,
    max_bytes: int,
    follow_symlinks: bool = False,
    error: type[EbmflowError] = EbmflowError,
) -> bytes:
    """The bytes of the regular file ``path``, of at most ``max_bytes`` (checked before
    reading and again while reading, in case it grows). See :func:`open_regular_file` for
    what is refused; a missing file raises ``FileNotFoundError``."""
    fd, info = open_regular_file(path, follow_symlinks=follow_symlinks, error=error)
    try:
        if info.st_size > max_bytes:
            raise error(
                f"{path} is {info.st_size} bytes, larger than allowed: at most "
                f"{max_bytes} bytes are read"
            )
        data = read_fd(fd, max_bytes, path, error)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{path} is larger than allowed: at most {max_bytes} bytes are read")
    return data
