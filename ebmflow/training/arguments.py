"""Checks of the Trainer's arguments, and how a value is shown in an error message.

Every check raises :class:`~ebmflow.ConfigError` naming the argument, the value given and
what is accepted, so a typo in a run file or a script is reported before any training.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ebmflow.errors import ConfigError
from ebmflow.validation import MAX_STEPS


def int_arg(name: str, value: Any, minimum: int, *, optional: bool = False,
            maximum: int = MAX_STEPS) -> int | None:
    """``value`` if it is an integer from ``minimum`` to ``maximum`` (or ``None`` when
    ``optional``), else raise."""
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        accepted = f"an integer ≥ {minimum}" + (" or None" if optional else "")
        raise ConfigError(f"Trainer: {name} must be {accepted}, got {value!r}")
    if value > maximum:
        raise ConfigError(f"Trainer: {name} must be an integer from {minimum} to {maximum}, "
                          f"got {value!r}")
    return value


def positive_arg(name: str, value: Any) -> float | None:
    """``value`` as a float if it is a finite number > 0, ``None`` for ``None``, else raise."""
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"Trainer: {name} must be a number > 0 or None, got {value!r}")
    return float(value)


def check_names(owner: str, given: Mapping[str, Any], accepted: Sequence[str]) -> None:
    """Raise for the first key of ``given`` not in ``accepted``, suggesting a close one."""
    for key in given:
        if key not in accepted:
            close = difflib.get_close_matches(key, list(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{owner}: unknown argument {key!r}{hint}; accepted: "
                f"{', '.join(accepted) or 'none'}"
            )


def named_spec(what: str, spec: Any, names: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{"name": ..., **arguments}`` as (name, arguments), the name one of
    ``names``."""
    if isinstance(spec, str):
        name, arguments = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        arguments = dict(spec)
        name = arguments.pop("name")
    else:
        raise ConfigError(
            f"Trainer: {what} must be a name or a dict with a 'name' key (one of "
            f"{', '.join(names)}), got {spec!r}"
        )
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Trainer: unknown {what} {name!r}{hint} Accepted: {', '.join(names)}"
        )
    return name, arguments


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
