"""The records the registry keeps: :class:`Component` (what a plugin hands over),
:class:`PluginInfo` (what ``ebmflow.plugins()`` reports) and :class:`PluginEntry` (the
host's own record of one plugin), and the check of what a component hook returned."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ebmflow.errors import PluginError
from ebmflow.registry.containment import PluginCall
from ebmflow.registry.names import FACTORY_PATTERN, NAME_PATTERN


@dataclass(frozen=True)
class Component:
    """A record a plugin hands over: a name, a factory and a one-line summary.

    ``factory`` is a callable or a ``"module:attr"`` string imported on first use. ``kind``
    and ``plugin`` are filled in by the registry; plugins leave them out.
    """

    name: str
    factory: Callable[..., Any] | str
    summary: str = ""
    kind: str | None = None
    plugin: str | None = None

    @property
    def qualified_name(self) -> str:
        """``plugin:name``, unique across all installed plugins."""
        return f"{self.plugin}:{self.name}"

    def load(self) -> Callable[..., Any]:
        """Return the factory, importing it if it was given as ``"module:attr"``."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attr_path = self.factory.partition(":")
        call = PluginCall()
        try:
            obj: Any = sys.modules.get(module_name)
            if obj is None:  # importing runs the plugin's module code: contain it
                with call:
                    obj = importlib.import_module(module_name)
            for attr in attr_path.split("."):
                obj = getattr(obj, attr)
        except BaseException as exc:
            if not call.failed_by(exc):
                raise
            raise PluginError(
                f"{self.kind} {self.qualified_name!r}: cannot import its factory "
                f"{self.factory!r} ({type(exc).__name__}: {exc})"
            ) from exc
        if not callable(obj):
            raise PluginError(
                f"{self.kind} {self.qualified_name!r}: factory {self.factory!r} is a "
                f"{type(obj).__name__}, not a callable"
            )
        return obj

    def to_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "qualified_name": self.qualified_name,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class PluginInfo:
    """What the registry knows about one plugin: where it came from and whether it works."""

    name: str
    distribution: str | None
    version: str | None
    status: str  # "ok" | "failed" | "disabled"
    error: str | None = None
    components: tuple[Component, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        grouped: dict[str, list[str]] = {}
        for component in self.components:
            grouped.setdefault(component.kind or "", []).append(component.name)
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "components": grouped,
            "error": self.error,
        }


@dataclass
class PluginEntry:
    """A host's record of one plugin: the registered object, where it came from, its
    status and the components it provides (:meth:`info` is the public, frozen view)."""

    name: str
    obj: Any = None
    distribution: str | None = None
    version: str | None = None
    status: str = "ok"
    error: str | None = None
    components: list[Component] = field(default_factory=list)

    def info(self) -> PluginInfo:
        return PluginInfo(
            self.name,
            self.distribution,
            self.version,
            self.status,
            self.error,
            tuple(self.components),
        )


def validate_records(plugin: str, kind: str, hook_name: str, records: Any) -> list[Component]:
    """The components a plugin's hook ``hook_name`` returned, checked (a list of
    :class:`Component` with valid, distinct names and a callable or ``"module:attr"``
    factory) and tagged with ``kind`` and ``plugin``; a :class:`~ebmflow.PluginError`
    naming the hook and the record otherwise."""
    where = f"hook {hook_name}"
    if records is None:
        return []
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise PluginError(
            f"{where} returned a {type(records).__name__}; expected a list of ebmflow.Component"
        )
    seen: set[str] = set()
    out = []
    for record in records:
        if not isinstance(record, Component):
            raise PluginError(
                f"{where} returned {record!r}; expected ebmflow.Component(name, factory, summary)"
            )
        if not isinstance(record.name, str) or not NAME_PATTERN.fullmatch(record.name):
            raise PluginError(
                f"{where}: invalid {kind} name {record.name!r}; names match "
                f"{NAME_PATTERN.pattern} (lower case, digits, '-' and '_')"
            )
        if record.name in seen:
            raise PluginError(f"{where}: {kind} {record.name!r} is registered twice")
        seen.add(record.name)
        if isinstance(record.factory, str):
            if not FACTORY_PATTERN.fullmatch(record.factory):
                raise PluginError(
                    f"{where}: {kind} {record.name!r} has factory {record.factory!r}; "
                    f"expected a callable or a 'module:attr' string"
                )
        elif not callable(record.factory):
            raise PluginError(
                f"{where}: {kind} {record.name!r} has a factory of type "
                f"{type(record.factory).__name__}; expected a callable or 'module:attr'"
            )
        if not isinstance(record.summary, str):
            raise PluginError(f"{where}: {kind} {record.name!r} summary is not a string")
        out.append(replace(record, kind=kind, plugin=plugin))
    return out
