"""ebmflow-ode: the probability-flow ODE for ebmflow.

- samplers ``ode-euler`` (:class:`EulerODE`), ``ode-heun`` (:class:`HeunODE`) and ``ode``
  (:class:`AdaptiveODE`, torchdiffeq), registered through the entry point ``ode``;
- :func:`ode_log_likelihood`, the NLL (and bits/dim) of data under any noise-conditional
  energy or score model, also the log-likelihood estimator ``ode``
  (``ebmflow evaluate --log-z ode``);
- :func:`two_routes`, the ODE NLL at σ_min beside the grid-quadrature NLL of
  exp(−E(x, σ_min)): how far a learned family of energies is from one consistent density
  path.

Importing this package imports neither torch nor torchdiffeq; the names load on first
attribute access.
"""

from __future__ import annotations

from typing import Any

import ebmflow

__version__ = "0.1.0"

_LAZY = {
    "EulerODE": "ebmflow_ode.samplers",
    "HeunODE": "ebmflow_ode.samplers",
    "AdaptiveODE": "ebmflow_ode.samplers",
    "ProbabilityFlowSampler": "ebmflow_ode.samplers",
    "ODEConvergenceError": "ebmflow_ode.flow",
    "ode_log_likelihood": "ebmflow_ode.likelihood",
    "ODELikelihoodResult": "ebmflow_ode.likelihood",
    "gaussian_prior": "ebmflow_ode.likelihood",
    "bits_per_dim": "ebmflow_ode.bits",
    "dequantize": "ebmflow_ode.bits",
    "two_routes": "ebmflow_ode.two_routes",
    "TwoRoutesResult": "ebmflow_ode.two_routes",
}

_EXPORTS = ebmflow.LazyExports(__name__, _LAZY)
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    return _EXPORTS.load(name)


def __dir__() -> list[str]:
    return _EXPORTS.dir()
