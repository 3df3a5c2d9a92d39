"""ebmflow-tempering: parallel tempering for ebmflow.

- the sampler ``parallel-tempering`` (:class:`ParallelTempering`), registered through the
  entry point ``tempering`` (``ebmflow.create("sampler", "parallel-tempering", ...)``),
  and its state :class:`TemperingState` (the ladder, swap statistics and the local
  sampler's own state as typed fields);
- :func:`stepping_stone_log_z`, log Z by stepping-stone sampling (and thermodynamic
  integration) over a parallel-tempering ladder from a Gaussian reference.

Importing this package imports neither torch nor the modules that define these; they load
on first attribute access.
"""

from __future__ import annotations

from typing import Any

import ebmflow

__version__ = "0.1.0"

_LAZY = {
    "ParallelTempering": "ebmflow_tempering.parallel_tempering",
    "TemperingState": "ebmflow_tempering.parallel_tempering",
    "geometric_ladder": "ebmflow_tempering.ladder",
    "stepping_stone_log_z": "ebmflow_tempering.log_z",
    "SteppingStoneResult": "ebmflow_tempering.log_z",
}

_EXPORTS = ebmflow.LazyExports(__name__, _LAZY)
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    return _EXPORTS.load(name)


def __dir__() -> list[str]:
    return _EXPORTS.dir()
