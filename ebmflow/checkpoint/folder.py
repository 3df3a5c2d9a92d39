"""The atomic write of a checkpoint folder: :func:`write_checkpoint_folder`.

Atomic replacement
------------------
A save writes the whole folder as a hidden sibling ``.NAME.ebmflow-tmp.HOST.PID.TOKEN``,
fsyncs every file and the folder, and only then swaps it in:

1. rename ``NAME`` (the previous checkpoint) to ``.NAME.ebmflow-old``;
2. rename the new folder to ``NAME``;
3. rename ``.NAME.ebmflow-old`` to a ``.NAME.ebmflow-trash.TOKEN`` name and delete it.

Renames within a folder are atomic, so at every instant either ``NAME`` is a complete
checkpoint, or ``NAME`` is missing and ``.NAME.ebmflow-old`` is the complete previous one
(between steps 1 and 2). :func:`resolve` — and so ``load``, :func:`read_json` and
:func:`read_tensors` — falls back to that copy when ``NAME`` is missing, so a process killed
at any moment leaves ``load(path)`` working. The aside name is only ever given to a
complete checkpoint and is retired by a rename before it is deleted, so it never names a
half-deleted folder. The next save finishes an interrupted one: it removes trash folders and
temporary folders whose writer process is gone (same host, dead PID). Saves to the same path
from two processes at once are not supported (train with one writer, e.g. rank 0).

``save`` replaces ``NAME`` only if it is missing, an empty folder, or provably an ebmflow
checkpoint folder: a ``config.json`` that passes every check ``load`` makes of it, and
besides it only regular files (no folders, no symbolic links) that its ``files`` table
lists, each of the recorded size. Anything else is someone's data and is refused. A
symbolic link at ``NAME`` itself is followed: the real folder is replaced.

The primitive is shared by ``ebmflow.save`` and every other checkpoint writer (the Trainer
adds its training state to the same folder): ``files`` maps a file name to ``bytes`` or to
a ``dict[str, Tensor]`` (written as safetensors), ``config`` is the JSON object written as
``config.json``, to which ``format_version``, ``ebmflow_version`` and ``files`` are added.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from ebmflow.checkpoint.layout import (
    CONFIG_FILE,
    FILE_NAME,
    FORMAT_VERSION,
    MAX_CONFIG_BYTES,
    RESERVED_KEYS,
    PathLike,
    aside_of,
    check_json_depth,
    real_path,
    too_deep,
    what_is,
)
from ebmflow.checkpoint.read import read_config
from ebmflow.errors import CheckpointError
from ebmflow.files import file_type

_CHUNK = 1 << 20


def write_checkpoint_folder(
    path: PathLike,
    files: Mapping[str, bytes | Mapping[str, Tensor]],
    config: Mapping[str, Any],
) -> Path:
    """Atomically write a checkpoint folder: ``files`` plus ``config.json``.

    Args:
        path: the folder; replaced as a whole if it is an ebmflow checkpoint folder (see the
            module docstring), refused if it holds anything else.
        files: file name -> ``bytes`` (written as they are) or ``dict[str, Tensor]``
            (written as safetensors; shared and non-contiguous tensors are copied). Names
            are plain file names (letters, digits, ``.``, ``_``, ``-``), not ``config.json``.
        config: the JSON object for ``config.json``. ``format_version``,
            ``ebmflow_version`` and ``files`` (size and SHA-256 of each file) are set here.

    Returns:
        The checkpoint folder (symbolic links resolved).
    """
    target = real_path(path)
    for name in files:
        if not isinstance(name, str) or not FILE_NAME.fullmatch(name) or name == CONFIG_FILE:
            raise CheckpointError(
                f"invalid checkpoint file name {name!r}: use a plain file name of letters, "
                f"digits, '.', '_' and '-' other than {CONFIG_FILE!r}"
            )
    body = {k: v for k, v in config.items() if k not in RESERVED_KEYS}
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint config is not JSON: {exc}") from None
    except RecursionError:
        raise too_deep("cannot save the checkpoint config") from None
    # never write what load refuses to read
    check_json_depth(body, "cannot save the checkpoint config")
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(target)
    _clean_leftovers(target)
    tmp = target.parent / (
        f".{target.name}.ebmflow-tmp.{_host_tag()}.{os.getpid()}.{secrets.token_hex(4)}"
    )
    tmp.mkdir()
    try:
        records = {}
        for name, content in files.items():
            records[name] = _write_file(tmp / name, content)
        from ebmflow import __version__

        full = {
            "format_version": FORMAT_VERSION,
            "ebmflow_version": __version__,
            **body,
            "files": records,
        }
        data = (json.dumps(full, indent=2, allow_nan=False) + "\n").encode("utf-8")
        if len(data) > MAX_CONFIG_BYTES:
            raise CheckpointError(
                f"cannot save the checkpoint config: it would be {len(data)} bytes, and "
                f"config.json may hold at most {MAX_CONFIG_BYTES >> 20} MiB; store large "
                f"values as tensors"
            )
        _write_file(tmp / CONFIG_FILE, data)
        _fsync_dir(tmp)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems do not support fsync on directories
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_file(file: Path, content: bytes | Mapping[str, Tensor]) -> dict[str, Any]:
    if isinstance(content, (bytes, bytearray, memoryview)):
        with open(file, "xb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        data = bytes(content)
        return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if not isinstance(content, Mapping):
        raise TypeError(
            f"checkpoint file {file.name!r}: expected bytes or a dict of tensors, got "
            f"{type(content).__name__}"
        )
    tensors = _storable(content, file.name)
    try:
        safetensors.torch.save_file(tensors, file, metadata={"format": "pt"})
    except Exception as exc:
        raise CheckpointError(f"cannot write {file.name}: {type(exc).__name__}: {exc}") from exc
    fd = os.open(file, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return _digest(file)


def _storable(tensors: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    """Detached, contiguous CPU tensors, copied where they share memory (safetensors refuses
    shared storage: tied weights, views of one buffer)."""
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for key, tensor in tensors.items():
        if not isinstance(key, str) or not isinstance(tensor, Tensor):
            raise CheckpointError(
                f"cannot write {name}: entry {key!r} is a {type(tensor).__name__}; safetensors "
                f"stores tensors under string keys only"
            )
        if tensor.layout != torch.strided:
            raise CheckpointError(
                f"cannot write {name}: {key!r} is a {tensor.layout} tensor; only dense tensors "
                f"can be stored (convert it with .to_dense())"
            )
        tensor = tensor.detach().cpu().contiguous()
        if tensor.numel() > 0:
            storage = tensor.untyped_storage()
            if storage.data_ptr() in seen or storage.nbytes() != (
                tensor.numel() * tensor.element_size()
            ):
                tensor = tensor.clone()
                storage = tensor.untyped_storage()
            seen.add(storage.data_ptr())
        out[key] = tensor
    return out


def _digest(file: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    size = 0
    with open(file, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return {"sha256": sha.hexdigest(), "size": size}


def _check_replaceable(target: Path) -> None:
    """Refuse to replace ``target`` unless it is missing, an empty folder, or provably an
    ebmflow checkpoint folder (see :func:`_not_a_checkpoint`): replacing deletes it."""
    what = what_is(target)
    if what is None:
        return
    if what != "a folder":
        raise CheckpointError(
            f"refusing to save to {target}: it is {what}, not a checkpoint folder; choose "
            f"another path or remove it yourself"
        )
    entries = sorted(os.listdir(target))
    if not entries:
        return
    reason = _not_a_checkpoint(target, entries)
    if reason is not None:
        raise CheckpointError(
            f"refusing to save to {target}: it is not an ebmflow checkpoint folder "
            f"({reason}), and saving replaces the whole folder. Save to a new or empty "
            f"folder, or move those files away"
        )


def _not_a_checkpoint(target: Path, entries: list[str]) -> str | None:
    """Why the folder ``target`` (holding ``entries``) is not provably an ebmflow checkpoint
    folder, or ``None`` if it is one: a ``config.json`` that passes every check ``load``
    makes of it, and besides it only regular files that its ``files`` table lists, each of
    the recorded size. The SHA-256 is not compared: a checkpoint damaged in place is still
    ebmflow's to replace, while a folder, a link or a file of another size is not."""
    if CONFIG_FILE not in entries:
        return f"it holds {_some(entries)}, which no ebmflow config.json lists"
    try:
        config = read_config(target)
    except CheckpointError as exc:
        return str(exc)
    foreign = [e for e in entries if e != CONFIG_FILE and e not in config["files"]]
    if foreign:
        return f"it holds {_some(foreign)}, which its config.json does not list"
    for entry in entries:
        if entry == CONFIG_FILE:
            continue
        file = target / entry
        mode = os.lstat(file)
        if not stat.S_ISREG(mode.st_mode):
            return f"{file} is {file_type(mode.st_mode)}"
        recorded = config["files"][entry]["size"]
        if mode.st_size != recorded:
            return f"{file} is {mode.st_size} bytes but {CONFIG_FILE} records {recorded}"
    return None


def _some(names: list[str]) -> str:
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(names[:5]) + more


def _swap_into_place(tmp: Path, target: Path) -> None:
    parent = target.parent
    aside = aside_of(target)
    if os.path.lexists(target):
        _check_replaceable(target)
        if os.path.lexists(aside):  # left by an interrupted save; target is newer
            _retire(aside, target)
        os.rename(target, aside)
        _fsync_dir(parent)
        os.rename(tmp, target)
        _fsync_dir(parent)
    else:
        os.rename(tmp, target)
        _fsync_dir(parent)
    if os.path.lexists(aside):
        # The new checkpoint is in place: failing to delete the old one must not fail the
        # save (the next save retires it again).
        with contextlib.suppress(OSError):
            _retire(aside, target)


def _retire(aside: Path, target: Path) -> None:
    """Delete the aside copy of ``target``, first renaming it so that the aside name never
    names a partly deleted folder."""
    trash = target.parent / f".{target.name}.ebmflow-trash.{secrets.token_hex(4)}"
    os.rename(aside, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _clean_leftovers(target: Path) -> None:
    """Remove the trash of earlier saves to ``target`` and the temporary folders of saves
    whose process is gone (``.NAME.ebmflow-tmp.HOST.PID.TOKEN`` with this host and a dead
    PID; never on Windows, where probing a PID is not harmless)."""
    tmp_prefix = f".{target.name}.ebmflow-tmp."
    trash_prefix = f".{target.name}.ebmflow-trash."
    here = _host_tag()
    try:
        entries = os.listdir(target.parent)
    except OSError:
        return
    for entry in entries:
        stale = entry.startswith(trash_prefix)
        if entry.startswith(tmp_prefix) and os.name != "nt":
            parts = entry[len(tmp_prefix) :].split(".")
            stale = (
                len(parts) == 3
                and parts[0] == here
                and parts[1].isdigit()
                and not _pid_alive(int(parts[1]))
            )
        if stale:
            shutil.rmtree(target.parent / entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
