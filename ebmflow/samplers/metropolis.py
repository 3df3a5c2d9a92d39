"""The Metropolis–Hastings accept/reject step shared by MALA, HMC and replica exchange."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmflow.errors import SamplerDivergedError


def sum_squares(t: Tensor) -> Tensor:
    """Per-chain squared norm ``‖t_b‖²``, shape ``(B,)``."""
    return t.flatten(1).pow(2).sum(dim=1)


def metropolis_accept(
    owner: str,
    step: int,
    log_alpha: Tensor,
    proposal_energy: Tensor,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Per-chain Metropolis decision: ``(accepted (B,) bool, acceptance probability (B,))``.

    A proposal with energy +∞ (zero density) is rejected; NaN or −∞ raises
    :class:`SamplerDivergedError` rather than being silently rejected.
    """
    if not bool(torch.isfinite(proposal_energy).all()):
        bad = torch.isnan(proposal_energy) | (proposal_energy == -math.inf)
        if bool(bad.any()):
            raise SamplerDivergedError(
                f"{owner} diverged at step {step}: NaN or −∞ energy proposed in "
                f"{int(bad.sum())} of {proposal_energy.shape[0]} chains",
                step=step, n_chains=int(bad.sum()),
            )
        log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf)  # +∞ energy: never accepted
    accept_prob = log_alpha.clamp(max=0.0).exp()
    u = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device,
                   dtype=log_alpha.dtype)
    return u < accept_prob, accept_prob


def select(accept: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where ``accept`` (per chain), else ``old``."""
    return torch.where(accept.view((-1,) + (1,) * (new.ndim - 1)), new, old)
