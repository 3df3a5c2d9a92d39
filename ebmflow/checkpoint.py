"""Checkpoints: a folder of JSON and safetensors, written atomically, read with verification.

``ebmflow.save(obj, path)`` writes a registered component (an Energy, Objective, Sampler
or noise schedule: a :class:`~ebmflow.config.Configurable` that a plugin registers under
one of :data:`CHECKPOINT_KINDS`) and
``ebmflow.load(path)`` rebuilds it through the registry. Only JSON and safetensors are
read and written: nothing is ever unpickled. What a checkpoint from an untrusted source can
do is described under "Untrusted checkpoints" below.

The folder
----------
``config.json``
    What to build and how to check the rest of the folder (arguments illustrative)::

        {
          "format_version": 1,
          "ebmflow_version": "0.1.0",
          "kind": "objective",
          "name": "cd",
          "plugin": "cd",
          "distribution": "ebmflow-cd",
          "plugin_version": "0.1.0",
          "arguments": {
            "sampler": {"__component__": {"kind": "sampler", "name": "langevin",
                        "plugin": "ebmflow", "distribution": "ebmflow",
                        "plugin_version": "0.1.0",
                        "arguments": {"step_size": 0.01, "noise_scale": null}}},
            "shape": {"__tuple__": [2]},
            "init": {"__tensor__": "init"}
          },
          "files": {
            "arguments.safetensors": {"sha256": "5f1c…", "size": 96},
            "model.safetensors": {"sha256": "9a0b…", "size": 1352}
          },
          "metadata": {"note": "anything JSON the caller passed as save(metadata=...)"}
        }

    ``arguments`` are the constructor arguments (``obj.get_config()``) in JSON. Values JSON
    has no type for are tagged objects with one key: ``{"__tuple__": [...]}``,
    ``{"__tensor__": key}`` (the tensor is ``key`` in ``arguments.safetensors``),
    ``{"__component__": {...}}`` (an argument that is itself a registered component, rebuilt
    first, recursively), ``{"__dtype__": "float64"}``, ``{"__float__": "nan" | "inf" |
    "-inf"}``, and ``{"__dict__": {...}}`` for a dict argument that happens to use one of
    these keys. ``files`` holds the size and SHA-256 of every other file in the folder;
    ``metadata`` is optional and free-form.
``model.safetensors``
    ``obj.state_dict()`` for components that are ``nn.Module``\\ s (energies, objectives);
    written even when the state dict is empty. Components that are not modules (samplers
    hold only hyperparameters) have no weights file: their ``config.json`` is the whole
    checkpoint.
``arguments.safetensors``
    Tensor-valued constructor arguments, present only when there are some.

Loading rebuilds the component through its plugin's factory with the decoded arguments,
then ``load_state_dict(strict=True)``. Only the nested components tagged
``__component__`` are built: a plain dict argument stays a dict even when it has ``kind``
and ``name`` keys (``host.create`` would read such a dict as a component config). Tensors
keep the dtype they were saved with, so a round trip is bit-identical; a floating-point
tensor of the model loads from float16, bfloat16, float32 or float64 weights, every other
tensor (integer counters, boolean masks) only from exactly its own dtype. A missing or
failed plugin, a truncated or modified file, a format written by a newer ebmflow or
weights that do not fit the rebuilt component raise
:class:`~ebmflow.errors.CheckpointError` saying which file and what to do.

Untrusted checkpoints
---------------------
A checkpoint folder may come from anyone, so loading treats it as hostile input:

* It cannot execute code: nothing is unpickled, and only the components of
  :data:`CHECKPOINT_KINDS` (energy, objective, sampler, noise_schedule) are built, at the
  top and nested. A ``config.json`` naming a log-Z estimator (which would run), a
  converter (which would read another folder) or a dataset is refused before any factory
  is called. It can still choose any installed component of those kinds and its
  arguments, so it runs that component's constructor: install only plugins you trust.
* It cannot read outside its folder: every file is opened without following symbolic
  links and must be a regular file (checked on the open descriptor, opened non-blocking,
  so a FIFO cannot block), ``files`` may list only plain names in the folder, and no
  first-party component of those kinds opens a file when it is built.
* It cannot allocate without bound: ``config.json`` is read only up to
  :data:`MAX_CONFIG_BYTES`; any other file only up to its recorded size (plus one byte to
  notice growth), after its size was compared; JSON may nest at most
  :data:`MAX_JSON_DEPTH` levels and a component's arguments hold at most
  :data:`MAX_ARGUMENT_VALUES` values; while the component is built, torch may allocate at
  most :data:`BUILD_BYTES_PER_FILE_BYTE` times the bytes of its tensor files plus
  :data:`MAX_BUILD_EXTRA_BYTES` (each tensor factory is sized on the meta device first, so
  the call that would exceed it fails before allocating).
* It cannot run for long: reading is bounded by the sizes of the files present; the
  bounds above keep building short.

The SHA-256 values live in ``config.json`` itself, so they catch accidental damage
(truncation, bit rot, a copy interrupted midway, a file swapped by hand) but not a
deliberate edit: whoever can change the weights can re-hash them. A checkpoint is as
trustworthy as its source; the checks above only bound what a hostile one can do.

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

Concurrent readers
------------------
``load`` is correct beside a writer: it returns one complete checkpoint, never a mix, and
never reports damage that a concurrent save caused. It holds the folder it reads open (so
its inode number cannot be handed to a new folder meanwhile), and when a read fails it
compares that folder with the one ``path`` names now; if a save swapped another in, it
starts again on the new one (up to twenty times), and only an error from a folder that is
still in place is reported. Saves never change a folder in place, so such an error is the
folder's own. :func:`read_json` and :func:`read_tensors` do not retry: they verify each
file, and a file replaced while it was read raises ``CheckpointError``.

Helpers for other checkpoint writers
------------------------------------
The Trainer keeps optimizer state, RNG states and its step in the same kind of folder:

:func:`write_checkpoint_folder(path, files, config) <write_checkpoint_folder>`
    the atomic primitive ``save`` uses. ``files`` maps a file name to ``bytes`` or to a
    ``dict[str, Tensor]`` (written as safetensors); ``config`` is the JSON object written as
    ``config.json``, to which ``format_version``, ``ebmflow_version`` and ``files`` are added.
:func:`read_json(path, name="config.json") <read_json>`,
:func:`read_tensors(path, name) <read_tensors>`
    read one file, verified against the size and SHA-256 in ``config.json`` (config.json
    itself is checked for valid JSON, its format version and its ``files`` table), with the
    protections of "Untrusted checkpoints": regular files only, sizes and nesting bounded.
:func:`resolve(path) <resolve>`
    the folder that holds the checkpoint at ``path`` (itself, or the copy an interrupted
    save left aside); resolve once and pass the result on to read several files of one
    checkpoint consistently.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import numbers
import os
import re
import secrets
import shutil
import socket
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ebmflow.config import Configurable
from ebmflow.errors import CheckpointError, ConfigError, EbmflowError
from ebmflow.files import file_type, iter_fd, open_regular_file, read_fd
from ebmflow.registry import (
    Component,
    PluginHost,
    _normalize_plugin_name,
    default_host,
    normalize_kind,
)

#: The newest checkpoint format this ebmflow reads and the one it writes.
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ARGUMENTS_FILE = "arguments.safetensors"

#: The component kinds a checkpoint holds, at the top and as nested ``__component__``
#: arguments. Loading builds nothing else: log-Z estimators and converters run computations
#: or read other folders when they are "built", and datasets are data, not models.
CHECKPOINT_KINDS = ("energy", "objective", "sampler", "noise_schedule")
#: The largest ``config.json`` that is read or written. It holds constructor arguments and
#: metadata (tensors go to safetensors files), so this is far more than any real one needs,
#: and it bounds what a crafted one (a link to /dev/zero, a sparse terabyte) can cost.
MAX_CONFIG_BYTES = 16 << 20
#: How deeply JSON read from a checkpoint may nest (lists and objects). Real configs nest
#: about ten levels; the bound keeps every reader and decoder far from Python's recursion
#: limit.
MAX_JSON_DEPTH = 64
#: How many JSON values (numbers, strings, lists, objects ...) a component's arguments may
#: hold, nested components included. Long data belongs in tensor arguments, which ``save``
#: stores in ``arguments.safetensors``; the bound keeps a crafted ``widths`` list of a
#: million entries from building a million layers.
MAX_ARGUMENT_VALUES = 16384
#: While a component is built, its tensors may take at most this many times the bytes of
#: the checkpoint's tensor files, plus MAX_BUILD_EXTRA_BYTES (room for initialisation
#: temporaries, non-persistent buffers and weight-less components).
BUILD_BYTES_PER_FILE_BYTE = 4
MAX_BUILD_EXTRA_BYTES = 64 << 20

_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_RESERVED = ("format_version", "ebmflow_version", "files")
_MARKERS = ("__tensor__", "__tuple__", "__component__", "__dtype__", "__float__", "__dict__")
_COMPONENT_KEYS = {
    "kind": str, "name": str, "plugin": str, "distribution": (str, type(None)),
    "plugin_version": (str, type(None)), "arguments": dict,
}
PathLike = str | os.PathLike


# -- save / load -----------------------------------------------------------------------


def save(
    obj: Any,
    path: PathLike,
    *,
    host: PluginHost | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``obj`` (a registered component) as a checkpoint folder at ``path``.

    Args:
        obj: an object whose class a plugin of ``host`` registers as one of
            :data:`CHECKPOINT_KINDS` (an Energy, Objective, Sampler or noise schedule).
            Ad-hoc compositions such as ``e1 + e2`` are not components: save the parts.
        path: the folder to write; its parent folders are created. An existing checkpoint
            there is replaced atomically; a folder with other files is refused.
        host: the registry that knows ``obj``'s component (default ``ebmflow.default_host()``).
        metadata: free-form JSON stored as ``config.json``'s ``metadata``.

    Returns:
        The checkpoint folder.
    """
    host = default_host() if host is None else host
    component = _component_of(obj, host)
    _check_savable_kind(component, type(obj))
    tensors: dict[str, Tensor] = {}
    config = _component_record(component, host)
    try:
        config["arguments"] = _encode_arguments(obj, host, tensors, root=obj, prefix="")
    except RecursionError:
        raise CheckpointError(
            f"cannot save {type(obj).__qualname__}: its arguments nest too deeply to store "
            f"(load reads at most {MAX_JSON_DEPTH} levels of JSON)"
        ) from None
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise CheckpointError(
                f"metadata must be a dict of JSON values, got {type(metadata).__name__}"
            )
        try:
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"metadata must be JSON (dicts, lists, strings, finite numbers, booleans, "
                f"null): {exc}"
            ) from None
        config["metadata"] = dict(metadata)
    files: dict[str, bytes | Mapping[str, Tensor]] = {}
    if isinstance(obj, nn.Module):
        files[WEIGHTS_FILE] = obj.state_dict()
    if tensors:
        files[ARGUMENTS_FILE] = tensors
    return write_checkpoint_folder(path, files, config)


def load(
    path: PathLike,
    *,
    host: PluginHost | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> Any:
    """Rebuild the component saved at ``path`` by :func:`save`.

    Args:
        path: the checkpoint folder.
        host: the registry to build the component with (default ``ebmflow.default_host()``);
            the plugin that registered it must be installed.
        device: where modules end up (``obj.to(device)``). The component is built on the
            CPU, so tensor arguments reach its constructor as CPU tensors.
        dtype: cast floating-point parameters and buffers to this dtype; by default they
            keep the dtype they were saved with.

    Returns:
        The component. Modules come back as their constructor leaves them (in training
        mode); call ``.eval()`` before sampling with dropout or batch-norm layers.

    Raises:
        CheckpointError: a missing, truncated or modified file, a format from a newer
            ebmflow, a plugin that is not installed, weights that do not fit, or a
            checkpoint outside the bounds described in the module docstring.
        ConfigError: ``dtype`` is not a floating-point dtype.

    A save that replaces the folder while it is being read makes the files disagree with
    the ``config.json`` read first; the load then starts again on the new folder (see
    "Concurrent readers" in the module docstring), so a reader running beside a writer
    sees one complete checkpoint and no false error.
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ConfigError(f"dtype must be a floating-point torch.dtype or None, got {dtype!r}")
    host = default_host() if host is None else host
    attempts = 20  # a retry happens only after another save replaced the folder
    for attempt in range(attempts):
        folder = resolve(path)
        with _pinned(folder) as identity:
            try:
                return _load_folder(folder, host, device, dtype)
            except CheckpointError:
                if attempt == attempts - 1 or not _replaced_since(path, folder, identity):
                    raise
    raise AssertionError("unreachable")  # pragma: no cover


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return info.st_dev, info.st_ino


@contextlib.contextmanager
def _pinned(folder: Path) -> Any:
    """Hold ``folder`` open while it is read and yield its (device, inode).

    A folder that is open keeps its inode number even after a save replaced and deleted
    it, so no new folder can come to carry the same number while it is compared (ext4
    hands a freed number to the next new folder at once). Where folders cannot be opened
    (Windows), the number is read without holding it.
    """
    fd = None
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    try:
        if fd is None:
            yield _identity(folder)
        else:
            info = os.fstat(fd)
            yield info.st_dev, info.st_ino
    finally:
        if fd is not None:
            os.close(fd)


def _replaced_since(path: PathLike, folder: Path, identity: tuple[int, int] | None) -> bool:
    """Whether ``path`` now names another checkpoint folder than ``folder`` (pinned with
    ``identity``): another save swapped one in, or moved ``folder`` aside, while it was read.
    Saves never change a folder in place, so an error from a folder that is still the one
    ``path`` names is the folder's own."""
    try:
        now = resolve(path)
    except CheckpointError:
        return True
    return now != folder or identity is None or _identity(now) != identity


def _load_folder(
    folder: Path, host: PluginHost, device: str | torch.device, dtype: torch.dtype | None
) -> Any:
    config = read_json(folder)
    where = f"{folder / CONFIG_FILE}"
    _check_component_record(config, where)
    _check_argument_count(config["arguments"], where)
    files = config["files"]
    arg_tensors = (
        read_tensors(folder, ARGUMENTS_FILE, config=config) if ARGUMENTS_FILE in files else {}
    )
    qualified = f"{config['kind']} '{config['plugin']}:{config['name']}'"
    # The budget counts the weights file's size before it is read, so the size must be real
    files_bytes = sum(_listed_size(folder, name, config) for name in files
                      if name in (WEIGHTS_FILE, ARGUMENTS_FILE))
    with _AllocationBudget(files_bytes, qualified, where):
        obj = _build(config, host, arg_tensors, where=where)
    if isinstance(obj, nn.Module):
        if WEIGHTS_FILE not in files:
            raise CheckpointError(
                f"{folder}: {qualified} is a module but the checkpoint has no {WEIGHTS_FILE} "
                f"(config.json lists: {', '.join(files) or 'no files'})"
            )
        state = read_tensors(folder, WEIGHTS_FILE, config=config)
        _load_state(obj, state, folder / WEIGHTS_FILE, qualified, config)
        obj.to(device=device)
        if dtype is not None:
            obj.to(dtype=dtype)
    elif WEIGHTS_FILE in files:
        raise CheckpointError(
            f"{folder}: the checkpoint has {WEIGHTS_FILE} but {qualified} builds a "
            f"{type(obj).__name__}, which is not an nn.Module and has no weights to load"
        )
    return obj


# -- the atomic folder primitive ---------------------------------------------------------


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
    target = _real(path)
    for name in files:
        if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or name == CONFIG_FILE:
            raise CheckpointError(
                f"invalid checkpoint file name {name!r}: use a plain file name of letters, "
                f"digits, '.', '_' and '-' other than {CONFIG_FILE!r}"
            )
    body = {k: v for k, v in config.items() if k not in _RESERVED}
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint config is not JSON: {exc}") from None
    except RecursionError:
        raise _too_deep("cannot save the checkpoint config") from None
    # never write what load refuses to read
    _check_json_depth(body, "cannot save the checkpoint config")
    if isinstance(body.get("arguments"), dict):
        _check_argument_count(body["arguments"], "cannot save the checkpoint config")
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
            _reached(f"wrote {name}")
        from ebmflow import __version__

        full = {"format_version": FORMAT_VERSION, "ebmflow_version": __version__, **body,
                "files": records}
        data = (json.dumps(full, indent=2, allow_nan=False) + "\n").encode("utf-8")
        if len(data) > MAX_CONFIG_BYTES:
            raise CheckpointError(
                f"cannot save the checkpoint config: it would be {len(data)} bytes, and "
                f"config.json may hold at most {MAX_CONFIG_BYTES >> 20} MiB; store large "
                f"values as tensors"
            )
        _write_file(tmp / CONFIG_FILE, data)
        _fsync_dir(tmp)
        _reached("written")
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve(path: PathLike) -> Path:
    """The folder holding the checkpoint at ``path``: ``path`` itself, or, when ``path`` is
    missing because a save was interrupted mid-swap, the previous checkpoint it set aside."""
    folder = _real(path)
    aside = _aside(folder)
    for _ in range(5):  # a concurrent save may move folders between two checks
        what = _what_is(folder)
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
        return _read_config(folder)
    return _parse_json(_verified_bytes(folder, name, config), folder / name)


def _read_config(folder: Path) -> dict[str, Any]:
    file = folder / CONFIG_FILE
    parsed = _parse_json(_read_file(file, MAX_CONFIG_BYTES), file)
    _check_folder_config(parsed, file)
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


def _kind_of(obj: Any) -> str | None:
    from ebmflow.energy import Energy
    from ebmflow.objective import Objective
    from ebmflow.samplers.base import Sampler

    for base, kind in ((Energy, "energy"), (Objective, "objective"), (Sampler, "sampler")):
        if isinstance(obj, base):
            return kind
    return None


def _factory_is(factory: Any, cls: type) -> bool:
    if not isinstance(factory, str):
        return factory is cls
    if factory == f"{cls.__module__}:{cls.__qualname__}":
        return True
    # A re-export ("pkg:Cls" for pkg.module.Cls) matches only if pkg is already imported:
    # finding out must not import other plugins' modules.
    module_name, _, attr_path = factory.partition(":")
    value: Any = sys.modules.get(module_name)
    for attr in attr_path.split("."):
        if value is None:
            return False
        value = getattr(value, attr, None)
    return value is cls


def _component_of(obj: Any, host: PluginHost, where: str = "") -> Component:
    """The registered component whose factory is ``type(obj)``; ``where`` says which
    argument ``obj`` is, for the error message."""
    kind = _kind_of(obj)
    cls = type(obj)
    label = f"{cls.__module__}.{cls.__qualname__}"
    what = f"{label}{where}"
    if not isinstance(obj, Configurable):
        raise CheckpointError(
            f"cannot save {what}: ebmflow.save stores registered components "
            f"(subclasses of ebmflow.Energy, Objective, Sampler or ebmflow.Configurable that a "
            f"plugin registers), which remember their constructor arguments"
        )
    candidates = host.components(kind)
    matches = [c for c in candidates if _factory_is(c.factory, cls)]
    if matches:
        # The owner's record, not an alias's: a plugin that also registers this class must
        # not put its own name (and so a dependency on itself) into every checkpoint.
        owner = _package_of(cls.__module__)
        objects = host.plugin_objects()
        exact = f"{cls.__module__}:{cls.__qualname__}"
        return min(matches, key=lambda c: (
            _package_of(_module_of(objects.get(c.plugin or ""))) != owner,
            not (c.factory is cls or c.factory == exact),
        ))
    kind_text = kind or "component"
    registered = ", ".join(sorted({c.qualified_name for c in candidates})) or "none"
    if cls.__module__ == "ebmflow.compose":
        raise CheckpointError(
            f"cannot save {what}: it is an ad-hoc composition of "
            f"energies, not a registered component. Save each part (its .parts) with "
            f"ebmflow.save and compose them again after loading. Registered {kind_text} "
            f"components that can be saved: {registered}"
        )
    raise CheckpointError(
        f"cannot save {what}: no plugin registers this class as a {kind_text}, "
        f"so it could not be rebuilt by ebmflow.load. Register it (a hook returning "
        f"ebmflow.Component(name, {cls.__qualname__})) or save its state_dict yourself. "
        f"Registered {kind_text} components that can be saved: {registered}"
    )


def _package_of(module: str | None) -> str | None:
    return module.partition(".")[0] if isinstance(module, str) else None


def _module_of(plugin: Any) -> str | None:
    """The module that defines a plugin object (a module, a class or an instance)."""
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    module = getattr(plugin, "__module__", None)
    return module if isinstance(module, str) else None


def _component_record(component: Component, host: PluginHost) -> dict[str, Any]:
    info = next((p for p in host.plugins()
                 if p.name == component.plugin and p.status == "ok"), None)
    return {
        "kind": component.kind,
        "name": component.name,
        "plugin": component.plugin,
        "distribution": info.distribution if info else None,
        "plugin_version": info.version if info else None,
    }


def _encode_arguments(
    obj: Any, host: PluginHost, tensors: dict[str, Tensor], *, root: Any, prefix: str
) -> dict[str, Any]:
    owner = type(obj).__qualname__
    return {
        key: _encode(value, f"{prefix}{key}", owner, host, tensors, root)
        for key, value in obj.get_config().items()
    }


def _encode(
    value: Any, where: str, owner: str, host: PluginHost, tensors: dict[str, Tensor], root: Any
) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):  # int, and NumPy integers as int
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, Tensor):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, Tensor):
        tensors[where] = value.detach()
        return {"__tensor__": where}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, list):
        return [_encode(v, f"{where}.{i}", owner, host, tensors, root)
                for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{where}.{i}", owner, host, tensors, root)
                              for i, v in enumerate(value)]}
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(
                    f"cannot save argument {where!r} of {owner}: its dict has a key "
                    f"{key!r} of type {type(key).__name__}; JSON keys are strings"
                )
            out[key] = _encode(item, f"{where}.{key}", owner, host, tensors, root)
        return {"__dict__": out} if any(k in _MARKERS for k in out) else out
    if isinstance(value, Configurable):
        component = _component_of(value, host, f" (argument {where!r} of {owner})")
        _check_savable_kind(component, type(value), f" (argument {where!r} of {owner})")
        if isinstance(value, nn.Module) and len(value.state_dict()) > 0 and not (
            isinstance(root, nn.Module) and any(m is value for m in root.modules())
        ):
            raise CheckpointError(
                f"cannot save argument {where!r} of {owner}: it is a module with weights that "
                f"is not a submodule of the saved object, so its weights would be lost; "
                f"assign it as an attribute (or inside an nn.ModuleList) of {owner}"
            )
        record = _component_record(component, host)
        record["arguments"] = _encode_arguments(value, host, tensors, root=root,
                                                prefix=f"{where}.")
        return {"__component__": record}
    raise CheckpointError(
        f"cannot save argument {where!r} of {owner}: a {type(value).__module__}."
        f"{type(value).__qualname__} cannot be stored in config.json. Accepted: None, bool, "
        f"int, float, str, lists, tuples, dicts with string keys, tensors, torch dtypes, and "
        f"registered components"
    )


# -- rebuilding ----------------------------------------------------------------------------


def _check_component_record(record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise CheckpointError(f"{where}: a component record must be an object, got "
                              f"{type(record).__name__}")
    missing = [key for key in _COMPONENT_KEYS if key not in record]
    if missing:
        raise CheckpointError(
            f"{where}: missing key(s) {', '.join(map(repr, missing))}; a component record "
            f"has {', '.join(_COMPONENT_KEYS)}"
        )
    for key, types in _COMPONENT_KEYS.items():
        if not isinstance(record[key], types):
            raise CheckpointError(
                f"{where}: {key!r} must be {_type_names(types)}, got "
                f"{type(record[key]).__name__} {record[key]!r}"
            )
    if "metadata" in record and not isinstance(record["metadata"], dict):
        raise CheckpointError(f"{where}: 'metadata' must be an object, got "
                              f"{type(record['metadata']).__name__}")
    try:
        kind = normalize_kind(record["kind"])
    except EbmflowError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if kind not in CHECKPOINT_KINDS:
        raise CheckpointError(
            f"{where}: kind {record['kind']!r} cannot be loaded from a checkpoint: "
            f"{_KINDS_TEXT} (loading never runs an estimator or a converter, nor reads data)"
        )


_KINDS_TEXT = (f"a checkpoint holds only {', '.join(CHECKPOINT_KINDS[:-1])} and "
               f"{CHECKPOINT_KINDS[-1]} components")


def _check_savable_kind(component: Component, cls: type, where: str = "") -> None:
    if component.kind not in CHECKPOINT_KINDS:
        raise CheckpointError(
            f"cannot save {cls.__module__}.{cls.__qualname__}{where} "
            f"({component.qualified_name}), a {component.kind}: {_KINDS_TEXT}, so "
            f"ebmflow.load would refuse it"
        )


def _check_argument_count(arguments: Any, where: str) -> None:
    """Refuse arguments holding more than MAX_ARGUMENT_VALUES JSON values, counting no
    further than that (so a huge list is refused at once)."""
    count, stack = 0, [arguments]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_ARGUMENT_VALUES:
            raise CheckpointError(
                f"{where}: the arguments hold more than {MAX_ARGUMENT_VALUES} values; at most "
                f"{MAX_ARGUMENT_VALUES} are accepted (long data belongs in tensor arguments, "
                f"which ebmflow.save stores in {ARGUMENTS_FILE})"
            )
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _type_names(types: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "dict": "an object", "NoneType": "null", "int": "an integer"}
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(names.get(t.__name__, t.__name__) for t in types)


#: a PEP 508 distribution name: nothing else may appear in an install command we suggest
_DISTRIBUTION_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)
_VERSION_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")


def _written_with(record: dict) -> str:
    """The recorded distribution (or plugin) and version, for messages; each is quoted
    unless it looks like one, so crafted text cannot pass for ebmflow's own words."""
    source, version = record["distribution"] or record["plugin"], record["plugin_version"]
    shown = source if _DISTRIBUTION_NAME.fullmatch(source) else repr(source)
    if version:
        shown += f" {version if _VERSION_TEXT.fullmatch(version) else repr(version)}"
    return shown


def _build(record: dict, host: PluginHost, tensors: dict[str, Tensor], where: str) -> Any:
    plugin, name, kind = record["plugin"], record["name"], record["kind"]
    try:
        kind = normalize_kind(kind)
    except Exception as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    qualified = f"{plugin}:{name}"
    what = f"{kind} {qualified!r}"
    distribution = record["distribution"]
    written = _written_with(record)
    claimants = [p for p in host.plugins() if p.name == plugin]
    info = next((p for p in claimants if p.status == "ok"), claimants[0] if claimants else None)
    if info is None:
        if distribution is None:
            how = ("it was registered in-process (no distribution), so register that plugin "
                   "on the host you load with")
        elif _DISTRIBUTION_NAME.fullmatch(distribution):
            how = f"install it: pip install {distribution}"
        else:  # never copy checkpoint text into a command someone might paste
            how = (f"the checkpoint records distribution {distribution!r}, which is not a "
                   f"valid distribution name")
        raise CheckpointError(
            f"{where}: the checkpoint needs {what} from plugin {plugin!r}, which is not "
            f"installed; {how} (the checkpoint was written with {written})"
        )
    if info.status != "ok":
        raise CheckpointError(
            f"{where}: the checkpoint needs {what}, but plugin {plugin!r} is {info.status}: "
            f"{info.error} (see `ebmflow plugins`)"
        )
    if distribution is not None and (info.distribution is None or _normalize_plugin_name(
            info.distribution) != _normalize_plugin_name(distribution)):
        # another distribution's plugin under the same name: never run its code instead
        provider = (f"distribution {info.distribution!r} {info.version or ''}".rstrip()
                    if info.distribution else "a plugin registered in-process (no distribution)")
        recorded = next((p for p in claimants if p.distribution and _normalize_plugin_name(
            p.distribution) == _normalize_plugin_name(distribution)), None)
        status = (f"; {recorded.distribution} is installed but {recorded.status}: "
                  f"{recorded.error}" if recorded else "")
        raise CheckpointError(
            f"{where}: the checkpoint needs {what} from distribution {distribution!r}, but "
            f"plugin {plugin!r} is provided by {provider}; refusing to rebuild it with "
            f"another distribution's code{status} (see `ebmflow plugins`)"
        )
    if not any(c.kind == kind and c.name == name for c in info.components):
        provided = ", ".join(c.name for c in info.components if c.kind == kind) or "none"
        raise CheckpointError(
            f"{where}: the checkpoint needs {what}, but the installed plugin {plugin!r} "
            f"(version {info.version}) has no {kind} {name!r} (it has: {provided}); the "
            f"checkpoint was written with {written}"
        )
    arguments = {key: _decode(value, f"argument {key!r}", host, tensors, where)
                 for key, value in record["arguments"].items()}
    try:
        return host._construct(kind, qualified, arguments, nested=False)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"{where}: rebuilding {what} from its saved arguments failed "
            f"({type(exc).__name__}: {exc}); the checkpoint was written with {written}, "
            f"installed is {info.distribution or plugin} {info.version or ''}".rstrip()
        ) from exc


def _decode(value: Any, what: str, host: PluginHost, tensors: dict[str, Tensor],
            where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, what, host, tensors, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or next(iter(value)) not in _MARKERS:
        return {k: _decode(v, what, host, tensors, where) for k, v in value.items()}
    ((marker, content),) = value.items()
    try:
        if marker == "__tuple__":
            if not isinstance(content, list):
                raise TypeError("expected a list")
            return tuple(_decode(v, what, host, tensors, where) for v in content)
        if marker == "__dict__":
            if not isinstance(content, dict):
                raise TypeError("expected an object")
            return {k: _decode(v, what, host, tensors, where) for k, v in content.items()}
        if marker == "__tensor__":
            if content not in tensors:
                raise KeyError(f"{ARGUMENTS_FILE} has no tensor {content!r}")
            return tensors[content]
        if marker == "__dtype__":
            dtype = getattr(torch, str(content), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown dtype {content!r}")
            return dtype
        if marker == "__float__":
            if content not in ("nan", "inf", "-inf"):
                raise ValueError(f"expected 'nan', 'inf' or '-inf', got {content!r}")
            return float(content)
        if marker != "__component__":  # pragma: no cover - _MARKERS lists exactly these
            raise ValueError(f"unknown marker {marker!r}")
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{where}: {what}: malformed {marker} value "
                              f"{content!r} ({exc})") from None
    _check_component_record(content, f"{where}: {what}")
    return _build(content, host, tensors, f"{where}: {what}")


class _AllocationBudget(TorchFunctionMode):
    """Bounds the bytes that tensor factories may allocate while a checkpoint's component is
    built: at most BUILD_BYTES_PER_FILE_BYTE times the bytes of its tensor files plus
    MAX_BUILD_EXTRA_BYTES.

    Each factory call (``torch.empty`` inside ``nn.Linear``, ``torch.zeros`` for a buffer,
    ``new_zeros``, ``repeat`` ...) is first run on the meta device, which allocates nothing,
    to learn its size; the call that would go over the budget raises instead of allocating.
    So ``widths=[40000, 40000]`` in a crafted config.json fails at once rather than asking
    for 6.4 GB. Allocations outside torch (NumPy, Python lists) are not seen; the bound on
    the number of argument values keeps those small for the built-in components.
    """

    def __init__(self, files_bytes: int, what: str, where: str) -> None:
        super().__init__()
        self.files_bytes = files_bytes
        self.budget = BUILD_BYTES_PER_FILE_BYTE * files_bytes + MAX_BUILD_EXTRA_BYTES
        self.what, self.where = what, where
        self.total = 0
        self.refusal: CheckpointError | None = None

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _FACTORIES or func in _TENSOR_FACTORIES:
            self._charge(func, args, kwargs)
        return func(*args, **kwargs)

    def _charge(self, func: Any, args: Any, kwargs: dict) -> None:
        if self.refusal is None:
            probe = _meta_probe(func, args, kwargs)
            if probe is None:
                return
            self.total += probe.numel() * probe.element_size()
            if self.total <= self.budget:
                return
            self.refusal = CheckpointError(
                f"{self.where}: building {self.what} would allocate {_bytes(self.total)} "
                f"(asked for a {_dtype_name(probe.dtype)} tensor of shape "
                f"{tuple(probe.shape)}), but a checkpoint may allocate at most "
                f"{_bytes(self.budget)} while it is built "
                f"({BUILD_BYTES_PER_FILE_BYTE} × its {_bytes(self.files_bytes)} of tensor files "
                f"+ {MAX_BUILD_EXTRA_BYTES >> 20} MiB): config.json's arguments do not fit the "
                f"weights it holds"
            )
        raise self.refusal  # again on every later call, should a constructor catch it


_FACTORIES = {
    torch.empty, torch.empty_strided, torch.zeros, torch.ones, torch.full, torch.rand,
    torch.randn, torch.randint, torch.randperm, torch.arange, torch.linspace,
    torch.logspace, torch.eye, torch.empty_like, torch.zeros_like, torch.ones_like,
    torch.full_like, torch.rand_like, torch.randn_like, torch.randint_like,
}
_TENSOR_FACTORIES = {
    Tensor.new_empty, Tensor.new_zeros, Tensor.new_ones, Tensor.new_full, Tensor.repeat,
    Tensor.tile, Tensor.repeat_interleave, torch.tile, torch.repeat_interleave,
}
_NOT_ON_META = ("device", "generator", "out", "pin_memory", "requires_grad")


def _meta_probe(func: Any, args: Any, kwargs: dict) -> Tensor | None:
    """What ``func(*args, **kwargs)`` would return, computed on the meta device (shape and
    dtype only, nothing allocated); ``None`` where that cannot be worked out."""
    meta_args = [a.to("meta") if isinstance(a, Tensor) else a for a in args]
    meta_kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_ON_META}
    if func in _FACTORIES and not any(isinstance(a, Tensor) for a in args):
        meta_kwargs["device"] = "meta"
    try:
        out = func(*meta_args, **meta_kwargs)
    except Exception:  # the real call will raise its own error, if any
        return None
    return out if isinstance(out, Tensor) else None


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _load_state(
    obj: nn.Module, state: dict[str, Tensor], file: Path, what: str, config: dict
) -> None:
    expected = obj.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", mismatched)):
            if items:
                problems.append(f"{label}: {', '.join(items)}")
        raise CheckpointError(
            f"{file} does not fit the {what} built from config.json's arguments "
            f"({'; '.join(problems)}). config.json's arguments or the plugin's version "
            f"(written with {config.get('plugin_version')}) differ from those the weights "
            f"were saved with"
        )
    _check_dtypes(state, expected, file, config["kind"])
    # Keep saved dtypes (a float64 model stays float64): retype the target tensors in place,
    # which keeps tied parameters tied, then copy the values.
    for key, tensor in state.items():
        if tensor.dtype != expected[key].dtype:
            target = _state_tensor(obj, key)
            if target is not None:
                target.data = torch.empty(target.shape, dtype=tensor.dtype, device=target.device)
    try:
        obj.load_state_dict(state, strict=True)
    except Exception as exc:
        raise CheckpointError(f"{file}: loading the weights into the {what} failed: {exc}") \
            from exc


#: The dtypes a floating-point parameter or buffer loads from (keeping the saved one).
WEIGHT_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_dtypes(state: Mapping[str, Tensor], expected: Mapping[str, Tensor], file: Path,
                  kind: str) -> None:
    """The dtype rule of loading: a floating-point tensor of the model loads from any of
    WEIGHT_FLOAT_DTYPES and keeps the saved one (a float64 model stays float64); every other
    tensor (integer counters, boolean masks) loads only from exactly its own dtype. Integer,
    complex or float8 weights for a float32 layer would fail inside torch or much later."""
    for key, tensor in state.items():
        want = expected[key].dtype
        fits = (tensor.dtype in WEIGHT_FLOAT_DTYPES if want in WEIGHT_FLOAT_DTYPES
                else tensor.dtype == want)
        if not fits:
            raise CheckpointError(
                f"{file}: {key!r} is {_dtype_name(tensor.dtype)} but the {kind}'s tensor is "
                f"{_dtype_name(want)}; floating-point tensors load from "
                f"{', '.join(map(_dtype_name, WEIGHT_FLOAT_DTYPES[:-1]))} or "
                f"{_dtype_name(WEIGHT_FLOAT_DTYPES[-1])}, other tensors only from exactly "
                f"their dtype"
            )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _state_tensor(obj: nn.Module, key: str) -> Tensor | None:
    for getter in (obj.get_parameter, obj.get_buffer):
        with contextlib.suppress(AttributeError):
            return getter(key)
    return None


# -- files ---------------------------------------------------------------------------------


def _real(path: PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _aside(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.ebmflow-old"


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _reached(stage: str) -> None:
    """Marks the stages of a save (``"wrote NAME"``, ``"written"``, ``"moved-aside"``,
    ``"swapped"``, ``"done"``). Does nothing; the crash tests replace it to kill the process
    at exactly that instant."""


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


def _what_is(path: Path) -> str | None:
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


def _open_regular(file: Path) -> tuple[int, os.stat_result]:
    """Open a file of a checkpoint folder for reading; return the descriptor and its status.
    Only a regular file that is not a symbolic link is accepted (a link could lead to
    /dev/zero or out of the folder). A missing file raises FileNotFoundError for the caller
    to word."""
    try:
        return open_regular_file(file, error=CheckpointError)
    except CheckpointError as exc:
        hint = (" (copy the file itself into the folder)"
                if str(exc).endswith("is a symbolic link") else "")
        raise CheckpointError(f"{exc}; a checkpoint folder holds regular files only{hint}"
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
    return (f"{file} is {size} bytes; a checkpoint's {file.name} may hold at most {limit} "
            f"bytes ({limit >> 20} MiB)")


def _parse_json(data: bytes, file: Path) -> Any:
    try:
        parsed = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{file} is not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{file} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:  # deeper than Python's parser follows
        raise _too_deep(str(file)) from None
    _check_json_depth(parsed, str(file))
    return parsed


def _too_deep(where: str) -> CheckpointError:
    return CheckpointError(
        f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels (lists and objects); "
        f"ebmflow writes and reads at most {MAX_JSON_DEPTH}"
    )


def _check_json_depth(value: Any, where: str) -> None:
    """Refuse JSON that nests lists and objects more than MAX_JSON_DEPTH levels deep,
    without recursion (so that no depth can raise RecursionError here)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(where)
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))


def _check_folder_config(config: Any, file: Path) -> None:
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} must hold a JSON object, got {type(config).__name__}")
    for key in _RESERVED:
        if key not in config:
            raise CheckpointError(
                f"{file} has no {key!r}: it was not written by ebmflow.save (keys: "
                f"{', '.join(map(repr, config)) or 'none'})"
            )
    version = config["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{file}: 'format_version' must be an integer ≥ 1, got "
                              f"{version!r}")
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
        raise CheckpointError(f"{file}: 'files' must be an object of file name -> "
                              f"{{sha256, size}}, got {type(files).__name__}")
    for name, record in files.items():
        if not _FILE_NAME.fullmatch(name) or name == CONFIG_FILE:
            raise CheckpointError(f"{file}: 'files' lists {name!r}, which is not a plain "
                                  f"file name of the checkpoint folder")
        ok = (isinstance(record, dict) and isinstance(record.get("sha256"), str)
              and _SHA256.fullmatch(record["sha256"]) is not None
              and isinstance(record.get("size"), int) and not isinstance(record["size"], bool)
              and record["size"] >= 0)
        if not ok:
            raise CheckpointError(
                f"{file}: the 'files' entry of {name!r} must be {{\"sha256\": 64 hex digits, "
                f"\"size\": bytes}}, got {record!r}"
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


def _listed_size(folder: Path, name: str, config: Mapping[str, Any]) -> int:
    """The size of ``folder/name`` as recorded, after checking that the file there is a
    regular file of that size."""
    record = _file_record(folder, name, config)
    fd, _ = _open_listed(folder, name, record)
    os.close(fd)
    return record["size"]


def _verify_file(
    folder: Path, name: str, config: Mapping[str, Any] | None
) -> tuple[int, int]:
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


def _verified_bytes(folder: Path, name: str, config: Mapping[str, Any] | None) -> bytes:
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


# -- replacing a folder ----------------------------------------------------------------------


def _check_replaceable(target: Path) -> None:
    """Refuse to replace ``target`` unless it is missing, an empty folder, or provably an
    ebmflow checkpoint folder (see :func:`_not_a_checkpoint`): replacing deletes it."""
    what = _what_is(target)
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
        config = _read_config(target)
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
    aside = _aside(target)
    if os.path.lexists(target):
        _check_replaceable(target)
        if os.path.lexists(aside):  # left by an interrupted save; target is newer
            _retire(aside, target)
        os.rename(target, aside)
        _fsync_dir(parent)
        _reached("moved-aside")
        os.rename(tmp, target)
        _fsync_dir(parent)
        _reached("swapped")
    else:
        os.rename(tmp, target)
        _fsync_dir(parent)
        _reached("swapped")
    if os.path.lexists(aside):
        # The new checkpoint is in place: failing to delete the old one must not fail the
        # save (the next save retires it again).
        with contextlib.suppress(OSError):
            _retire(aside, target)
    _reached("done")


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
            parts = entry[len(tmp_prefix):].split(".")
            stale = (len(parts) == 3 and parts[0] == here and parts[1].isdigit()
                     and not _pid_alive(int(parts[1])))
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
