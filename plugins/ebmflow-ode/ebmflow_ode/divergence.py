"""The divergence ∇ₓ·f(x) of a drift f, per sample: exact by autograd, or Hutchinson's
estimate with Rademacher probes (Hutchinson 1989; FFJORD, Grathwohl et al. 2019).

- exact: Σᵢ ∂fᵢ/∂xᵢ, one backward pass per dimension D (for low D);
- Hutchinson: vᵀ (∂f/∂x) v averaged over P probes v ∈ {−1, +1}^D, one backward pass per
  probe, unbiased with variance 2 Σ_{i≠j} (∂fᵢ/∂xⱼ)² / P per sample. Inside an ODE the
  probes stay fixed along the path, so the solve stays deterministic and the integral of
  the estimate is an unbiased estimate of the integral of the divergence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

import ebmflow

MODES = ("auto", "exact", "hutchinson")


def resolve_mode(owner: str, mode: str, event_shape: Sequence[int], exact_max_dim: int) -> str:
    """``"exact"`` or ``"hutchinson"``: ``"auto"`` is exact up to ``exact_max_dim``
    dimensions (D backward passes per evaluation), Hutchinson above."""
    if mode not in MODES:
        raise ebmflow.ConfigError(
            f"{owner}: divergence must be one of {', '.join(map(repr, MODES))}; got {mode!r}"
        )
    if mode == "auto":
        return "exact" if math.prod(event_shape) <= exact_max_dim else "hutchinson"
    return mode


def rademacher(n_probes: int, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """P probes shaped like ``x``, entries ±1 with probability ½ each: (P, *x.shape)."""
    bits = torch.randint(
        0, 2, (n_probes, *x.shape), generator=generator, device=x.device, dtype=torch.int8
    )
    return bits.to(x.dtype).mul_(2).sub_(1)


def exact_divergence(f: Tensor, x: Tensor) -> Tensor:
    """Σᵢ ∂fᵢ/∂xᵢ (B,): ``f`` a differentiable function of ``x`` (which requires grad)."""
    flat = f.flatten(1)
    total = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
    for i in range(flat.shape[1]):
        (grad,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)
        total = total + grad.flatten(1)[:, i]
    return total


def hutchinson_divergence(f: Tensor, x: Tensor, probes: Tensor) -> Tensor:
    """The mean over ``probes`` (P, *x.shape) of vᵀ (∂f/∂x) v, per sample (B,)."""
    total = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
    for v in probes:
        (grad,) = torch.autograd.grad(f, x, v, retain_graph=True)
        total = total + (grad * v).flatten(1).sum(1)
    return total / probes.shape[0]
