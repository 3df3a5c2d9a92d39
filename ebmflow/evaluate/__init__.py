"""Evaluation of energies and samplers: exact and estimated log Z, NLL, chain diagnostics, MMD.

Used as a module, ``ebmflow.evaluate.grid_log_z(...)``:

- :func:`grid_log_z`, :func:`nll` — exact log Z and NLL of 1–3-D energies by quadrature
  (:mod:`ebmflow.evaluate.quadrature`);
- :func:`ais_log_z` — log Z in any dimension by annealed importance sampling with any
  registered sampler (:mod:`ebmflow.evaluate.ais`);
- :func:`ess`, :func:`split_rhat` — effective sample size and R̂ of MCMC chains
  (:mod:`ebmflow.evaluate.chains`);
- :func:`log_z` — log Z by any registered estimator (``grid``, ``ais``, a plugin's such as
  ``stepping-stone``) (:mod:`ebmflow.evaluate.log_z`);
- :func:`mmd` — the unbiased squared maximum mean discrepancy (:mod:`ebmflow.evaluate.mmd`).
- :func:`accuracy`, :func:`expected_calibration_error`, :func:`auroc` — metrics of any
  classifier or detector, from probabilities, labels and scores
  (:mod:`ebmflow.evaluate.classification`; ebmflow-jem's classification report uses them).
- :func:`ksd` — the kernel Stein discrepancy of samples from exp(−E) with a bootstrap
  goodness-of-fit test; needs only the score (:mod:`ebmflow.evaluate.ksd`).
"""

from __future__ import annotations

from ebmflow.evaluate.ais import AISResult, ais_log_z
from ebmflow.evaluate.chains import ess, split_rhat
from ebmflow.evaluate.classification import accuracy, auroc, expected_calibration_error
from ebmflow.evaluate.ksd import KSDResult, ksd
from ebmflow.evaluate.log_z import estimators, log_z
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
    "KSDResult",
    "NLLResult",
    "QuadratureWarning",
    "accuracy",
    "ais_log_z",
    "auroc",
    "ess",
    "estimators",
    "expected_calibration_error",
    "grid_log_z",
    "ksd",
    "log_z",
    "median_bandwidth",
    "mmd",
    "nll",
    "split_rhat",
]
