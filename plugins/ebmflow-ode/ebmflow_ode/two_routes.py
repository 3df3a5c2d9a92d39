"""Two routes to the likelihood of one noise-conditional energy, and their gap.

A noise-conditional energy E(x, σ) gives a density at σ_min in two independent ways:

1. directly, p(x) = exp(−E(x, σ_min)) / Z, with Z by grid quadrature (1–3-D);
2. through its scores at every σ, by the probability-flow ODE from σ_min up to σ_max
   (:func:`ebmflow_ode.ode_log_likelihood`).

When the energies are one consistent family — exp(−E(·, σ)) ∝ the σ-smoothing of one
density, as for the σ-smoothed Gaussian mixture — both give the same number, up to solver
and quadrature error. A model trained by multiscale denoising score matching fits each
level separately, and the gap (ODE NLL − quadrature NLL) measures how far its levels are
from one density path. So that the gap sees the scores only, the ODE's prior at σ_max is
by default the model's own normalised density there (``prior="grid"``, quadrature over a
box widened by 5 σ_max), not N(0, σ_max² I).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow_ode.likelihood import gaussian_prior, ode_log_likelihood

OWNER = "two_routes"
PRIORS = ("grid", "gaussian")


@dataclass(frozen=True)
class TwoRoutesResult:
    """What :func:`two_routes` returns (nats per sample).

    Attributes:
        nll_ode, stderr_ode: the probability-flow ODE NLL at σ_min and its standard error.
        nll_grid, stderr_grid: the quadrature NLL of exp(−E(x, σ_min)) and its standard error.
        gap: nll_ode − nll_grid. gap_stderr: the standard error of the per-point
            difference (the same points on both routes, so the data's spread cancels).
        log_z_grid: the quadrature log Z at σ_min. prior: ``"grid"`` or ``"gaussian"``.
        sigma_min, sigma_max: the interval the ODE integrates.
    """

    nll_ode: float
    stderr_ode: float
    nll_grid: float
    stderr_grid: float
    gap: float
    gap_stderr: float
    log_z_grid: float
    prior: str
    sigma_min: float
    sigma_max: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def two_routes(
    energy: ebmflow.Energy,
    data: Tensor,
    bounds: Sequence[tuple[float, float]],
    *,
    sigma_min: float,
    sigma_max: float,
    resolution: int | None = None,
    prior: str = "grid",
    prior_margin: float = 5.0,
    **ode_options: Any,
) -> TwoRoutesResult:
    """The ODE NLL at σ_min beside the grid-quadrature NLL of exp(−E(x, σ_min)).

    Args:
        energy: a noise-conditional energy with energy values, 1–3-D.
        data: (N, d) points inside ``bounds``.
        bounds: the quadrature box at σ_min, one (low, high) per dimension.
        resolution: grid cells per dimension (``ebmflow.evaluate.grid_log_z``'s default).
        prior: ``"grid"`` (the model's density at σ_max by quadrature over ``bounds``
            widened by ``prior_margin`` · σ_max) or ``"gaussian"`` (N(0, σ_max² I)).
        ode_options: the other arguments of :func:`ebmflow_ode.ode_log_likelihood`
            (``solver``, ``rtol``, ``atol``, ``divergence`` …).
    """
    if prior not in PRIORS:
        raise ebmflow.ConfigError(
            f"{OWNER}: prior must be one of {', '.join(map(repr, PRIORS))}; got {prior!r}"
        )
    if not getattr(energy, "has_energy", False):
        raise ebmflow.ConfigError(
            f"{OWNER} needs energy values for the quadrature route, but "
            f"{type(energy).__name__} is score-only"
        )
    grid = ebmflow.evaluate.nll(energy, data, bounds, resolution, sigma=sigma_min)
    if prior == "grid":
        margin = ebmflow.check_positive(OWNER, "prior_margin", prior_margin) * sigma_max
        wide = [(float(lo) - margin, float(hi) + margin) for lo, hi in grid.grid.bounds]
        top = ebmflow.evaluate.grid_log_z(energy, wide, resolution, sigma=sigma_max)

        def model_prior(x: Tensor) -> Tensor:
            with torch.no_grad():
                e = energy(x, ebmflow.broadcast_sigma(sigma_max, x))
            return -e.to(torch.float64) - top.log_z

    log_prior: Callable[[Tensor], Tensor] = (
        model_prior if prior == "grid" else gaussian_prior(sigma_max)
    )
    ode = ode_log_likelihood(
        energy, data, sigma_min=sigma_min, sigma_max=sigma_max, prior=log_prior, **ode_options
    )
    with torch.no_grad():
        e = energy(data, ebmflow.broadcast_sigma(sigma_min, data)).to(torch.float64).cpu()
    difference = -ode.log_likelihood - (e + grid.log_z)
    n = len(difference)
    return TwoRoutesResult(
        nll_ode=ode.nll,
        stderr_ode=ode.stderr,
        nll_grid=grid.nll,
        stderr_grid=grid.stderr,
        gap=float(difference.mean()),
        gap_stderr=float(difference.std() / math.sqrt(n)) if n > 1 else math.nan,
        log_z_grid=grid.log_z,
        prior=prior,
        sigma_min=ode.sigma_min,
        sigma_max=ode.sigma_max,
    )
