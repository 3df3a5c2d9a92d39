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

    ``arguments`` are the constructor arguments (``obj.get_config()``) in JSON; values JSON
    has no type for (tuples, tensors, nested components, dtypes, non-finite floats) are
    tagged objects with one key, listed in :mod:`~ebmflow.checkpoint.codec`. ``files``
    holds the size and SHA-256 of every other file in the folder;
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
A save writes the whole folder under a hidden temporary name, fsyncs it and swaps it in by
renames, so a process killed at any moment leaves ``load(path)`` working; it replaces
``NAME`` only if that is missing, empty or provably an ebmflow checkpoint folder. The steps
and the rules are in :mod:`ebmflow.checkpoint.folder`.

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

The modules
-----------
:mod:`~ebmflow.checkpoint.layout`
    file names, the format version, the size and nesting bounds, the ``config.json`` check.
:mod:`~ebmflow.checkpoint.folder`
    :func:`write_checkpoint_folder(path, files, config) <write_checkpoint_folder>`, the
    atomic write ``save`` and the Trainer use.
:mod:`~ebmflow.checkpoint.read`
    :func:`resolve`, and the verified reads :func:`read_json`, :func:`read_tensors` and
    :func:`read_bytes`; resolve once and pass the folder on to read several files of one
    checkpoint consistently.
:mod:`~ebmflow.checkpoint.components`
    which registered component an object is (:func:`component_of`), what a checkpoint
    records about it, and which installed plugin may rebuild a recorded one.
:mod:`~ebmflow.checkpoint.codec`
    the argument codec (:func:`encode_component`, :func:`encode_value`, :data:`MARKERS`)
    and the run-file form of a component (:func:`component_config`).
:mod:`~ebmflow.checkpoint.budget`, :mod:`~ebmflow.checkpoint.weights`
    the allocation bound while a component is built; the weights and their dtype rule.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmflow.checkpoint.budget import (
    BUILD_BYTES_PER_FILE_BYTE,
    MAX_BUILD_EXTRA_BYTES,
    AllocationBudget,
)
from ebmflow.checkpoint.codec import (
    MARKERS,
    MAX_ARGUMENT_VALUES,
    build_component,
    check_argument_count,
    component_config,
    encode_component,
    encode_value,
)
from ebmflow.checkpoint.components import (
    CHECKPOINT_KINDS,
    check_component_record,
    component_of,
)
from ebmflow.checkpoint.folder import write_checkpoint_folder
from ebmflow.checkpoint.layout import (
    ARGUMENTS_FILE,
    CONFIG_FILE,
    FORMAT_VERSION,
    MAX_CONFIG_BYTES,
    MAX_JSON_DEPTH,
    WEIGHTS_FILE,
    PathLike,
)
from ebmflow.checkpoint.read import listed_size, read_bytes, read_json, read_tensors, resolve
from ebmflow.checkpoint.weights import WEIGHT_FLOAT_DTYPES, load_weights
from ebmflow.errors import CheckpointError, ConfigError
from ebmflow.registry import PluginHost, default_host

__all__ = [
    "ARGUMENTS_FILE",
    "BUILD_BYTES_PER_FILE_BYTE",
    "CHECKPOINT_KINDS",
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "MARKERS",
    "MAX_ARGUMENT_VALUES",
    "MAX_BUILD_EXTRA_BYTES",
    "MAX_CONFIG_BYTES",
    "MAX_JSON_DEPTH",
    "WEIGHTS_FILE",
    "WEIGHT_FLOAT_DTYPES",
    "component_config",
    "component_of",
    "encode_component",
    "encode_value",
    "load",
    "read_bytes",
    "read_json",
    "read_tensors",
    "resolve",
    "save",
    "write_checkpoint_folder",
]


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
    tensors: dict[str, Tensor] = {}
    config = encode_component(obj, host, tensors)
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
        fd = os.open(
            folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
        )
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
    check_component_record(config, where)
    check_argument_count(config["arguments"], where)
    files = config["files"]
    arg_tensors = (
        read_tensors(folder, ARGUMENTS_FILE, config=config) if ARGUMENTS_FILE in files else {}
    )
    qualified = f"{config['kind']} '{config['plugin']}:{config['name']}'"
    # The budget counts the weights file's size before it is read, so the size must be real
    files_bytes = sum(
        listed_size(folder, name, config)
        for name in files
        if name in (WEIGHTS_FILE, ARGUMENTS_FILE)
    )
    with AllocationBudget(files_bytes, qualified, where):
        obj = build_component(config, host, arg_tensors, where=where)
    if isinstance(obj, nn.Module):
        if WEIGHTS_FILE not in files:
            raise CheckpointError(
                f"{folder}: {qualified} is a module but the checkpoint has no {WEIGHTS_FILE} "
                f"(config.json lists: {', '.join(files) or 'no files'})"
            )
        state = read_tensors(folder, WEIGHTS_FILE, config=config)
        load_weights(obj, state, folder / WEIGHTS_FILE, qualified, config)
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
