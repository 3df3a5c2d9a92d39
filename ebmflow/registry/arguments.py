"""The check of the arguments a component is built with, and the ebmflow error for a value
its constructor rejects: both name the component and say what it accepts."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any

from ebmflow.errors import ComponentArgumentError, ConfigError, EbmflowError
from ebmflow.registry.records import Component


@functools.lru_cache(maxsize=512)
def _signature(factory: Callable[..., Any]) -> inspect.Signature:
    # components are built in loops (a corrector's sampler at every level); reading a
    # factory's signature costs more than building a small component
    return inspect.signature(factory)


def signature_of(factory: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature(factory)``, remembered per factory (recomputed for unhashable
    ones)."""
    try:
        return _signature(factory)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        return inspect.signature(factory)


def check_arguments(component: Component, factory: Callable[..., Any], arguments: dict) -> None:
    """Raise a :class:`~ebmflow.ComponentArgumentError` that lists the accepted arguments
    (and the close match of a misspelt one) if ``factory`` cannot take ``arguments``."""
    try:
        signature = signature_of(factory)
    except (TypeError, ValueError):  # some builtins have no signature; let the call decide
        return
    try:
        signature.bind(**arguments)
    except TypeError as exc:
        params = [
            p
            for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        accepted = (
            ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params)
            or "none"
        )
        names = [p.name for p in params]
        hints = []
        for key in arguments:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                if close:
                    hints.append(f"{close[0]!r} instead of {key!r}")
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise ComponentArgumentError(
            f"{component.kind} {component.qualified_name!r}: {exc}{hint}. "
            f"Accepted arguments: {accepted}"
        ) from None


def construction_error(
    component: Component, factory: Callable[..., Any], exc: TypeError | ValueError
) -> EbmflowError:
    """The ebmflow error for a ``TypeError``/``ValueError`` a factory raised: a
    :class:`ComponentArgumentError` (still a ``TypeError``) or a :class:`ConfigError` (still
    a ``ValueError``), with the message kept, prefixed by the component unless it names it."""
    message = str(exc)
    names = {
        component.name,
        getattr(factory, "__name__", None),
        getattr(factory, "__qualname__", None),
    }
    if not any(name and name in message for name in names):
        message = f"{component.kind} {component.qualified_name!r}: {message}"
    error_type = ComponentArgumentError if isinstance(exc, TypeError) else ConfigError
    return error_type(message)
