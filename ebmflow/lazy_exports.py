"""Public names of a package imported on first use (PEP 562), so that importing the package
imports neither torch nor its heavier dependencies.

A plugin package lists its names and the modules that define them, and hands attribute
lookups and ``dir()`` to one :class:`LazyExports`::

    import ebmflow

    _EXPORTS = ebmflow.LazyExports(__name__, {"MySampler": "my_plugin.sampler"})
    __all__ = ["__version__", "MySampler"]


    def __getattr__(name: str) -> Any:
        return _EXPORTS.load(name)


    def __dir__() -> list[str]:
        return _EXPORTS.dir()
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any


class LazyExports:
    """The names of package ``package``, each defined in the module ``modules[name]``.

    :meth:`load` imports that module, stores the value in the package's namespace (so the
    next lookup is an ordinary attribute) and returns it; an unknown name is an
    ``AttributeError``, as for any module."""

    def __init__(self, package: str, modules: Mapping[str, str]) -> None:
        self.package = package
        self.modules = dict(modules)

    @property
    def names(self) -> list[str]:
        return list(self.modules)

    def load(self, name: str) -> Any:
        try:
            module = self.modules[name]
        except KeyError:
            raise AttributeError(f"module {self.package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[self.package], name, value)
        return value

    def dir(self) -> list[str]:
        return sorted(set(vars(sys.modules[self.package])) | set(self.modules))
