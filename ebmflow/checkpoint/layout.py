"""The checkpoint folder's layout: file names, the format version, the bounds on what is
read, the check of ``config.json``'s folder keys, and the paths a save uses beside a folder.

``config.json`` holds ``format_version``, ``ebmflow_version`` and ``files`` (the size and
SHA-256 of every other file of the folder) besides whatever its writer stores; a folder
whose ``config.json`` lacks them, or records a newer format, is not read. JSON read from a
checkpoint may nest at most :data:`MAX_JSON_DEPTH` levels, checked without recursion, so a
crafted file ends as a :class:`~ebmflow.errors.CheckpointError`, never a RecursionError.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any

from ebmflow.errors import CheckpointError
from ebmflow.files import file_type

#: The newest checkpoint format this ebmflow reads and the one it writes.
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ARGUMENTS_FILE = "arguments.safetensors"

#: The largest ``config.json`` that is read or written. It holds constructor arguments and
#: metadata (tensors go to safetensors files), so this is far more than any real one needs,
#: and it bounds what a crafted one (a link to /dev/zero, a sparse terabyte) can cost.
MAX_CONFIG_BYTES = 16 << 20
#: How deeply JSON read from a checkpoint may nest (lists and objects). Real configs nest
#: about ten levels; the bound keeps every reader and decoder far from Python's recursion
#: limit.
MAX_JSON_DEPTH = 64
#: The plain file names a checkpoint folder may hold (besides ``config.json``).
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: The keys of ``config.json`` that the folder format itself sets.
RESERVED_KEYS = ("format_version", "ebmflow_version", "files")
_SHA256 = re.compile(r"[0-9a-f]{64}")
PathLike = str | os.PathLike


def real_path(path: PathLike) -> Path:
    """``path`` with symbolic links resolved: a link at a checkpoint's name is followed."""
    return Path(os.path.realpath(os.fspath(path)))


def aside_of(folder: Path) -> Path:
    """Where a save puts the previous checkpoint ``folder`` while it swaps in the new one."""
    return folder.parent / f".{folder.name}.ebmflow-old"


def what_is(path: Path) -> str | None:
    """What ``path`` names after following symbolic links ("a folder", "a file", "a FIFO",
    "a symbolic link loop" ...), or ``None`` if nothing."""
    try:
        return file_type(os.stat(path).st_mode)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"unreadable ({exc.strerror})"


def parse_json(data: bytes, file: Path) -> Any:
    """The JSON value in ``data`` (the content of ``file``), nested at most
    :data:`MAX_JSON_DEPTH` levels; anything else is a CheckpointError naming the file."""
    try:
        parsed = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{file} is not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{file} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:  # deeper than Python's parser follows
        raise too_deep(str(file)) from None
    check_json_depth(parsed, str(file))
    return parsed


def too_deep(where: str) -> CheckpointError:
    """The error for JSON at ``where`` nested deeper than :data:`MAX_JSON_DEPTH` levels."""
    return CheckpointError(
        f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels (lists and objects); "
        f"ebmflow writes and reads at most {MAX_JSON_DEPTH}"
    )


def check_json_depth(value: Any, where: str) -> None:
    """Refuse JSON that nests lists and objects more than MAX_JSON_DEPTH levels deep,
    without recursion (so that no depth can raise RecursionError here)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > MAX_JSON_DEPTH:
            raise too_deep(where)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def check_folder_config(config: Any, file: Path) -> None:
    """Refuse ``config`` (parsed from ``file``) unless it holds the folder keys: a format
    version this ebmflow reads, ``ebmflow_version``, and a ``files`` table of plain file
    names, each with a SHA-256 and a size."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} must hold a JSON object, got {type(config).__name__}")
    for key in RESERVED_KEYS:
        if key not in config:
            raise CheckpointError(
                f"{file} has no {key!r}: it was not written by ebmflow.save (keys: "
                f"{', '.join(map(repr, config)) or 'none'})"
            )
    version = config["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{file}: 'format_version' must be an integer ≥ 1, got {version!r}")
    if version > FORMAT_VERSION:
        from ebmflow import __version__

        raise CheckpointError(
            f"{file} was written by a newer ebmflow ({config.get('ebmflow_version')}, "
            f"checkpoint format {version}); this ebmflow {__version__} reads formats up to "
            f"{FORMAT_VERSION}: upgrade ebmflow (pip install -U ebmflow)"
        )
    if not isinstance(config["ebmflow_version"], str):
        raise CheckpointError(f"{file}: 'ebmflow_version' must be a string")
    files = config["files"]
    if not isinstance(files, dict):
        raise CheckpointError(
            f"{file}: 'files' must be an object of file name -> "
            f"{{sha256, size}}, got {type(files).__name__}"
        )
    for name, record in files.items():
        if not FILE_NAME.fullmatch(name) or name == CONFIG_FILE:
            raise CheckpointError(
                f"{file}: 'files' lists {name!r}, which is not a plain "
                f"file name of the checkpoint folder"
            )
        ok = (
            isinstance(record, dict)
            and isinstance(record.get("sha256"), str)
            and _SHA256.fullmatch(record["sha256"]) is not None
            and isinstance(record.get("size"), int)
            and not isinstance(record["size"], bool)
            and record["size"] >= 0
        )
        if not ok:
            raise CheckpointError(
                f"{file}: the 'files' entry of {name!r} must be {{\"sha256\": 64 hex digits, "
                f'"size": bytes}}, got {record!r}'
            )
