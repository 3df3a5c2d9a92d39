"""Verified reads of a checkpoint folder: :func:`resolve` the folder, then read its
``config.json`` (:func:`read_json`) or one of the files it lists (:func:`read_json`,
:func:`read_tensors`, :func:`read_bytes`), each checked against the size and SHA-256 that
``config.json`` records.

Every file is opened through :func:`ebmflow.files.open_regular_file`: without following
symbolic links, non-blocking, and accepted only if the open descriptor is a regular file,
so a link to /dev/zero, a FIFO or a path out of the folder is refused before anything is
read. ``config.json`` is read up to :data:`~ebmflow.checkpoint.layout.MAX_CONFIG_BYTES`;
every other file only up to its recorded size, after the size on disk was compared with it.
The checks catch accidental damage, not a deliberate edit (see "Untrusted checkpoints" in
:mod:`ebmflow.checkpoint`).

These readers do not retry: a file replaced by a concurrent save while it was read raises
:class:`~ebmflow.errors.CheckpointError` (``ebmflow.load`` retries on the new folder).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from ebmflow.checkpoint.layout import (
    CONFIG_FILE,
    MAX_CONFIG_BYTES,
    PathLike,
    aside_of,
    check_folder_config,
    parse_json,
    real_path,
    what_is,
)
from ebmflow.errors import CheckpointError
from ebmflow.files import iter_fd, open_regular_file, read_fd


def resolve(path: PathLike) -> Path:
    """The folder holding the checkpoint at ``path``: ``path`` itself, or, when ``path`` is
    missing because a save was interrupted mid-swap, the previous checkpoint it set aside."""
    folder = real_path(path)
    aside = aside_of(folder)
    for _ in range(5):  # a concurrent save may move folders between two checks
        what = what_is(folder)
        if what == "a folder":
            return folder
        if what is not None:
            raise CheckpointError(f"{folder} is {what}, not a checkpoint folder")
        if aside.is_dir():
            return aside
        if not os.path.lexists(folder):
            break
    raise CheckpointError(f"no checkpoint at {folder}: the folder does not exist")


def read_json(
    path: PathLike, name: str = CONFIG_FILE, *, config: Mapping[str, Any] | None = None
) -> Any:
    """Read and parse one JSON file of the checkpoint at ``path``.

    ``config.json`` is checked for its format version and its ``files`` table; any other
    file is first verified against that table (``config`` saves reading config.json again).
    """
    folder = resolve(path)
    if name == CONFIG_FILE:
        return read_config(folder)
    return parse_json(read_bytes(folder, name, config=config), folder / name)


def read_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of ``folder`` (already resolved), read within
    :data:`~ebmflow.checkpoint.layout.MAX_CONFIG_BYTES` and checked for the folder keys."""
    file = folder / CONFIG_FILE
    parsed = parse_json(_read_file(file, MAX_CONFIG_BYTES), file)
    check_folder_config(parsed, file)
    return parsed


def read_tensors(
    path: PathLike,
    name: str,
    *,
    config: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    """Read one safetensors file of the checkpoint at ``path``, verified against the size
    and SHA-256 that ``config.json`` (or ``config``) records for it."""
    folder = resolve(path)
    verified = _verify_file(folder, name, config)
    file = folder / name
    try:
        tensors = safetensors.torch.load_file(file, device=str(device))
    except Exception as exc:
        if _file_identity(file) != verified:
            raise _replaced(file) from None
        raise CheckpointError(
            f"{file} is not a readable safetensors file ({type(exc).__name__}: {exc})"
        ) from exc
    if _file_identity(file) != verified:  # the file read is not the one verified
        raise _replaced(file)
    return tensors


# -- component records ---------------------------------------------------------------------


def read_bytes(path: PathLike, name: str, *, config: Mapping[str, Any] | None = None) -> bytes:
    """The content of one file of the checkpoint at ``path``, verified against the size and
    SHA-256 that ``config.json`` (or ``config``, to save reading it again) records for it."""
    folder = resolve(path)
    record = _file_record(folder, name, config)
    file = folder / name
    fd, _ = _open_listed(folder, name, record)
    try:
        data = read_fd(fd, record["size"], file, CheckpointError)
    finally:
        os.close(fd)
    _check_size(file, len(data), record)
    _check_sha(file, hashlib.sha256(data).hexdigest(), record)
    return data


def _open_regular(file: Path) -> tuple[int, os.stat_result]:
    """Open a file of a checkpoint folder for reading; return the descriptor and its status.
    Only a regular file that is not a symbolic link is accepted (a link could lead to
    /dev/zero or out of the folder). A missing file raises FileNotFoundError for the caller
    to word."""
    try:
        return open_regular_file(file, error=CheckpointError)
    except CheckpointError as exc:
        hint = (
            " (copy the file itself into the folder)"
            if str(exc).endswith("is a symbolic link")
            else ""
        )
        raise CheckpointError(
            f"{exc}; a checkpoint folder holds regular files only{hint}"
        ) from None


def _read_file(file: Path, limit: int) -> bytes:
    try:
        fd, info = _open_regular(file)
    except FileNotFoundError:
        raise CheckpointError(
            f"{file} is missing: {file.parent} is not a complete ebmflow checkpoint"
        ) from None
    try:
        if info.st_size > limit:
            raise CheckpointError(_too_large(file, info.st_size, limit))
        data = read_fd(fd, limit, file, CheckpointError)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while it was read
        raise CheckpointError(_too_large(file, len(data), limit))
    return data


def _too_large(file: Path, size: int, limit: int) -> str:
    return (
        f"{file} is {size} bytes; a checkpoint's {file.name} may hold at most {limit} "
        f"bytes ({limit >> 20} MiB)"
    )


def _file_record(folder: Path, name: str, config: Mapping[str, Any] | None) -> dict:
    if config is None:
        config = read_json(folder)
    record = config["files"].get(name)
    if record is None:
        raise CheckpointError(
            f"{folder / CONFIG_FILE} lists no file {name!r} (it lists: "
            f"{', '.join(config['files']) or 'none'})"
        )
    return record


def _check_size(file: Path, size: int, record: dict) -> None:
    if size != record["size"]:
        raise CheckpointError(
            f"{file} is {size} bytes but {CONFIG_FILE} records {record['size']}: the file is "
            f"truncated or was replaced after saving"
        )


def _check_sha(file: Path, sha256: str, record: dict) -> None:
    if sha256 != record["sha256"]:
        raise CheckpointError(
            f"{file} does not match the SHA-256 recorded in {CONFIG_FILE}: the file is "
            f"corrupted or was modified after saving"
        )


def _open_listed(folder: Path, name: str, record: dict) -> tuple[int, os.stat_result]:
    """Open ``folder/name`` (a regular file, see _open_regular) and check its size against
    ``record`` before anything is read: a FIFO, a link to /dev/zero or a sparse terabyte
    is refused at once."""
    file = folder / name
    try:
        fd, info = _open_regular(file)
    except FileNotFoundError:
        raise CheckpointError(
            f"{file} is missing, but {CONFIG_FILE} lists it: the checkpoint is incomplete"
        ) from None
    if info.st_size != record["size"]:
        os.close(fd)
        _check_size(file, info.st_size, record)
    return fd, info


def listed_size(folder: Path, name: str, config: Mapping[str, Any]) -> int:
    """The size of ``folder/name`` as recorded, after checking that the file there is a
    regular file of that size."""
    record = _file_record(folder, name, config)
    fd, _ = _open_listed(folder, name, record)
    os.close(fd)
    return record["size"]


def _verify_file(folder: Path, name: str, config: Mapping[str, Any] | None) -> tuple[int, int]:
    """Check size and SHA-256 of ``folder/name``; return the (device, inode) checked, so
    that a reader can tell whether a later open found the same file."""
    record = _file_record(folder, name, config)
    file = folder / name
    fd, info = _open_listed(folder, name, record)
    sha = hashlib.sha256()
    size = 0
    try:
        for chunk in iter_fd(fd, record["size"], file, CheckpointError):
            sha.update(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    _check_size(file, size, record)
    _check_sha(file, sha.hexdigest(), record)
    return info.st_dev, info.st_ino


def _file_identity(file: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(file)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _replaced(file: Path) -> CheckpointError:
    return CheckpointError(
        f"{file} was replaced while it was being read (a save to the same folder ran at the "
        f"same time); read it again"
    )
