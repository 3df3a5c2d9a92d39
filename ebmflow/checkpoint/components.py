"""Which registered component an object is, and what a checkpoint records about it.

A checkpoint names its component by kind, name, plugin, distribution and plugin version
(:func:`component_record`); :func:`component_of` finds the registered component whose
factory is an object's class (the owning plugin's record, not an alias's), and
:func:`installed_plugin` finds the plugin that may rebuild a recorded one, or says what to
install. Only :data:`CHECKPOINT_KINDS` are saved or built: a ``config.json`` naming a
log-Z estimator (which would run), a converter (which would read another folder) or a
dataset is refused before any factory is called.
"""

from __future__ import annotations

import re
import sys
from types import ModuleType
from typing import Any

from ebmflow.config import Configurable
from ebmflow.errors import CheckpointError, EbmflowError
from ebmflow.registry import (
    Component,
    PluginHost,
    PluginInfo,
    normalize_kind,
    normalize_plugin_name,
)

#: The component kinds a checkpoint holds, at the top and as nested ``__component__``
#: arguments. Loading builds nothing else: log-Z estimators and converters run computations
#: or read other folders when they are "built", and datasets are data, not models.
CHECKPOINT_KINDS = ("energy", "objective", "sampler", "noise_schedule")
#: The keys of a component record and the JSON types each holds.
_COMPONENT_KEYS: dict[str, type | tuple[type, ...]] = {
    "kind": str,
    "name": str,
    "plugin": str,
    "distribution": (str, type(None)),
    "plugin_version": (str, type(None)),
    "arguments": dict,
}


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


def component_of(obj: Any, host: PluginHost, where: str = "") -> Component:
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
        return min(
            matches,
            key=lambda c: (
                _package_of(_module_of(objects.get(c.plugin or ""))) != owner,
                not (c.factory is cls or c.factory == exact),
            ),
        )
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


def component_record(component: Component, host: PluginHost) -> dict[str, Any]:
    """What a checkpoint records about ``component``: its kind, name and plugin, and the
    distribution and version that provide the plugin in ``host`` (``None`` when it was
    registered in-process); ``arguments`` are added by the codec."""
    info = next(
        (p for p in host.plugins() if p.name == component.plugin and p.status == "ok"), None
    )
    return {
        "kind": component.kind,
        "name": component.name,
        "plugin": component.plugin,
        "distribution": info.distribution if info else None,
        "plugin_version": info.version if info else None,
    }


def check_component_record(record: Any, where: str) -> None:
    """Refuse a component ``record`` read from a checkpoint (at ``where``) unless it has
    every key of a record with the right JSON type and a kind of :data:`CHECKPOINT_KINDS`;
    checked before any plugin code runs."""
    if not isinstance(record, dict):
        raise CheckpointError(
            f"{where}: a component record must be an object, got {type(record).__name__}"
        )
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
        raise CheckpointError(
            f"{where}: 'metadata' must be an object, got {type(record['metadata']).__name__}"
        )
    try:
        kind = normalize_kind(record["kind"])
    except EbmflowError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if kind not in CHECKPOINT_KINDS:
        raise CheckpointError(
            f"{where}: kind {record['kind']!r} cannot be loaded from a checkpoint: "
            f"{_KINDS_TEXT} (loading never runs an estimator or a converter, nor reads data)"
        )


_KINDS_TEXT = (
    f"a checkpoint holds only {', '.join(CHECKPOINT_KINDS[:-1])} and "
    f"{CHECKPOINT_KINDS[-1]} components"
)


def check_savable_kind(component: Component, cls: type, where: str = "") -> None:
    """Refuse to save an object of class ``cls`` (registered as ``component``; ``where``
    names the argument it is) unless its kind is one of :data:`CHECKPOINT_KINDS`:
    ``ebmflow.load`` would refuse it."""
    if component.kind not in CHECKPOINT_KINDS:
        raise CheckpointError(
            f"cannot save {cls.__module__}.{cls.__qualname__}{where} "
            f"({component.qualified_name}), a {component.kind}: {_KINDS_TEXT}, so "
            f"ebmflow.load would refuse it"
        )


def _type_names(types: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "dict": "an object", "NoneType": "null", "int": "an integer"}
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(names.get(t.__name__, t.__name__) for t in types)


#: a PEP 508 distribution name: nothing else may appear in an install command we suggest
_DISTRIBUTION_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)
_VERSION_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")


def written_with(record: dict) -> str:
    """The recorded distribution (or plugin) and version, for messages; each is quoted
    unless it looks like one, so crafted text cannot pass for ebmflow's own words."""
    source, version = record["distribution"] or record["plugin"], record["plugin_version"]
    shown = source if _DISTRIBUTION_NAME.fullmatch(source) else repr(source)
    if version:
        shown += f" {version if _VERSION_TEXT.fullmatch(version) else repr(version)}"
    return shown


def installed_plugin(record: dict, host: PluginHost, where: str) -> PluginInfo:
    """The plugin of ``host`` that may rebuild the component ``record`` (checked by
    :func:`check_component_record`) names: installed, loaded, from the distribution the
    checkpoint records, and registering that kind and name. Otherwise a
    :class:`~ebmflow.errors.CheckpointError` says what to install or why the installed plugin
    does not fit; text from the checkpoint is never offered as a command to run."""
    plugin, name = record["plugin"], record["name"]
    try:
        kind = normalize_kind(record["kind"])
    except Exception as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    qualified = f"{plugin}:{name}"
    what = f"{kind} {qualified!r}"
    distribution = record["distribution"]
    written = written_with(record)
    claimants = [p for p in host.plugins() if p.name == plugin]
    info = next((p for p in claimants if p.status == "ok"), claimants[0] if claimants else None)
    if info is None:
        if distribution is None:
            how = (
                "it was registered in-process (no distribution), so register that plugin "
                "on the host you load with"
            )
        elif _DISTRIBUTION_NAME.fullmatch(distribution):
            how = f"install it: pip install {distribution}"
        else:  # never copy checkpoint text into a command someone might paste
            how = (
                f"the checkpoint records distribution {distribution!r}, which is not a "
                f"valid distribution name"
            )
        raise CheckpointError(
            f"{where}: the checkpoint needs {what} from plugin {plugin!r}, which is not "
            f"installed; {how} (the checkpoint was written with {written})"
        )
    if info.status != "ok":
        raise CheckpointError(
            f"{where}: the checkpoint needs {what}, but plugin {plugin!r} is {info.status}: "
            f"{info.error} (see `ebmflow plugins`)"
        )
    if distribution is not None and (
        info.distribution is None
        or normalize_plugin_name(info.distribution) != normalize_plugin_name(distribution)
    ):
        # another distribution's plugin under the same name: never run its code instead
        provider = (
            f"distribution {info.distribution!r} {info.version or ''}".rstrip()
            if info.distribution
            else "a plugin registered in-process (no distribution)"
        )
        recorded = next(
            (
                p
                for p in claimants
                if p.distribution
                and normalize_plugin_name(p.distribution) == normalize_plugin_name(distribution)
            ),
            None,
        )
        status = (
            f"; {recorded.distribution} is installed but {recorded.status}: {recorded.error}"
            if recorded
            else ""
        )
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
    return info
