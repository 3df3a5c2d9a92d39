"""The Metropolis–Hastings accept/reject step shared by MALA, HMC and replica exchange."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmflow.errors import ConfigError, SamplerDivergedError
from ebmflow.samplers.base import per_row


def row_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-chain inner product ``⟨a_b, b_b⟩`` of two (B, *event) tensors, shape ``(B,)``.

    The elementwise product, then a matrix–vector product with ones: for small events
    (2-d points) a sum over the short inner dimension runs an unvectorised loop per row
    and costs about three times as much; for large ones both are memory-bound alike."""
    prod = torch.mul(a, b).flatten(1)
    return torch.mv(prod, prod.new_ones(prod.shape[1]))


def sum_squares(t: Tensor) -> Tensor:
    """Per-chain squared norm ``‖t_b‖²``, shape ``(B,)``."""
    return row_dot(t, t)


def energy_value(owner: str, energy: Tensor | None) -> Tensor:
    """``energy``, a cached or proposed energy that a Metropolis test needs; ``None`` (a
    score-only model: ``Sampler.init`` refuses these for MH samplers, but ``step`` may be
    handed such a state) raises :class:`~ebmflow.ConfigError`."""
    if energy is None:
        raise ConfigError(
            f"{owner} needs energy values for its Metropolis test, but the state or the "
            "energy is score-only; use 'langevin' or 'annealed-langevin', or give the model "
            "an energy"
        )
    return energy


def metropolis_accept(
    owner: str,
    step: int,
    log_alpha: Tensor,
    proposal_energy: Tensor,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Per-chain Metropolis decision: ``(accepted (B,) bool, acceptance probability (B,))``.

    Accept where u < α = min(1, exp(log_alpha)), u ~ U(0, 1). A proposal with energy +∞
    (zero density) is rejected. A NaN (in the energy or anywhere in log α) or an energy of
    −∞ raises :class:`SamplerDivergedError` rather than being silently rejected (see
    :func:`checked_log_alpha`). The common all-finite case costs one reduction for the check.
    """
    log_alpha = checked_log_alpha(owner, step, log_alpha, proposal_energy)
    accept_prob = log_alpha.clamp(max=0.0).exp_()
    u = torch.rand(
        log_alpha.shape, generator=generator, device=log_alpha.device, dtype=log_alpha.dtype
    )
    return u < accept_prob, accept_prob


def checked_log_alpha(owner: str, step: int, log_alpha: Tensor, proposal_energy: Tensor) -> Tensor:
    """``log_alpha`` with −∞ where the proposal has energy +∞ (zero density: rejected);
    a NaN (in the energy or anywhere in log α) or an energy of −∞ raises
    :class:`SamplerDivergedError` naming ``owner``, the step and the chains affected. The
    common all-finite case costs one reduction and returns ``log_alpha`` itself."""
    if math.isfinite(float(log_alpha.sum())):
        return log_alpha
    zero_density = proposal_energy == math.inf
    bad = (torch.isnan(log_alpha) & ~zero_density) | (log_alpha == math.inf)
    bad |= torch.isnan(proposal_energy)
    n_bad = int(bad.sum())
    if n_bad:
        raise SamplerDivergedError(
            f"{owner} diverged at step {step}: NaN or −∞ energy (or NaN score) proposed "
            f"in {n_bad} of {proposal_energy.shape[0]} chains",
            step=step,
            n_chains=n_bad,
        )
    return log_alpha.masked_fill(zero_density, -math.inf)


def select(accept: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where ``accept`` (per chain, (B,), or already shaped by
    :func:`~ebmflow.samplers.base.per_row`), else ``old``."""
    mask = accept if accept.ndim == new.ndim else per_row(accept, new.shape[1:])
    return torch.where(mask, new, old)
