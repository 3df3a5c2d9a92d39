"""Log-likelihood by the probability-flow ODE (Song et al. 2021, §4.3 and App. D.2), for any
noise-conditional energy or score model in VE coordinates.

Along a solution of dx/du = f(x, u) = −σ² s(x, σ), u = log σ (:mod:`ebmflow_ode.flow`), the
density changes by the instantaneous change of variables, d log p_σ(x(u))/du = −∇·f, so
integrating up from the data x(σ_min) = x to x_T = x(σ_max),

    log p_σmin(x) = log π(x_T) + ∫_{log σmin}^{log σmax} ∇ₓ·f(x(u), u) du,

with the prior π = N(0, σ_max² I) (p_σmax when σ_max is large against the data's spread),
or any log-density given as ``prior``. The divergence is exact in low dimension and a
Hutchinson estimate above (:mod:`ebmflow_ode.divergence`). The NLL is the mean of
−log p_σmin over the data, with the standard error of that mean, which covers the data's
spread, the probes and the dequantization noise (each sample gets its own).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import check_positive_int
from ebmflow_ode.bits import bits_per_dim, check_in_range, check_range, dequantize
from ebmflow_ode.divergence import (
    exact_divergence,
    hutchinson_divergence,
    rademacher,
    resolve_mode,
)
from ebmflow_ode.flow import check_sigma_level, check_solver, check_tolerance, solve

OWNER = "ode_log_likelihood"


@dataclass(frozen=True)
class ODELikelihoodResult:
    """What :func:`ode_log_likelihood` returns.

    Attributes:
        nll: mean −log p_σmin(x) over the data, nats per sample.
        stderr: its standard error, sd / √N.
        log_likelihood: log p_σmin(x) per data point (N,), float64.
        bits_per_dim, bits_per_dim_stderr: for image data with a ``data_range``, else None.
        divergence: ``"exact"`` or ``"hutchinson"``; n_probes: probes per sample (Hutchinson).
        sigma_min, sigma_max: the interval integrated. solver: the torchdiffeq method.
        n_evaluations: drift evaluations, summed over batches. n_samples: N.
        dequantized: whether uniform dequantization noise was added.
        log_z, log_z_stderr: for a model with energy values, the normaliser the ODE
            implies at σ_min, the mean of −E(x, σ_min) − log p_σmin(x) over the scored
            points, and the standard error of that mean. A consistent family (scores
            that are the σ-derivatives of one density path) makes every term the same
            log Z(σ_min), so a large spread flags inconsistent scores; ``None`` for
            score-only models.
    """

    nll: float
    stderr: float
    log_likelihood: Tensor
    bits_per_dim: float | None
    bits_per_dim_stderr: float | None
    divergence: str
    n_probes: int
    sigma_min: float
    sigma_max: float
    solver: str
    n_evaluations: int
    n_samples: int
    dequantized: bool
    log_z: float | None = None
    log_z_stderr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: every field but the per-sample values."""
        out = asdict(self)
        del out["log_likelihood"]
        return out


def gaussian_prior(sigma_max: float) -> Callable[[Tensor], Tensor]:
    """log N(x; 0, σ_max² I) per sample."""

    def log_prob(x: Tensor) -> Tensor:
        flat = x.flatten(1).to(torch.float64)
        d = flat.shape[1]
        return -0.5 * (
            flat.square().sum(1) / sigma_max**2 + d * math.log(2 * math.pi * sigma_max**2)
        )

    return log_prob


def ode_log_likelihood(
    energy: ebmflow.Energy,
    data: Tensor,
    *,
    sigma_min: float,
    sigma_max: float,
    solver: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 10_000,
    n_steps: int = 100,
    divergence: str = "auto",
    exact_max_dim: int = 16,
    n_probes: int = 1,
    prior: Callable[[Tensor], Tensor] | None = None,
    data_range: Sequence[float] | None = None,
    n_bins: int = 256,
    dequantize_data: bool = True,
    batch_size: int = 1024,
    generator: torch.Generator | None = None,
) -> ODELikelihoodResult:
    """−log p_σmin of ``data`` under a noise-conditional model, by the probability-flow ODE.

    Args:
        energy: a noise-conditional energy or score model (VE σ); score-only models work.
        data: (N, *event_shape) points, in the model's dtype and device.
        sigma_min: the level whose density is scored (σ_min > 0; p_σmin is the data
            smoothed by N(0, σ_min² I)). sigma_max: where the prior takes over.
        solver, rtol, atol, max_steps, n_steps: the torchdiffeq method (adaptive ones use
            the tolerances and stop with ``ODEConvergenceError`` past ``max_steps``;
            fixed-step ones take ``n_steps`` equal steps in log σ).
        divergence: ``"exact"``, ``"hutchinson"`` or ``"auto"`` (exact up to
            ``exact_max_dim`` dimensions). n_probes: Rademacher probes per sample.
        prior: log π(x_T) per sample; default N(0, σ_max² I).
        data_range: (low, high) of image data, to report bits/dim; values outside it are
            an error. n_bins: levels per pixel. dequantize_data: add uniform noise within
            each level first (the data must lie on the grid of ``n_bins`` levels).
        batch_size: points per ODE solve. generator: probes and dequantization noise.
    """
    if not isinstance(energy, ebmflow.Energy) or not energy.noise_conditional:
        raise ebmflow.ConfigError(
            f"{OWNER}: needs a noise-conditional energy or score model (E(x, σ)); got "
            f"{type(energy).__name__}"
            + ("" if not isinstance(energy, ebmflow.Energy) else " with noise_conditional=False")
        )
    sigma_min = check_sigma_level(OWNER, "sigma_min", sigma_min)
    sigma_max = check_sigma_level(OWNER, "sigma_max", sigma_max)
    if not sigma_min < sigma_max:
        raise ebmflow.ConfigError(
            f"{OWNER}: sigma_min must be below sigma_max, got {sigma_min!r} and {sigma_max!r}"
        )
    solver = check_solver(OWNER, solver)
    rtol, atol = check_tolerance(OWNER, "rtol", rtol), check_tolerance(OWNER, "atol", atol)
    max_steps = check_positive_int(OWNER, "max_steps", max_steps)
    n_steps = check_positive_int(OWNER, "n_steps", n_steps)
    n_probes = check_positive_int(OWNER, "n_probes", n_probes)
    batch_size = check_positive_int(OWNER, "batch_size", batch_size)
    exact_max_dim = check_positive_int(OWNER, "exact_max_dim", exact_max_dim, minimum=0)
    data = _check_data(energy, data)
    event_shape = tuple(data.shape[1:])
    mode = resolve_mode(OWNER, divergence, event_shape, exact_max_dim)
    dim = math.prod(event_shape)
    bounds = None
    if data_range is not None:
        n_bins = check_positive_int(OWNER, "n_bins", n_bins, minimum=2)
        bounds = check_range(OWNER, data_range)
        if dequantize_data:
            data = dequantize(data, *bounds, n_bins, generator, owner=OWNER)
        else:
            check_in_range(OWNER, data, *bounds)
    log_prior = gaussian_prior(sigma_max) if prior is None else prior
    settings = dict(method=solver, rtol=rtol, atol=atol, max_steps=max_steps, n_steps=n_steps)
    values, evaluations = [], 0
    for chunk in data.split(batch_size):
        probes = rademacher(n_probes, chunk, generator) if mode == "hutchinson" else None
        x_end, integral, count = _solve_batch(energy, chunk, sigma_min, sigma_max, probes, settings)
        values.append(integral.to(torch.float64) + log_prior(x_end).to(torch.float64))
        evaluations += count
    log_likelihood = torch.cat(values).detach().cpu()
    if not bool(torch.isfinite(log_likelihood).all()):
        n_bad = int((~torch.isfinite(log_likelihood)).sum())
        raise ebmflow.SamplerDivergedError(
            f"{OWNER}: the log-likelihood of {n_bad} of {len(log_likelihood)} points is not "
            "finite (the model's score is not finite along their ODE paths)",
            step=0,
            n_chains=n_bad,
        )
    n = len(log_likelihood)
    nll = float(-log_likelihood.mean())
    stderr = float(log_likelihood.std() / math.sqrt(n)) if n > 1 else math.nan
    log_z = log_z_err = None
    if energy.has_energy:
        with torch.no_grad():
            e = torch.cat(
                [energy(c, ebmflow.broadcast_sigma(sigma_min, c)) for c in data.split(batch_size)]
            )
        implied = -e.detach().cpu().to(torch.float64) - log_likelihood
        log_z = float(implied.mean())
        log_z_err = float(implied.std() / math.sqrt(n)) if n > 1 else math.nan
    bpd = bpd_err = None
    if bounds is not None:
        bpd = bits_per_dim(nll, dim, *bounds, n_bins)
        bpd_err = stderr / (dim * math.log(2))
    return ODELikelihoodResult(
        nll=nll,
        stderr=stderr,
        log_likelihood=log_likelihood,
        bits_per_dim=bpd,
        bits_per_dim_stderr=bpd_err,
        divergence=mode,
        n_probes=n_probes if mode == "hutchinson" else 0,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        solver=solver,
        n_evaluations=evaluations,
        n_samples=n,
        dequantized=bounds is not None and dequantize_data,
        log_z=log_z,
        log_z_stderr=log_z_err,
    )


def _solve_batch(
    energy: ebmflow.Energy,
    x: Tensor,
    sigma_min: float,
    sigma_max: float,
    probes: Tensor | None,
    settings: dict[str, Any],
) -> tuple[Tensor, Tensor, int]:
    """x(σ_max) and ∫ ∇·f du for one batch, and the drift evaluations."""
    count = [0]

    def dynamics(u: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        count[0] += 1
        sigma = math.exp(float(u))
        with torch.enable_grad():
            y = state[0].detach().requires_grad_(True)
            score = energy.energy_and_score(
                y, ebmflow.broadcast_sigma(sigma, y), create_graph=True
            )[1]
            f = score * (-sigma * sigma)
            div = exact_divergence(f, y) if probes is None else hutchinson_divergence(f, y, probes)
        return f.detach(), div.detach()

    start = (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
    x_end, integral = solve(
        OWNER, dynamics, start, math.log(sigma_min), math.log(sigma_max), **settings
    )
    return x_end, integral, count[0]


def _check_data(energy: ebmflow.Energy, data: Any) -> Tensor:
    if not isinstance(data, Tensor) or data.ndim < 2 or data.shape[0] < 1:
        shape = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
        raise ebmflow.ConfigError(
            f"{OWNER}: data must be a (N, *event_shape) tensor with N ≥ 1, got {shape}"
        )
    if energy.event_shape is not None and tuple(data.shape[1:]) != tuple(energy.event_shape):
        raise ebmflow.ConfigError(
            f"{OWNER}: data has event shape {tuple(data.shape[1:])} but "
            f"{type(energy).__name__} expects {tuple(energy.event_shape)}"
        )
    if not torch.is_floating_point(data):
        raise ebmflow.ConfigError(f"{OWNER}: data must be floating point, got {data.dtype}")
    if not bool(torch.isfinite(data).all()):
        raise ebmflow.ConfigError(f"{OWNER}: data holds NaN or ±∞ values")
    return data
