"""ebmflow-dynamics: gradient-based samplers for ebmflow.

- ``nuts`` (:class:`NUTS`): the No-U-Turn sampler with multinomial sampling, batched over
  chains, and Stan's warm-up (the shared :class:`ebmflow.Warmup`);
- ``underdamped-langevin`` (:class:`UnderdampedLangevin`): kinetic Langevin, OBABO;
- ``uha`` (:class:`UHA`): unadjusted HMC with partial momentum refresh.

All are registered through the entry point ``dynamics``. Importing this package imports
neither torch nor the modules that define these; they load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "NUTS": "ebmflow_dynamics.nuts",
    "UnderdampedLangevin": "ebmflow_dynamics.underdamped",
    "UHA": "ebmflow_dynamics.uha",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ebmflow_dynamics' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
