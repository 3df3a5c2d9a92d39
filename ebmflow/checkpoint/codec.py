"""The argument codec: a component's constructor arguments (``obj.get_config()``) as JSON,
and back.

JSON has no type for some argument values, so they become tagged objects with one key:
``{"__tuple__": [...]}``, ``{"__tensor__": key}`` (the tensor is stored under ``key`` in a
safetensors file, ``arguments.safetensors`` in a checkpoint), ``{"__component__": {...}}``
(an argument that is itself a registered component: its record, see
:func:`~ebmflow.checkpoint.components.component_record`, with its own ``arguments``, rebuilt
first, recursively), ``{"__dtype__": "float64"}``, ``{"__float__": "nan" | "inf" | "-inf"}``,
and ``{"__dict__": {...}}`` for a dict argument that happens to use one of these keys
(:data:`MARKERS`).

Decoding builds only the ``__component__``-tagged values, and only of the kinds a
checkpoint may hold; a component's arguments hold at most :data:`MAX_ARGUMENT_VALUES`
values. The same encoding gives the run-file form of a component
(:func:`component_config`), so the Trainer and checkpoints describe components one way.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ebmflow.checkpoint.components import (
    check_component_record,
    check_savable_kind,
    component_of,
    component_record,
    installed_plugin,
    written_with,
)
from ebmflow.checkpoint.layout import ARGUMENTS_FILE, MAX_JSON_DEPTH
from ebmflow.config import Configurable
from ebmflow.errors import CheckpointError
from ebmflow.registry import PluginHost, normalize_kind

#: The keys that tag a JSON object as an encoded value rather than a plain dict.
MARKERS = ("__tensor__", "__tuple__", "__component__", "__dtype__", "__float__", "__dict__")
#: How many JSON values (numbers, strings, lists, objects ...) a component's arguments may
#: hold, nested components included. Long data belongs in tensor arguments, which ``save``
#: stores in ``arguments.safetensors``; the bound keeps a crafted ``widths`` list of a
#: million entries from building a million layers.
MAX_ARGUMENT_VALUES = 16384


def encode_component(obj: Any, host: PluginHost, tensors: dict[str, Tensor]) -> dict[str, Any]:
    """The checkpoint record of ``obj``, a registered component of one of
    :data:`~ebmflow.checkpoint.components.CHECKPOINT_KINDS`: its kind, name, plugin,
    distribution and plugin version, and its encoded ``arguments``; tensor arguments are
    added to ``tensors`` (stored as ``arguments.safetensors``). Raises
    :class:`~ebmflow.errors.CheckpointError` for what ``ebmflow.load`` could not rebuild:
    an unregistered class, another kind, a value JSON cannot hold, arguments nested deeper
    than :data:`~ebmflow.checkpoint.layout.MAX_JSON_DEPTH` levels or holding more than
    :data:`MAX_ARGUMENT_VALUES` values."""
    component = component_of(obj, host)
    check_savable_kind(component, type(obj))
    record = component_record(component, host)
    try:
        record["arguments"] = _encode_arguments(obj, host, tensors, root=obj, prefix="")
    except RecursionError:
        raise CheckpointError(
            f"cannot save {type(obj).__qualname__}: its arguments nest too deeply to store "
            f"(load reads at most {MAX_JSON_DEPTH} levels of JSON)"
        ) from None
    # never write what load refuses to read
    check_argument_count(record["arguments"], "cannot save the checkpoint config")
    return record


def component_config(obj: Any, host: PluginHost) -> dict[str, Any] | None:
    """``{"kind", "name": "plugin:name", **arguments}``, the run-file table that
    ``host.create`` rebuilds ``obj`` from, or ``None`` when ``obj`` is not a registered
    component or its arguments have no plain JSON form: tensors, dtypes, non-finite
    floats, modules with weights, or dicts that ``host.create`` would read as a component
    (with a ``name`` key). It is the checkpoint encoding (:func:`encode_value`) with the
    nested component records written as tables."""
    if not isinstance(obj, Configurable):
        return None
    try:
        component = component_of(obj, host)
        record = component_record(component, host)
        record["arguments"] = _encode_arguments(obj, host, {}, root=None, prefix="")
    except (CheckpointError, RecursionError):
        return None
    table = _table(record)
    return None if table is _UNREPRESENTABLE else table


_UNREPRESENTABLE = object()


def _table(record: dict[str, Any]) -> Any:
    arguments = record["arguments"]
    if "name" in arguments or "kind" in arguments:
        return _UNREPRESENTABLE
    out: dict[str, Any] = {"kind": record["kind"], "name": f"{record['plugin']}:{record['name']}"}
    for key, value in arguments.items():
        plain = _plain(value)
        if plain is _UNREPRESENTABLE:
            return _UNREPRESENTABLE
        out[key] = plain
    return out


def _plain(value: Any) -> Any:
    """An encoded value without tags: tuples become lists, components tables; a value only
    a tag can hold (a tensor, a dtype, a non-finite float) has no plain form."""
    if isinstance(value, list):
        elements = [_plain(v) for v in value]
        return _UNREPRESENTABLE if any(v is _UNREPRESENTABLE for v in elements) else elements
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in MARKERS:
        ((marker, content),) = value.items()
        if marker == "__tuple__":
            return _plain(content)
        if marker == "__component__":
            return _table(content)
        if marker != "__dict__":
            return _UNREPRESENTABLE
        value = content
    if "name" in value:  # host.create would read it as a component config
        return _UNREPRESENTABLE
    items = {k: _plain(v) for k, v in value.items()}
    return _UNREPRESENTABLE if any(v is _UNREPRESENTABLE for v in items.values()) else items


def _encode_arguments(
    obj: Any, host: PluginHost, tensors: dict[str, Tensor], *, root: Any, prefix: str
) -> dict[str, Any]:
    owner = type(obj).__qualname__
    return {
        key: encode_value(value, f"{prefix}{key}", owner, host, tensors, root)
        for key, value in obj.get_config().items()
    }


def encode_value(
    value: Any, where: str, owner: str, host: PluginHost, tensors: dict[str, Tensor], root: Any
) -> Any:
    """``value`` as JSON, with the tags of this module's docstring; tensors are moved to
    ``tensors`` under the key ``where`` and tagged ``{"__tensor__": where}``.

    ``owner`` names the component whose argument ``value`` is, for errors; a registered
    component with weights is accepted only as a submodule of ``root`` (the object saved),
    whose state dict holds its weights (``root=None`` accepts none).
    """
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
        return [
            encode_value(v, f"{where}.{i}", owner, host, tensors, root) for i, v in enumerate(value)
        ]
    if isinstance(value, tuple):
        return {
            "__tuple__": [
                encode_value(v, f"{where}.{i}", owner, host, tensors, root)
                for i, v in enumerate(value)
            ]
        }
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(
                    f"cannot save argument {where!r} of {owner}: its dict has a key "
                    f"{key!r} of type {type(key).__name__}; JSON keys are strings"
                )
            out[key] = encode_value(item, f"{where}.{key}", owner, host, tensors, root)
        return {"__dict__": out} if any(k in MARKERS for k in out) else out
    if isinstance(value, Configurable):
        component = component_of(value, host, f" (argument {where!r} of {owner})")
        check_savable_kind(component, type(value), f" (argument {where!r} of {owner})")
        if (
            isinstance(value, nn.Module)
            and len(value.state_dict()) > 0
            and not (isinstance(root, nn.Module) and any(m is value for m in root.modules()))
        ):
            raise CheckpointError(
                f"cannot save argument {where!r} of {owner}: it is a module with weights that "
                f"is not a submodule of the saved object, so its weights would be lost; "
                f"assign it as an attribute (or inside an nn.ModuleList) of {owner}"
            )
        record = component_record(component, host)
        record["arguments"] = _encode_arguments(value, host, tensors, root=root, prefix=f"{where}.")
        return {"__component__": record}
    raise CheckpointError(
        f"cannot save argument {where!r} of {owner}: a {type(value).__module__}."
        f"{type(value).__qualname__} cannot be stored in config.json. Accepted: None, bool, "
        f"int, float, str, lists, tuples, dicts with string keys, tensors, torch dtypes, and "
        f"registered components"
    )


def check_argument_count(arguments: Any, where: str) -> None:
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


def build_component(record: dict, host: PluginHost, tensors: dict[str, Tensor], where: str) -> Any:
    """Rebuild the component ``record`` (checked by
    :func:`~ebmflow.checkpoint.components.check_component_record`) through its plugin's
    factory, with its arguments decoded (nested components first) and tensor arguments
    taken from ``tensors``. Only ``__component__``-tagged values are built: a plain dict
    argument stays a dict even when it has ``kind`` and ``name`` keys."""
    info = installed_plugin(record, host, where)
    kind = normalize_kind(record["kind"])
    qualified = f"{record['plugin']}:{record['name']}"
    arguments = {
        key: _decode(value, f"argument {key!r}", host, tensors, where)
        for key, value in record["arguments"].items()
    }
    try:
        return host.construct(kind, qualified, arguments)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"{where}: rebuilding {kind} {qualified!r} from its saved arguments failed "
            f"({type(exc).__name__}: {exc}); the checkpoint was written with "
            f"{written_with(record)}, installed is "
            f"{info.distribution or record['plugin']} {info.version or ''}".rstrip()
        ) from exc


def _decode(value: Any, what: str, host: PluginHost, tensors: dict[str, Tensor], where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, what, host, tensors, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or next(iter(value)) not in MARKERS:
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
        if marker != "__component__":  # pragma: no cover - MARKERS lists exactly these
            raise ValueError(f"unknown marker {marker!r}")
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"{where}: {what}: malformed {marker} value {content!r} ({exc})"
        ) from None
    check_component_record(content, f"{where}: {what}")
    return build_component(content, host, tensors, f"{where}: {what}")
