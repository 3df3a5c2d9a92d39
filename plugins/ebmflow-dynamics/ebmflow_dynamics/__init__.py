"""ebmflow-dynamics: gradient-based samplers for ebmflow.

- ``nuts`` (:class:`NUTS`): the No-U-Turn sampler with multinomial sampling, batched over
  chains, and Stan's warm-up (the shared :class:`ebmflow.Warmup`);
- ``underdamped-langevin`` (:class:`UnderdampedLangevin`): kinetic Langevin, BAOAB or OBABO;
- ``uha`` (:class:`UHA`): unadjusted HMC with partial momentum refresh.

All are registered through the entry point ``dynamics``. Importing this package imports
neither torch nor the modules that define these; they load on first attribute access.
"""

from __future__ import annotations

from typing import Any

import ebmflow

__version__ = "0.1.0"

_LAZY = {
    "NUTS": "ebmflow_dynamics.nuts",
    "UnderdampedLangevin": "ebmflow_dynamics.underdamped",
    "UHA": "ebmflow_dynamics.uha",
}

_EXPORTS = ebmflow.LazyExports(__name__, _LAZY)
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    return _EXPORTS.load(name)


def __dir__() -> list[str]:
    return _EXPORTS.dir()
