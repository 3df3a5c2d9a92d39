"""The component registry: plugins found through entry points, looked up by kind and name.

Every energy, objective, sampler, dataset, noise schedule and converter reaches ebmflow
through the hooks in :mod:`ebmflow.hookspecs`. The core registers its own components the
same way, through the default plugin modules in :data:`DEFAULT_PLUGINS`.

Loading is lazy and isolated. Nothing is imported until the first lookup; then the default
plugins and every entry point in the group ``ebmflow`` are loaded and their component hooks
called once. A plugin that fails to import, raises inside a hook or returns malformed
records is recorded as ``failed`` (one :class:`~ebmflow.errors.PluginWarning`), and the
others keep working. Environment variables, read at load time:

``EBMFLOW_PLUGINS=a,b``
    load only these entry-point plugins (by entry-point or distribution name, compared
    after PEP 503 normalisation); set but empty loads none. The core's own components
    are always loaded.
``EBMFLOW_BLOCK_PLUGINS=x,y``
    never load these.
``EBMFLOW_STRICT_PLUGINS=1``
    re-raise the first load error instead of recording it (for plugin authors).

Plugin code runs contained (:mod:`ebmflow.registry.containment`): a plugin's ``sys.exit``,
``KeyboardInterrupt`` or other ``BaseException`` makes it ``failed`` (a user's real Ctrl-C
still stops the load), its ``print`` goes to standard error, and torch's global RNG state is
restored after it ran. A plugin name that two distributions claim is loaded from neither
(:mod:`ebmflow.registry.discovery`); the core's own plugin name ``ebmflow`` is never given
up.

The package's modules, one concept each: :mod:`~ebmflow.registry.names` (kinds and name
rules), :mod:`~ebmflow.registry.records` (``Component``, ``PluginInfo``),
:mod:`~ebmflow.registry.containment`, :mod:`~ebmflow.registry.discovery`,
:mod:`~ebmflow.registry.arguments` (argument checks and errors) and
:mod:`~ebmflow.registry.host` (``PluginHost``); this module holds the default host and the
functions behind ``ebmflow.create``, ``ebmflow.components`` and ``ebmflow.plugins``.

Nested components use the caller's host
---------------------------------------
A component given another component by name (a sampler's ``noise_schedule="geometric"``,
an objective's ``sampler="mala"``) builds it while its own constructor runs. While
:meth:`PluginHost.create` (or ``ebmflow.load``) calls a factory, :func:`current_host` is
that host, so ``current_host().create(...)`` inside the constructor finds the components of
an isolated ``PluginHost`` too; outside any construction it is :func:`default_host`. The
host is carried in a :class:`contextvars.ContextVar`, so threads building components
through different hosts do not see each other's.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ebmflow.registry.discovery import ENTRY_POINT_GROUP
from ebmflow.registry.host import DEFAULT_PLUGINS, PluginHost, building_host
from ebmflow.registry.names import (
    KINDS,
    NAME_PATTERN,
    normalize_kind,
    normalize_plugin_name,
)
from ebmflow.registry.records import Component, PluginInfo

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "NAME_PATTERN",
    "Component",
    "PluginHost",
    "PluginInfo",
    "components",
    "create",
    "current_host",
    "default_host",
    "normalize_kind",
    "normalize_plugin_name",
    "plugins",
]

_default_host: PluginHost | None = None
_default_lock = threading.Lock()


def default_host() -> PluginHost:
    """The process-wide host behind :func:`ebmflow.create` (builtins + entry points)."""
    global _default_host
    with _default_lock:
        if _default_host is None:
            _default_host = PluginHost()
        return _default_host


def current_host() -> PluginHost:
    """The host to build a nested component with: inside a component's constructor called
    by :meth:`PluginHost.create` (or ``ebmflow.load``), that host; anywhere else
    :func:`default_host`. A component that accepts another component by name or config dict
    builds it with ``current_host().create(kind, spec)``, so that a component built through an
    isolated ``PluginHost`` finds the components registered with that host, not only the
    installed ones."""
    host = building_host()
    return default_host() if host is None else host


def create(kind: str, name_or_config: str | Mapping[str, Any], /, **kwargs: Any) -> Any:
    """Build a component: ``ebmflow.create("sampler", "mala", step_size=0.01)``.

    See :meth:`PluginHost.create` for nested configs.
    """
    return default_host().create(kind, name_or_config, **kwargs)


def components(kind: str | None = None) -> list[Component]:
    """The components of the default host (of one kind, if given)."""
    return default_host().components(kind)


def plugins() -> list[PluginInfo]:
    """The plugins of the default host, with their status and errors."""
    return default_host().plugins()
