"""One Metropolis-corrected move of chains stacked over a ladder of noise levels, and the
replica exchange between neighbouring levels.

The stack holds K·B rows, level-major: rows r·B … (r+1)·B − 1 sit at noise level σ_r
(σ_0 < σ_1 < …, σ_0 the target). Each row moves by MALA with its level's step size η_r
(the MALA rule of :mod:`ebmflow.samplers.mala` with a per-row η); then neighbouring levels
(r, r+1), every other pair by ``parity``, propose to exchange positions, accepted with

    α = min(1, exp(E_r(x_r) + E_{r+1}(x_{r+1}) − E_r(x_{r+1}) − E_{r+1}(x_r)))

(replica exchange over noise levels, the swap rule of parallel tempering with the family
E(·, σ) in place of E/T). Both moves leave the product of the levels' targets invariant, so
the σ_0 rows sample E(·, σ_0) exactly, with modes reached at higher σ passed down by swaps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebmflow.energy import Energy
from ebmflow.samplers.base import gaussian_like, per_row
from ebmflow.samplers.metropolis import energy_value, metropolis_accept, row_dot, select


def mala_rows(
    owner: str,
    energy: Energy,
    x: Tensor,
    e: Tensor,
    s: Tensor,
    sigma: Tensor,
    eta: Tensor,
    step: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One MALA step with a step size per row, ``eta`` (N,): the new (x, E, s) and the
    acceptance probability (N,). One energy+score evaluation."""
    shape = x.shape[1:]
    eta_rows = per_row(eta, shape)
    xi = gaussian_like(x, generator)
    x_prop = x + eta_rows * s + (2.0 * eta_rows).sqrt() * xi
    e_prop_or_none, s_prop = energy.energy_and_score(x_prop, sigma)
    e_prop = energy_value(owner, e_prop_or_none)
    a = (eta / 2.0).sqrt()
    u = s + s_prop
    log_ratio = row_dot(u, xi + per_row(a / 2.0, shape) * u)
    log_alpha = e - e_prop - a * log_ratio
    accept, prob = metropolis_accept(owner, step, log_alpha, e_prop, generator)
    mask = per_row(accept, shape)
    return select(mask, x_prop, x), torch.where(accept, e_prop, e), select(mask, s_prop, s), prob


def swap_levels(
    owner: str,
    energy: Energy,
    x: Tensor,
    e: Tensor,
    s: Tensor,
    sigmas: Tensor,
    n_chains: int,
    parity: int,
    step: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Swap proposals between levels (r, r+1) for r ≡ ``parity`` (mod 2), on a level-major
    stack of ``len(sigmas)`` levels of ``n_chains`` rows. Returns the new (x, E, s) and the
    swap acceptance probability per proposed pair, ``(n_pairs, n_chains)`` (empty when no
    pair). One energy+score evaluation on the rows of the proposed pairs."""
    k, b = sigmas.shape[0], n_chains
    lows = list(range(parity, k - 1, 2))
    if not lows:
        return x, e, s, e.new_zeros((0, b))
    low = torch.cat([torch.arange(r * b, (r + 1) * b, device=x.device) for r in lows])
    high = low + b
    # each position evaluated at the other level: x_{r+1} at σ_r, then x_r at σ_{r+1}
    moved = torch.cat([x[high], x[low]])
    sigma_rows = torch.cat([sigmas.repeat_interleave(b)[low], sigmas.repeat_interleave(b)[high]])
    e_moved_or_none, s_moved = energy.energy_and_score(moved, sigma_rows)
    e_moved = energy_value(owner, e_moved_or_none)
    n = low.shape[0]
    log_alpha = e[low] + e[high] - e_moved[:n] - e_moved[n:]
    accept, prob = metropolis_accept(owner, step, log_alpha, e_moved[:n] + e_moved[n:], generator)
    x, e, s = x.clone(), e.clone(), s.clone()
    rows_low, rows_high = low[accept], high[accept]
    take = accept.nonzero().squeeze(1)
    x[rows_low], x[rows_high] = moved[take], moved[take + n]
    e[rows_low], e[rows_high] = e_moved[take], e_moved[take + n]
    s[rows_low], s[rows_high] = s_moved[take], s_moved[take + n]
    return x, e, s, prob.reshape(len(lows), b)
