"""Hand-written sampling loops for the scaling curves and the small-batch overhead: what a
careful user writes with plain PyTorch (detach, require grad, forward,
``torch.autograd.grad``, update), for any event shape and device.

``f`` maps a batch ``(B, *event)`` to energies ``(B,)``. Every loop draws its noise from
``gen`` on the chains' device, in the order the matching ebmflow sampler draws it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def energy_grad(f, x: Tensor) -> tuple[Tensor, Tensor]:
    """(E(x), ∇ₓE(x)), both detached (the caller runs with gradients enabled, as a plain
    script does)."""
    z = x.detach().requires_grad_(True)
    e = f(z)
    (g,) = torch.autograd.grad(e.sum(), z)
    return e.detach(), g


def _row(values: Tensor, like: Tensor) -> Tensor:
    return values.view(-1, *(1,) * (like.ndim - 1))


def ula(f, x: Tensor, eta: float, n_steps: int, gen: torch.Generator) -> Tensor:
    noise = math.sqrt(2 * eta)
    for _ in range(n_steps):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(x).sum(), x)
        x = x - eta * g + noise * torch.randn(x.shape, generator=gen, device=x.device)
    return x.detach()


def mala(f, x: Tensor, eta: float, n_steps: int, gen: torch.Generator, start=None) -> Tensor:
    """MALA with the current energy and gradient cached: one evaluation per step.
    ``start``: (E(x), ∇E(x)) when already known (else evaluated first)."""
    e, g = energy_grad(f, x) if start is None else start
    for _ in range(n_steps):
        xi = torch.randn(x.shape, generator=gen, device=x.device)
        y = x - eta * g + math.sqrt(2 * eta) * xi
        e_y, g_y = energy_grad(f, y)
        back = (x - y + eta * g_y).flatten(1)
        log_alpha = e - e_y - (back * back).sum(1) / (4 * eta) + 0.5 * (xi * xi).flatten(1).sum(1)
        u = torch.rand(e.shape, generator=gen, device=x.device)
        accept = u < log_alpha.clamp(max=0).exp()
        x = torch.where(_row(accept, x), y, x)
        e = torch.where(accept, e_y, e)
        g = torch.where(_row(accept, g), g_y, g)
    return x


def hmc(
    f, x: Tensor, eps: float, n_leapfrog: int, n_steps: int, gen: torch.Generator, start=None
) -> Tensor:
    """HMC with L leapfrog steps, the current energy and gradient cached (``start`` as for
    :func:`mala`)."""
    e, g = energy_grad(f, x) if start is None else start
    for _ in range(n_steps):
        p0 = torch.randn(x.shape, generator=gen, device=x.device)
        p = p0 - 0.5 * eps * g
        y = x
        for i in range(n_leapfrog):
            y = y + eps * p
            e_y, g_y = energy_grad(f, y)
            p = p - (eps if i < n_leapfrog - 1 else 0.5 * eps) * g_y
        kinetic0 = 0.5 * (p0 * p0).flatten(1).sum(1)
        kinetic = 0.5 * (p * p).flatten(1).sum(1)
        log_alpha = e + kinetic0 - e_y - kinetic
        accept = torch.rand(e.shape, generator=gen, device=x.device).log() < log_alpha
        x = torch.where(_row(accept, x), y, x)
        e = torch.where(accept, e_y, e)
        g = torch.where(_row(accept, g), g_y, g)
    return x


def parallel_tempering(
    f, x: Tensor, betas: Tensor, eta: float, n_steps: int, gen: torch.Generator, start=None
) -> Tensor:
    """Replica exchange with MALA moves: ``x`` is (R·B, *event), replica r in rows r·B …;
    each step is one batched MALA move of every replica on βᵣE (one evaluation), then swaps
    of neighbouring replicas, even pairs on even steps and odd pairs on odd steps. The
    untempered E and ∇E travel with the positions, so swaps cost no evaluation."""
    n_rep = betas.shape[0]
    b = x.shape[0] // n_rep
    beta = betas.repeat_interleave(b)
    beta_row = _row(beta, x)
    e, g = energy_grad(f, x) if start is None else start
    for step in range(n_steps):
        xi = torch.randn(x.shape, generator=gen, device=x.device)
        y = x - eta * beta_row * g + math.sqrt(2 * eta) * xi
        e_y, g_y = energy_grad(f, y)
        back = (x - y + eta * beta_row * g_y).flatten(1)
        log_alpha = (
            beta * (e - e_y) - (back * back).sum(1) / (4 * eta) + 0.5 * (xi * xi).flatten(1).sum(1)
        )
        u = torch.rand(e.shape, generator=gen, device=x.device)
        accept = u < log_alpha.clamp(max=0).exp()
        x = torch.where(_row(accept, x), y, x)
        e = torch.where(accept, e_y, e)
        g = torch.where(_row(accept, g), g_y, g)
        i = torch.arange(step % 2, n_rep - 1, 2, device=x.device)
        if not i.numel():
            continue
        raw = e.view(n_rep, b)
        log_swap = (betas[i] - betas[i + 1])[:, None] * (raw[i] - raw[i + 1])
        swap = torch.rand(log_swap.shape, generator=gen, device=x.device).log() < log_swap
        x, e, g = (_swap(t, i, swap, n_rep, b) for t in (x, e, g))
    return x


def _swap(t: Tensor, i: Tensor, swap: Tensor, n_rep: int, b: int) -> Tensor:
    ts = t.view(n_rep, b, *t.shape[1:]).clone()
    lo, hi = ts[i], ts[i + 1]
    m = swap.view(*swap.shape, *(1,) * (t.ndim - 1))
    ts[i], ts[i + 1] = torch.where(m, hi, lo), torch.where(m, lo, hi)
    return ts.view_as(t)
