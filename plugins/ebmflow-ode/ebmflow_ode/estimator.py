"""The log-likelihood estimator ``ode``: :func:`ebmflow_ode.ode_log_likelihood` behind the
``log_z_estimator`` interface, so ``ebmflow.evaluate.log_z(energy, "ode", data=...)`` and
``ebmflow evaluate CHECKPOINT --data NAME --sigma σ_min --log-z ode`` reach it.

It scores the data itself (it takes ``data``): the result carries ``nll`` and ``stderr``,
``bits_per_dim`` for image data given a ``data_range``, and ``log_z`` where the model has
energy values. σ_min comes from ``sigma_min``, else ``sigma`` (the command's ``--sigma``),
else the model's own ``sigma_min`` attribute; σ_max from ``sigma_max`` or the model's
attribute.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import evaluation_dtype_device
from ebmflow_ode.likelihood import ODELikelihoodResult, ode_log_likelihood

OWNER = "log-likelihood estimator 'ode'"


def ode_estimator(
    energy: ebmflow.Energy,
    data: Tensor | None = None,
    *,
    sigma: float | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> ODELikelihoodResult:
    """``ode_log_likelihood(energy, data, ...)`` with σ_min/σ_max found as the module says;
    ``options`` are its other keyword arguments (``solver``, ``rtol``, ``divergence``,
    ``n_probes``, ``data_range``, ``n_bins`` …)."""
    if data is None:
        raise ebmflow.ConfigError(
            f"{OWNER} scores data: pass data=(N, *event_shape) points (ebmflow evaluate "
            "passes the dataset's samples)"
        )
    accepted = set(inspect.signature(ode_log_likelihood).parameters) - {"energy", "data"}
    unknown = sorted(set(options) - accepted - {"sigma_min", "sigma_max", "generator"})
    if unknown:
        raise ebmflow.ComponentArgumentError(
            f"{OWNER}: unknown argument(s) {', '.join(unknown)}; accepted: sigma, "
            f"{', '.join(sorted(accepted))}"
        )
    low = sigma_min if sigma_min is not None else sigma
    low = low if low is not None else getattr(energy, "sigma_min", None)
    high = sigma_max if sigma_max is not None else getattr(energy, "sigma_max", None)
    if low is None or high is None:
        name = "sigma_min" if low is None else "sigma_max"
        raise ebmflow.ConfigError(
            f"{OWNER}: {type(energy).__name__} has no {name}; give it ({name}=... in "
            f"Python, --log-z-arg {name}=... or --sigma for σ_min on the command line)"
        )
    dtype, device = evaluation_dtype_device(energy, None, None)
    points = torch.as_tensor(data).to(dtype=dtype, device=device)
    return ode_log_likelihood(
        energy, points, sigma_min=low, sigma_max=high, generator=generator, **options
    )
