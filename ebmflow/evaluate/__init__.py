"""Evaluation of energies and samplers: exact and estimated log Z, NLL, chain diagnostics, MMD.

Used as a module, ``ebmflow.evaluate.grid_log_z(...)``:

- :func:`grid_log_z`, :func:`nll` — exact log Z and NLL of 1–3-D energies by quadrature
  (:mod:`ebmflow.evaluate.quadrature`);
- :func:`ais_log_z` — log Z in any dimension by annealed importance sampling with any
  registered sampler (:mod:`ebmflow.evaluate.ais`);
- :func:`ess`, :func:`split_rhat` — effective sample size and R̂ of MCMC chains
  (:mod:`ebmflow.evaluate.chains`);
- :func:`mmd` — the unbiased squared maximum mean discrepancy (:mod:`ebmflow.evaluate.mmd`).
"""

from __future__ import annotations

from ebmflow.evaluate.ais import AISResult, ais_log_z
from ebmflow.evaluate.chains import ess, split_rhat
from ebmflow.evaluate.mmd import median_bandwidth, mmd
from ebmflow.evaluate.quadrature import (
    GridResult,
    NLLResult,
    QuadratureWarning,
    grid_log_z,
    nll,
)

__all__ = [
    "AISResult",
    "GridResult",
    "NLLResult",
    "QuadratureWarning",
    "ais_log_z",
    "ess",
    "grid_log_z",
    "median_bandwidth",
    "mmd",
    "nll",
    "split_rhat",
]
