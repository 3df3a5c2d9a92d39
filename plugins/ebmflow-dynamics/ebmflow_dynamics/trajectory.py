"""One doubling of a No-U-Turn trajectory for a batch of chains: the subtree of 2ʲ leapfrog
steps that every still-running chain adds at depth j, built iteratively.

All chains that are still running at depth j take their 2ʲ leapfrog steps in lockstep, so
the leaf index k within the subtree, and with it the bookkeeping of the U-turn checks, is
shared by the batch; each chain keeps its own direction, energies, proposal and
momentum sums. Only the chains still building are evaluated: a chain whose subtree turns
or diverges drops out of the batch at once (its subtree is rejected and its trajectory
ends), so a step costs Σ_chains (leapfrog steps of that chain) gradient evaluations, not
B × the longest trajectory.

U-turn checks inside the subtree (the iterative scheme of Phan, Pradhan & Jankowiak 2019,
NumPyro): at an even leaf k the momentum pₖ and the running momentum sum are stored in
checkpoint slot popcount(k >> 1); at an odd leaf every sub-subtree that ends there (one per
trailing 1-bit of k) is checked against its checkpoint with Stan's criterion, a trajectory
from p⁻ to p⁺ with momentum sum ρ turning when (M⁻¹p⁻)·ρ ≤ 0 or (M⁻¹p⁺)·ρ ≤ 0.

Inside the subtree the proposal is sampled progressively: leaf k replaces it with
probability wₖ / Σ_{i≤k} wᵢ, wᵢ = exp(H₀ − Hᵢ), which picks each leaf with probability
proportional to its weight (multinomial sampling, Betancourt 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ebmflow.extend import row_dot

#: (positions (n, D)) -> (energies (n,), scores (n, D)) for the rows given by ``rows``
Evaluate = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def checkpoint_slots(k: int) -> tuple[int, int]:
    """The checkpoint slots that leaf ``k`` of a subtree checks against: ``(lowest,
    highest)``; ``highest`` is where an even leaf stores its momentum."""
    highest = bin(k >> 1).count("1")
    trailing_ones = 0
    while (k >> trailing_ones) & 1:
        trailing_ones += 1
    return highest - trailing_ones + 1, highest


def is_turning(p_minus: Tensor, p_plus: Tensor, rho: Tensor, inv_mass: Tensor | None) -> Tensor:
    """Stan's U-turn criterion per chain: (M⁻¹p⁻)·ρ ≤ 0 or (M⁻¹p⁺)·ρ ≤ 0, ``(n,)`` bool."""
    rho_sharp = rho if inv_mass is None else inv_mass * rho
    return (row_dot(p_minus, rho_sharp) <= 0) | (row_dot(p_plus, rho_sharp) <= 0)


def rows(values: Tensor, dim: int) -> Tensor:
    """A per-chain ``(n,)`` mask or factor as a ``(n, 1)`` view that acts on ``(n, dim)``
    rows."""
    return values.unsqueeze(1)


@dataclass
class Subtree:
    """The chains that completed their subtree without turning or diverging.

    Attributes:
        chains: their indices in the batch ``(m,)``.
        x, p, score: the last leaf (the trajectory's new end in the subtree's direction).
        prop_x, prop_energy, prop_score: the subtree's multinomial proposal.
        log_weight: log Σ wᵢ over the subtree's leaves.
        rho: the subtree's momentum sum.
    """

    chains: Tensor
    x: Tensor
    p: Tensor
    score: Tensor
    prop_x: Tensor
    prop_energy: Tensor
    prop_score: Tensor
    log_weight: Tensor
    rho: Tensor


@dataclass
class Counters:
    """Per-chain sums over one NUTS step, ``(B,)``: the acceptance statistic
    Σ min(1, e^(H₀−H)), the number of leapfrog steps, and whether a leaf diverged."""

    accept: Tensor
    n_leapfrog: Tensor
    diverged: Tensor


def build_subtree(
    evaluate: Evaluate,
    chains: Tensor,
    x: Tensor,
    p: Tensor,
    score: Tensor,
    step: Tensor,
    h0: Tensor,
    n_leaves: int,
    inv_mass: Tensor | None,
    max_energy_error: float,
    counters: Counters,
    generator: torch.Generator | None,
) -> Subtree:
    """``n_leaves`` leapfrog steps from the end (x, p, score) of each chain in ``chains``,
    with signed step sizes ``step`` ``(n,)`` (the direction times ε). Leaves whose energy
    error H − H₀ exceeds ``max_energy_error`` (or is NaN) diverge. ``counters`` is updated
    in place for every chain, including those that drop out."""
    n, dim = x.shape
    half = rows(0.5 * step, dim)
    full = rows(step, dim)
    depth = max(1, n_leaves.bit_length())
    ckpt_p = x.new_empty((depth, n, dim))
    ckpt_rho = x.new_empty((depth, n, dim))
    rho = torch.zeros_like(x)
    log_w = x.new_full((n,), float("-inf"))
    accept = x.new_zeros((n,))  # Σ min(1, e^(H₀−H)) of each chain's leaves so far
    prop_x, prop_s = x, score
    prop_e = x.new_empty((n,))
    for k in range(n_leaves):
        p = torch.addcmul(p, half, score)
        x = torch.addcmul(x, full, p if inv_mass is None else inv_mass * p)
        energy, score = evaluate(x, chains)
        p = torch.addcmul(p, half, score)
        kinetic = row_dot(p, p if inv_mass is None else inv_mass * p)
        # log wᵢ = H₀ − Hᵢ; a NaN energy error is a divergence (weight 0)
        log_leaf = h0 - torch.add(energy, kinetic, alpha=0.5)
        log_leaf = torch.nan_to_num(log_leaf, nan=-math.inf, posinf=math.inf, neginf=-math.inf)
        accept += log_leaf.clamp(max=0.0).exp_()
        # progressive (uniform) multinomial sampling within the subtree
        log_w_new = torch.logaddexp(log_w, log_leaf)
        u = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
        take = u.log_() < log_leaf - log_w_new
        take_rows = rows(take, dim)
        prop_x = torch.where(take_rows, x, prop_x)
        prop_s = torch.where(take_rows, score, prop_s)
        prop_e = torch.where(take, energy, prop_e)
        log_w = log_w_new
        rho = rho + p
        lowest, highest = checkpoint_slots(k)
        diverging = log_leaf < -max_energy_error
        bad = diverging
        if k % 2 == 0:
            ckpt_p[highest] = p
            ckpt_rho[highest] = rho
        else:
            for slot in range(highest, lowest - 1, -1):
                sub_rho = rho - ckpt_rho[slot] + ckpt_p[slot]
                bad = bad | is_turning(ckpt_p[slot], p, sub_rho, inv_mass)
        if bool(bad.any()):
            counters.diverged[chains[diverging]] = True
            counters.accept.index_add_(0, chains[bad], accept[bad])
            counters.n_leapfrog[chains[bad]] += k + 1
            keep = ~bad
            chains, x, p, score, h0 = chains[keep], x[keep], p[keep], score[keep], h0[keep]
            half, full, accept = half[keep], full[keep], accept[keep]
            ckpt_p, ckpt_rho = ckpt_p[:, keep], ckpt_rho[:, keep]
            rho, log_w = rho[keep], log_w[keep]
            prop_x, prop_s, prop_e = prop_x[keep], prop_s[keep], prop_e[keep]
            n = chains.shape[0]
            if n == 0:
                break
    else:
        counters.accept.index_add_(0, chains, accept)
        counters.n_leapfrog[chains] += n_leaves
    return Subtree(chains, x, p, score, prop_x, prop_e, prop_s, log_w, rho)
