"""The :class:`PluginHost`: a set of plugins, loaded lazily and contained, and the lookup and
construction of the components they provide.

What loading does and which environment variables steer it is described in
:mod:`ebmflow.registry`; how plugin code is contained, in
:mod:`ebmflow.registry.containment`; which installed plugins are loaded, in
:mod:`ebmflow.registry.discovery`.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import importlib
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import pluggy

from ebmflow import hookspecs
from ebmflow.errors import (
    AmbiguousComponentError,
    ConfigError,
    EbmflowError,
    PluginError,
    PluginWarning,
    UnknownComponentError,
)
from ebmflow.registry.arguments import check_arguments, construction_error
from ebmflow.registry.containment import PluginCall, describe
from ebmflow.registry.discovery import Claim, entry_point_claims, shared_name_error
from ebmflow.registry.names import (
    KINDS,
    PLUGIN_NAME_PATTERN,
    kind_of_argument,
    normalize_kind,
)
from ebmflow.registry.records import Component, PluginEntry, PluginInfo, validate_records

#: Default plugin modules of the core: plugin name -> module registered under that name.
DEFAULT_PLUGINS: dict[str, str] = {"ebmflow": "ebmflow.builtins"}

_TRUE = {"1", "true", "yes", "on"}
#: the host whose ``create`` is calling a factory right now (see :func:`building_host`).
_BUILDING_HOST: contextvars.ContextVar[PluginHost | None] = contextvars.ContextVar(
    "ebmflow_building_host", default=None
)


def building_host() -> PluginHost | None:
    """The host whose :meth:`PluginHost.create` (or ``construct``) is calling a component's
    factory in this context right now, or None. Carried in a
    :class:`contextvars.ContextVar`, so threads building components through different hosts
    do not see each other's."""
    return _BUILDING_HOST.get()


class PluginHost:
    """A set of plugins and the components they provide.

    ``ebmflow.create`` and friends use one default host (:func:`default_host`). Tests and
    applications that need isolation make their own::

        host = PluginHost(entry_points=False)   # the core's components only
        host.register(my_plugin_module)          # in-process, no install needed
        sampler = host.create("sampler", "my-sampler", step_size=0.1)

    Args:
        builtins: register the core's default plugins.
        entry_points: load installed plugins from the entry-point group ``ebmflow``.
        environ: where to read ``EBMFLOW_*`` variables (default ``os.environ``).
    """

    def __init__(
        self,
        *,
        builtins: bool = True,
        entry_points: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._builtins = builtins
        self._entry_points = entry_points
        self._environ = environ
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, PluginEntry] = {}
        self._index: dict[str, dict[str, list[Component]]] | None = None
        self._loaded = False
        self._lock = threading.RLock()

    # -- loading -----------------------------------------------------------------------

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    @property
    def strict(self) -> bool:
        return self.environ.get("EBMFLOW_STRICT_PLUGINS", "").strip().lower() in _TRUE

    def load(self) -> None:
        """Load the default plugins and the installed entry points (once; idempotent)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            try:
                if self._builtins:
                    for name, module_name in DEFAULT_PLUGINS.items():
                        from ebmflow import __version__

                        self._add(
                            name,
                            functools.partial(importlib.import_module, module_name),
                            distribution="ebmflow",
                            version=__version__,
                        )
                if self._entry_points:
                    self._load_entry_points()
            except BaseException:  # the user's Ctrl-C: start over on the next lookup
                self._forget_all()
                raise

    def _forget_all(self) -> None:
        for plugin in self._plugins.values():
            if plugin.obj is not None and self._pm.is_registered(plugin.obj):
                self._pm.unregister(plugin.obj)
        self._plugins.clear()
        self._index = None
        self._loaded = False

    def _load_entry_points(self) -> None:
        claims, disabled = entry_point_claims(self.environ)
        for name, claimants in claims.items():
            error = shared_name_error(name, claimants)
            if error is not None:
                self._refuse(name, claimants, error)
            else:
                claim = claimants[0]
                self._add(
                    name,
                    claim.entry_point.load,
                    distribution=claim.distribution,
                    version=claim.version,
                )
        for plugin in disabled:  # after the enabled ones: a disabled plugin claims no name
            self._plugins[self._free_key(plugin.name, plugin.distribution)] = plugin

    def _refuse(self, name: str, claimants: list[Claim], error: str) -> None:
        """Record every distribution claiming ``name`` as failed with ``error``."""
        for claim in claimants:
            plugin = PluginEntry(name, None, claim.distribution, claim.version, "failed", error)
            self._plugins[self._free_key(name, claim.distribution)] = plugin
            self._report(plugin, None)

    def _free_key(self, name: str, distribution: str | None) -> str:
        return name if name not in self._plugins else f"{name} ({distribution})"

    def _add(
        self,
        name: str,
        load: Callable[[], Any],
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginEntry:
        plugin = PluginEntry(name, None, distribution, version)
        if name in self._plugins:
            existing = self._plugins[name]
            plugin.status = "failed"
            plugin.error = (
                f"a plugin named {name!r} is already registered "
                f"(distribution {existing.distribution!r})"
            )
            self._plugins[f"{name} ({distribution})"] = plugin
            self._report(plugin, None)
            return plugin
        self._plugins[name] = plugin
        call = PluginCall()
        try:
            if not PLUGIN_NAME_PATTERN.fullmatch(name):
                raise PluginError(
                    f"invalid plugin name {name!r}: plugin names match "
                    f"{PLUGIN_NAME_PATTERN.pattern}"
                )
            with call:
                plugin.obj = load()
                self._pm.register(plugin.obj, name=name)
        except BaseException as exc:
            if not call.failed_by(exc):  # the user's Ctrl-C: as if never added
                if plugin.obj is not None and self._pm.is_registered(plugin.obj):
                    self._pm.unregister(plugin.obj)
                del self._plugins[name]
                raise
            plugin.obj = None
            self._fail(plugin, exc)
        self._index = None
        return plugin

    def register(
        self,
        plugin: Any,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register a plugin object (a module, class or instance with hook implementations).

        The plugin goes through the same validation as an installed one: a failure is
        recorded (and warned about) unless ``EBMFLOW_STRICT_PLUGINS`` is set.
        """
        with self._lock:
            self.load()
            name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            added = self._add(name, lambda: plugin, distribution=distribution, version=version)
            self._ensure_index()
            return added.info()

    def unregister(self, name: str) -> None:
        """Remove a plugin and its components."""
        with self._lock:
            plugin = self._plugins.pop(name, None)
            if plugin is None:
                raise PluginError(
                    f"no plugin named {name!r}; registered: {', '.join(self._plugins)}"
                )
            if plugin.obj is not None and self._pm.is_registered(plugin.obj):
                self._pm.unregister(plugin.obj)
            self._index = None

    def _fail(self, plugin: PluginEntry, exc: BaseException) -> None:
        plugin.status = "failed"
        plugin.error = describe(exc)
        plugin.components = []
        if plugin.obj is not None and self._pm.is_registered(plugin.obj):
            self._pm.unregister(plugin.obj)
        self._report(plugin, exc)

    def _report(self, plugin: PluginEntry, exc: BaseException | None) -> None:
        if self.strict:
            if isinstance(exc, Exception):
                raise exc
            if exc is not None:  # SystemExit(0) re-raised would end the process "successfully"
                raise PluginError(f"plugin {plugin.name!r} raised {plugin.error}") from exc
            raise PluginError(f"plugin {plugin.name!r}: {plugin.error}")
        warnings.warn(
            f"ebmflow plugin {plugin.name!r} failed and is disabled: {plugin.error}",
            PluginWarning,
            stacklevel=4,
        )

    def _ensure_index(self) -> dict[str, dict[str, list[Component]]]:
        with self._lock:
            self.load()
            if self._index is not None:
                return self._index
            collected: dict[str, list[Component]] = {}
            for kind, hook_name in KINDS.items():
                for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                    plugin = self._plugins[impl.plugin_name]
                    if plugin.status != "ok":
                        continue
                    call = PluginCall()
                    try:
                        with call:
                            records = impl.function()
                            new = validate_records(plugin.name, kind, hook_name, records)
                    except BaseException as exc:
                        if not call.failed_by(exc):
                            raise
                        self._fail(plugin, exc)
                        collected.pop(plugin.name, None)
                        continue
                    collected.setdefault(plugin.name, []).extend(new)
            index: dict[str, dict[str, list[Component]]] = {kind: {} for kind in KINDS}
            for plugin in self._plugins.values():
                if plugin.status != "ok":
                    continue
                plugin.components = sorted(
                    collected.get(plugin.name, []), key=lambda c: (c.kind, c.name)
                )
                for component in plugin.components:
                    owner_kind = component.kind
                    if owner_kind is not None:  # always: collecting filled it in
                        index[owner_kind].setdefault(component.name, []).append(component)
            self._index = index
            return index

    @property
    def hook(self) -> Any:
        """pluggy's hook caller, for hooks that are not component lists (CLI commands)."""
        self._ensure_index()
        return self._pm.hook

    def plugin_objects(self) -> dict[str, Any]:
        """Working plugins by name (for calling non-component hooks one plugin at a time)."""
        self._ensure_index()
        return {p.name: p.obj for p in self._plugins.values() if p.status == "ok"}

    def call_hook(self, name: str, hook: Callable[..., Any], /, **kwargs: Any) -> Any:
        """Call plugin ``name``'s ``hook`` (one that is not a component list, e.g.
        ``ebmflow_commands``) contained like its import: anything it raises, ``SystemExit``
        included, marks the plugin failed and gives None; a user's Ctrl-C propagates."""
        call = PluginCall()
        try:
            with call:
                return hook(**kwargs)
        except BaseException as exc:
            if not call.failed_by(exc):
                raise
            self.mark_failed(name, exc)
            return None

    def mark_failed(self, name: str, exc: BaseException) -> None:
        """Record that plugin ``name`` broke while being used (e.g. in its CLI hook)."""
        with self._lock:
            self._fail(self._plugins[name], exc)
            self._index = None

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen, with status ``ok``, ``failed`` or ``disabled``."""
        self._ensure_index()
        return [plugin.info() for plugin in self._plugins.values()]

    def components(self, kind: str | None = None) -> list[Component]:
        """Every working component (of one kind, if given), sorted by kind and name."""
        index = self._ensure_index()
        kinds = list(KINDS) if kind is None else [normalize_kind(kind)]
        return [
            component
            for k in kinds
            for name in sorted(index[k])
            for component in sorted(index[k][name], key=lambda c: c.plugin or "")
        ]

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` (bare or ``plugin:name``) of ``kind``."""
        kind = normalize_kind(kind)
        index = self._ensure_index()
        if not isinstance(name, str):
            raise ConfigError(f"a {kind} name must be a string, got {name!r}")
        plugin_name, _, bare = name.rpartition(":")
        candidates = index[kind].get(bare, [])
        if plugin_name:
            candidates = [c for c in candidates if c.plugin == plugin_name]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            listed = ", ".join(sorted(c.qualified_name for c in candidates))
            raise AmbiguousComponentError(
                f"{kind} name {name!r} is registered by {len(candidates)} plugins: {listed}; "
                f"use one of the qualified names"
            )
        raise UnknownComponentError(self._unknown_message(kind, name, index[kind]))

    def _unknown_message(self, kind: str, name: str, by_name: dict[str, list[Component]]) -> str:
        known = sorted(by_name)
        qualified = sorted(c.qualified_name for cs in by_name.values() for c in cs)
        close = difflib.get_close_matches(name, known + qualified, n=3, cutoff=0.6)
        message = f"unknown {kind} {name!r}"
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        else:
            message += "."
        message += f" Available {KINDS[kind].removeprefix('ebmflow_')}: "
        message += ", ".join(known) if known else "none"
        broken = [p.name for p in self._plugins.values() if p.status == "failed"]
        if broken:
            message += f". Plugins that failed to load: {', '.join(broken)} (see `ebmflow plugins`)"
        plugin_name = name.rpartition(":")[0]
        if plugin_name and plugin_name not in self._plugins:
            message += f". No plugin named {plugin_name!r} is installed"
        return message

    # -- construction ------------------------------------------------------------------

    def create(self, kind: str, name_or_config: str | Mapping[str, Any], /, **kwargs: Any) -> Any:
        """Build a component from a name or a config dict, plus keyword arguments.

        ``name_or_config`` is ``"name"``, ``"plugin:name"`` or ``{"name": ..., **arguments}``;
        ``kwargs`` override the config. An argument that is itself a component is given as a
        nested config: a dict with ``"name"`` under a key that names a kind (``sampler``,
        ``energy``, ``energies``, ``base_energy`` ...), or any dict with both ``"kind"`` and
        ``"name"``. Lists of such dicts are built element by element.

        Errors are ebmflow errors: an unknown name or argument as below, and a value the
        component rejects (a ``ValueError`` or ``TypeError`` from its constructor) as a
        :class:`~ebmflow.ConfigError` or :class:`~ebmflow.ComponentArgumentError` (still a
        ``ValueError`` or ``TypeError``). Any other exception from the factory keeps its
        type and gets a note naming the component, its plugin and distribution.
        """
        kind = normalize_kind(kind)
        if isinstance(name_or_config, str):
            name, arguments = name_or_config, {}
        elif isinstance(name_or_config, Mapping):
            arguments = dict(name_or_config)
            arguments.pop("kind", None)
            if "name" not in arguments:
                raise ConfigError(
                    f"a {kind} config needs a 'name' key; got keys {sorted(arguments)}"
                )
            name = arguments.pop("name")
        else:
            raise ConfigError(
                f"expected a {kind} name or a config dict with a 'name' key, "
                f"got {type(name_or_config).__name__} {name_or_config!r}"
            )
        arguments.update(kwargs)
        return self._construct(kind, name, arguments, nested=True)

    def construct(self, kind: str, name: str, arguments: Mapping[str, Any], /) -> Any:
        """Build ``name`` from exactly ``arguments``: unlike :meth:`create`, no dict or list
        argument is read as a nested component config, so a dict that happens to have
        ``kind`` and ``name`` keys stays a dict. For callers that build nested components
        themselves (``ebmflow.load`` rebuilds the ones a checkpoint tags explicitly).
        Errors are those of :meth:`create`."""
        return self._construct(kind, name, dict(arguments), nested=False)

    def _construct(self, kind: str, name: str, arguments: dict[str, Any], *, nested: bool) -> Any:
        """Build ``name`` from ``arguments``; with ``nested=False`` no dict or list argument
        is read as a nested component config. ``ebmflow.load`` builds that way: a
        checkpoint tags its nested components explicitly, so a plain dict argument that
        happens to have ``kind`` and ``name`` keys stays a dict."""
        kind = normalize_kind(kind)
        component = self.get(kind, name)
        factory = component.load()
        if nested:
            arguments = {key: self._build_nested(key, value) for key, value in arguments.items()}
        check_arguments(component, factory, arguments)
        building = _BUILDING_HOST.set(self)
        try:
            return factory(**arguments)
        except EbmflowError:
            raise
        except SystemExit as exc:  # a constructor never ends the process on purpose
            raise PluginError(
                f"{component.kind} {component.qualified_name!r} ({self._provenance(component)}) "
                f"raised {describe(exc)} while being built"
            ) from exc
        except (TypeError, ValueError) as exc:
            # a component rejecting an argument value: an ebmflow error of the same family
            raise construction_error(component, factory, exc) from exc
        except Exception as exc:
            # anything else is the component's own failure: keep its type, say where it was
            exc.add_note(
                f"while building {component.kind} {component.qualified_name!r} "
                f"({self._provenance(component)})"
            )
            raise
        finally:
            _BUILDING_HOST.reset(building)

    def _provenance(self, component: Component) -> str:
        plugin = self._plugins.get(component.plugin or "")
        if plugin is None or plugin.distribution is None:
            return f"plugin {component.plugin!r}"
        version = f" {plugin.version}" if plugin.version else ""
        return f"plugin {component.plugin!r}, distribution {plugin.distribution}{version}"

    def _build_nested(self, key: str, value: Any) -> Any:
        if isinstance(value, Mapping) and "name" in value:
            if "kind" in value:
                return self.create(value["kind"], value)
            kind = kind_of_argument(key)
            if kind is not None:
                return self.create(kind, value)
        if isinstance(value, list):
            return [self._build_nested(key, item) for item in value]
        return value
