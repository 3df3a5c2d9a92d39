"""Exact evaluation of 1–3-D energies by quadrature on a grid: log Z and negative log-likelihood.

On the box Π_d [low_d, high_d] with n_d cells per dimension, cell widths h_d =
(high_d − low_d)/n_d and midpoints g_i = low + (i + ½)·h, the midpoint rule gives

    log Z = log ∫ exp(−E(x, σ)) dx ≈ logsumexp_i(−E(g_i, σ)) + log Π_d h_d

and the negative log-likelihood of data x_1 … x_N is

    NLL = (1/N) Σ_n [E(x_n, σ) + log Z],   standard error sd_n(E(x_n, σ)) / √N.

For smooth densities whose mass lies well inside the box the midpoint rule converges very
fast, so two checks decide whether the number can be trusted: the same sum at half the
resolution (``error_estimate`` = |log Z(n) − log Z(n/2)|, a conservative bound on the error at
n), and the probability mass in the outer shell of the box (``edge_mass``), which is large
when the box cuts the density off. Either failing emits a :class:`QuadratureWarning`.

Sums run in float64 (grid coordinates and the log-sum-exp accumulator; the energy itself is
evaluated in its own parameters' dtype), in batches of ``batch_size`` grid points, under
``torch.no_grad``.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from ebmflow.energy import Energy, broadcast_sigma
from ebmflow.errors import ConfigError
from ebmflow.evaluate.arguments import check_has_energy, evaluation_dtype_device

#: default number of cells per dimension, by dimension.
DEFAULT_RESOLUTION = {1: 4096, 2: 512, 3: 96}
#: the outer shell whose mass ``edge_mass`` reports is this fraction of the box width on
#: each side (at least one cell).
EDGE_FRACTION = 0.02


class QuadratureWarning(UserWarning):
    """A grid estimate that may be wrong: not converged in resolution, mass cut off at the
    box edge, or data outside the box."""


def json_float(value: float | None) -> float | None:
    """``value`` as a JSON-safe float (NaN and ±∞ become ``None``)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class GridResult:
    """log Z of an energy by the midpoint rule on a grid.

    Attributes:
        log_z: logsumexp(−E(grid)) + log(cell_volume).
        bounds: ((low, high), …) per dimension.
        resolution: cells per dimension.
        cell_volume: Π_d h_d.
        n_points: number of grid points evaluated (without the convergence check).
        edge_mass: probability mass, under the grid-normalised density, of the outer shell
            of the box (the outermost ``EDGE_FRACTION`` of each side, at least one cell).
        sigma: the noise level the energy was evaluated at (``None``: clean energy).
        log_z_coarse: log Z at half the resolution (``None`` when the check was skipped).
        error_estimate: |log_z − log_z_coarse| (``None`` when the check was skipped).
        converged: ``error_estimate ≤ tol`` (``None`` when the check was skipped).
        warnings: the messages of the warnings this evaluation emitted.
    """

    log_z: float
    bounds: tuple[tuple[float, float], ...]
    resolution: tuple[int, ...]
    cell_volume: float
    n_points: int
    edge_mass: float
    sigma: float | None = None
    log_z_coarse: float | None = None
    error_estimate: float | None = None
    converged: bool | None = None
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (lists for tuples; non-finite floats become ``None``)."""
        out = asdict(self)
        for key in ("log_z", "cell_volume", "edge_mass", "sigma", "log_z_coarse", "error_estimate"):
            out[key] = json_float(out[key])
        out["bounds"] = [list(pair) for pair in self.bounds]
        out["resolution"] = list(self.resolution)
        out["warnings"] = list(self.warnings)
        return out


@dataclass(frozen=True)
class NLLResult:
    """Negative log-likelihood of data under an energy normalised on a grid.

    Attributes:
        nll: (1/N) Σ_n E(x_n) + log Z, in nats per sample.
        stderr: Monte Carlo standard error of ``nll``, sd(E(x_n)) / √N (NaN for N = 1).
        log_z: the grid's log Z.
        mean_energy: (1/N) Σ_n E(x_n).
        n_samples: N.
        n_outside: how many data points lie outside the box.
        grid: the :class:`GridResult` behind ``log_z``.
    """

    nll: float
    stderr: float
    log_z: float
    mean_energy: float
    n_samples: int
    n_outside: int
    grid: GridResult

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; the grid's details are nested under ``"grid"``."""
        return {
            "nll": json_float(self.nll),
            "stderr": json_float(self.stderr),
            "log_z": json_float(self.log_z),
            "mean_energy": json_float(self.mean_energy),
            "n_samples": self.n_samples,
            "n_outside": self.n_outside,
            "grid": self.grid.to_dict(),
        }


# -- argument checks ---------------------------------------------------------------------


def _check_sigma(owner: str, sigma: Any) -> float | None:
    if sigma is None:
        return None
    if isinstance(sigma, Tensor) and sigma.numel() == 1:
        sigma = float(sigma)
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float))
        or not (math.isfinite(sigma) and sigma >= 0)
    ):
        raise ConfigError(
            f"{owner}: sigma must be None or one number ≥ 0 (the same noise level for every "
            f"point), got {sigma!r}"
        )
    return float(sigma)


def _check_bounds(owner: str, bounds: Any) -> tuple[tuple[float, float], ...]:
    accepted = "a sequence of (low, high) pairs, one per dimension (1 to 3), with low < high"
    if isinstance(bounds, Tensor):
        bounds = bounds.tolist()
    try:
        pairs = tuple((float(low), float(high)) for low, high in bounds)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: bounds must be {accepted}; got {bounds!r}") from None
    if not 1 <= len(pairs) <= 3:
        raise ConfigError(
            f"{owner}: bounds has {len(pairs)} dimensions; grid quadrature handles 1 to 3 "
            "(use ebmflow.evaluate.ais_log_z in higher dimensions)"
        )
    for low, high in pairs:
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"{owner}: bounds must be {accepted}; got {bounds!r}")
    return pairs


def _check_event(owner: str, energy: Energy, dim: int) -> tuple[int, ...]:
    if energy.event_shape is None:
        return (dim,)
    shape = tuple(energy.event_shape)
    if math.prod(shape) != dim:
        raise ConfigError(
            f"{owner}: bounds give {dim} dimension(s) but {type(energy).__name__} has "
            f"event_shape {shape} ({math.prod(shape)} numbers); give one (low, high) pair per "
            "number in an event"
        )
    return shape


def _check_resolution(owner: str, resolution: Any, dim: int) -> tuple[int, ...]:
    if resolution is None:
        return (DEFAULT_RESOLUTION[dim],) * dim
    try:
        values = (resolution,) * dim if not hasattr(resolution, "__len__") else resolution
        values = tuple(operator.index(n) if not isinstance(n, bool) else 0 for n in values)
    except TypeError:
        values = ()
    if len(values) != dim or any(n < 2 for n in values):
        raise ConfigError(
            f"{owner}: resolution must be an integer ≥ 2 or {dim} such integers (cells per "
            f"dimension), got {resolution!r}"
        )
    return values


def _check_positive(owner: str, name: str, value: Any, upper: float | None = None) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0 or (upper is not None and value >= upper):
        accepted = "a number > 0" if upper is None else f"a number in (0, {upper:g})"
        raise ConfigError(f"{owner}: {name} must be {accepted}, got {value!r}")
    return float(value)


def _check_batch_size(owner: str, batch_size: Any) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"{owner}: batch_size must be an integer ≥ 1, got {batch_size!r}")
    return batch_size


# -- the grid sum ------------------------------------------------------------------------


def _energies(owner: str, energy: Energy, x: Tensor, sigma: float | None, what: str) -> Tensor:
    """E(x, σ) as float64 ``(B,)``; raise on NaN or −∞ (+∞ is zero density, allowed)."""
    e = energy(x, broadcast_sigma(sigma, x))
    if e.shape != (x.shape[0],):
        raise ConfigError(
            f"{owner}: {type(energy).__name__} returned shape {tuple(e.shape)} for "
            f"{x.shape[0]} points; an energy returns one value per point"
        )
    e = e.to(torch.float64)
    bad = torch.isnan(e) | (e == -math.inf)
    if bool(bad.any()):
        first = x[bad.nonzero()[0, 0]].flatten().tolist()
        raise ConfigError(
            f"{owner}: {type(energy).__name__} returned NaN or −∞ at {int(bad.sum())} of "
            f"{e.shape[0]} {what} (first at x = {[round(v, 4) for v in first]}); the energy "
            "must be finite or +∞ (zero density) everywhere in the box"
        )
    return e


def _grid_pass(
    owner: str,
    energy: Energy,
    bounds: tuple[tuple[float, float], ...],
    resolution: tuple[int, ...],
    event_shape: tuple[int, ...],
    sigma: float | None,
    batch_size: int,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[float, float, float]:
    """One midpoint-rule pass: ``(log Z, edge_mass, cell_volume)``."""
    lows = torch.tensor([b[0] for b in bounds], dtype=torch.float64, device=device)
    highs = torch.tensor([b[1] for b in bounds], dtype=torch.float64, device=device)
    ns = torch.tensor(resolution, dtype=torch.int64, device=device)
    h = (highs - lows) / ns.to(torch.float64)
    widths = torch.tensor(
        [max(1, round(EDGE_FRACTION * n)) for n in resolution], dtype=torch.int64, device=device
    )
    # strides to unravel a flat cell index into per-dimension indices (last dim fastest)
    strides = [math.prod(resolution[d + 1 :]) for d in range(len(resolution))]
    total = math.prod(resolution)
    log_sums, shell_sums = [], []
    for start in range(0, total, batch_size):
        flat = torch.arange(start, min(start + batch_size, total), device=device)
        idx = torch.stack([(flat // s) % n for s, n in zip(strides, resolution)], dim=1)
        points = lows + (idx.to(torch.float64) + 0.5) * h
        x = points.to(dtype).reshape(-1, *event_shape)
        neg_e = -_energies(owner, energy, x, sigma, "grid points")
        in_shell = ((idx < widths) | (idx >= ns - widths)).any(dim=1)
        log_sums.append(torch.logsumexp(neg_e, dim=0))
        if bool(in_shell.any()):
            shell_sums.append(torch.logsumexp(neg_e[in_shell], dim=0))
    log_sum = torch.logsumexp(torch.stack(log_sums), dim=0)
    if not bool(torch.isfinite(log_sum)):
        raise ConfigError(
            f"{owner}: exp(−E) is zero (E = +∞) at every grid point in {list(bounds)}; "
            "the box misses the density entirely"
        )
    log_shell = torch.logsumexp(torch.stack(shell_sums), dim=0)
    log_volume = float(h.log().sum())
    return float(log_sum) + log_volume, float((log_shell - log_sum).exp()), math.exp(log_volume)


def _grid_log_z(
    owner: str,
    energy: Energy,
    bounds: Any,
    resolution: Any,
    *,
    sigma: Any,
    batch_size: Any,
    check: bool,
    tol: Any,
    edge_tol: Any,
    dtype: torch.dtype | None,
    device: torch.device | str | None,
) -> tuple[GridResult, tuple[int, ...], torch.dtype, torch.device]:
    """Validate, integrate, check; returns the result (with its warning messages, not yet
    emitted), the event shape and the evaluation dtype and device."""
    check_has_energy(owner, energy)
    pairs = _check_bounds(owner, bounds)
    event_shape = _check_event(owner, energy, len(pairs))
    ns = _check_resolution(owner, resolution, len(pairs))
    sigma = _check_sigma(owner, sigma)
    batch_size = _check_batch_size(owner, batch_size)
    tol = _check_positive(owner, "tol", tol)
    edge_tol = _check_positive(owner, "edge_tol", edge_tol, upper=1.0)
    dtype, device = evaluation_dtype_device(energy, dtype, device)
    with torch.no_grad():
        log_z, edge_mass, volume = _grid_pass(
            owner, energy, pairs, ns, event_shape, sigma, batch_size, dtype, device
        )
        log_z_coarse = error = converged = None
        if check:
            coarse = tuple(max(1, n // 2) for n in ns)
            log_z_coarse = _grid_pass(
                owner, energy, pairs, coarse, event_shape, sigma, batch_size, dtype, device
            )[0]
            error = abs(log_z - log_z_coarse)
            converged = error <= tol
    messages = []
    if converged is False:
        messages.append(
            f"{owner}: log Z is not converged in resolution: it moved by {error:.3g} nats "
            f"between {coarse} and {ns} cells (tolerance {tol:g}); raise resolution "
            f"(e.g. {tuple(2 * n for n in ns)})"
        )
    if edge_mass > edge_tol:
        messages.append(
            f"{owner}: {edge_mass:.3g} of the probability mass lies in the outer shell of the "
            f"box {[list(p) for p in pairs]} (threshold {edge_tol:g}); the density is cut "
            "off at the box edge, so log Z is underestimated: widen bounds"
        )
    result = GridResult(
        log_z=log_z,
        bounds=pairs,
        resolution=ns,
        cell_volume=volume,
        n_points=math.prod(ns),
        edge_mass=edge_mass,
        sigma=sigma,
        log_z_coarse=log_z_coarse,
        error_estimate=error,
        converged=converged,
        warnings=tuple(messages),
    )
    return result, event_shape, dtype, device


def grid_log_z(
    energy: Energy,
    bounds: Sequence[tuple[float, float]],
    resolution: int | Sequence[int] | None = None,
    *,
    sigma: float | None = None,
    batch_size: int = 65536,
    check: bool = True,
    tol: float = 1e-3,
    edge_tol: float = 1e-4,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> GridResult:
    """log Z = log ∫ exp(−E(x, σ)) dx of a 1–3-D energy by the midpoint rule on a grid.

    log Z ≈ logsumexp_i(−E(g_i, σ)) + log Π_d h_d over the cell midpoints g_i of the box.

    Args:
        energy: an :class:`~ebmflow.Energy` with energy values whose events hold 1 to 3
            numbers (``event_shape`` ``None``, ``(d,)``, or any shape with d elements).
        bounds: ``[(low, high), …]``, one pair per dimension; the box should hold
            essentially all of the mass.
        resolution: cells per dimension (an int, or one per dimension, each ≥ 2); default
            4096 (1-D), 512 (2-D), 96 (3-D).
        sigma: noise level for noise-conditional energies (one number).
        batch_size: grid points per energy evaluation (bounds the memory).
        check: also integrate at half the resolution and report the difference
            (``error_estimate``); warn if it exceeds ``tol``.
        tol: convergence tolerance in nats.
        edge_tol: warn when the outer shell of the box holds more than this probability.
        dtype, device: where to evaluate the energy; default: its parameters', else
            float64 on the CPU. Coordinates and sums are float64 regardless.

    Warns:
        QuadratureWarning: not converged, or non-negligible mass at the box edge.
    """
    result = _grid_log_z(
        "grid_log_z",
        energy,
        bounds,
        resolution,
        sigma=sigma,
        batch_size=batch_size,
        check=check,
        tol=tol,
        edge_tol=edge_tol,
        dtype=dtype,
        device=device,
    )[0]
    for message in result.warnings:
        warnings.warn(message, QuadratureWarning, stacklevel=2)
    return result


def nll(
    energy: Energy,
    data: Tensor,
    bounds: Sequence[tuple[float, float]],
    resolution: int | Sequence[int] | None = None,
    *,
    sigma: float | None = None,
    batch_size: int = 65536,
    check: bool = True,
    tol: float = 1e-3,
    edge_tol: float = 1e-4,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> NLLResult:
    """Exact negative log-likelihood of ``data`` under p(x) = exp(−E(x, σ)) / Z, with log Z
    from :func:`grid_log_z` on ``bounds``.

    NLL = (1/N) Σ_n E(x_n, σ) + log Z, with standard error sd_n(E(x_n, σ)) / √N (the
    Monte Carlo error of the data average; log Z is exact up to the grid checks).

    Args:
        data: ``(N, d)`` or ``(N, *event_shape)`` points.
        The other arguments are those of :func:`grid_log_z`.

    Warns:
        QuadratureWarning: the grid warnings, and data outside the box (the density is
        normalised on the box only).
    """
    owner = "nll"
    grid, event_shape, dtype, device = _grid_log_z(
        owner,
        energy,
        bounds,
        resolution,
        sigma=sigma,
        batch_size=batch_size,
        check=check,
        tol=tol,
        edge_tol=edge_tol,
        dtype=dtype,
        device=device,
    )
    data = torch.as_tensor(data)
    dim = math.prod(event_shape)
    if data.ndim < 2 or data.shape[0] < 1 or math.prod(data.shape[1:]) != dim:
        raise ConfigError(
            f"{owner}: data must be (N, {dim}) or (N, *{event_shape}) with N ≥ 1 for "
            f"{len(grid.bounds)}-D bounds, got shape {tuple(data.shape)}"
        )
    flat = data.reshape(data.shape[0], dim).to(torch.float64)
    if not bool(torch.isfinite(flat).all()):
        raise ConfigError(f"{owner}: data holds NaN or ±∞ values")
    lows = torch.tensor([b[0] for b in grid.bounds], dtype=torch.float64)
    highs = torch.tensor([b[1] for b in grid.bounds], dtype=torch.float64)
    outside = ((flat.cpu() < lows) | (flat.cpu() > highs)).any(dim=1)
    n_outside = int(outside.sum())
    energies = []
    with torch.no_grad():
        for start in range(0, data.shape[0], batch_size):
            x = data[start : start + batch_size].to(device=device, dtype=dtype)
            energies.append(
                _energies(owner, energy, x.reshape(-1, *event_shape), grid.sigma, "data points")
            )
    e = torch.cat(energies)
    n = e.shape[0]
    mean_energy = float(e.mean())
    stderr = float(e.std() / math.sqrt(n)) if n > 1 else math.nan
    messages = list(grid.warnings)
    if n_outside:
        messages.append(
            f"{owner}: {n_outside} of {n} data points ({n_outside / n:.2%}) lie outside the "
            f"box {[list(p) for p in grid.bounds]}, where the grid does not normalise the "
            "density: widen bounds"
        )
    for message in messages:
        warnings.warn(message, QuadratureWarning, stacklevel=2)
    return NLLResult(
        nll=mean_energy + grid.log_z,
        stderr=stderr,
        log_z=grid.log_z,
        mean_energy=mean_energy,
        n_samples=n,
        n_outside=n_outside,
        grid=grid,
    )
