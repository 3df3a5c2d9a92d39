"""The warm-up's initial step-size search (Hoffman & Gelman 2014, "The No-U-Turn Sampler",
Algorithm 4; Stan's ``init_stepsize``).

Dual averaging adapts log ε at a rate that needs many steps to cover orders of magnitude, so
a warm-up that starts from a step size far off (10⁻⁴ where 1 is right, or 10 where 0.1 is)
spends much of itself getting there. Before the warm-up's first step the search doubles or
halves ε until the acceptance of one leapfrog step crosses ½:

    draw p ~ N(0, M), make one leapfrog step of size ε from (x, p) to (x′, p′),
    ā(ε) = mean over the chains of min(1, exp(H(x, p) − H(x′, p′)));
    d = +1 if ā(ε) > ½ else −1;  repeat ε ← 2ᵈ ε until ā(ε) has crossed ½,

and the warm-up starts (μ = log(10 ε) included) from the ε it ends at. A non-finite energy
counts as a rejection. A kernel whose step size is a Langevin step η (MALA: one leapfrog
step from p ~ N(0, I) is the MALA proposal with ε = √(2η), and has MALA's acceptance)
searches over ε = √(2η) and keeps η = ε²/2.

``Sampler.init`` takes no generator, so the search draws its momenta from a generator of its
own with a fixed seed: ``init`` stays a function of the starting points, and the run's
generator produces the same numbers whether or not the search ran.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmflow.energy import Energy
from ebmflow.errors import ConfigError
from ebmflow.samplers.base import SamplerState

#: how a kernel's step size relates to the leapfrog step ε the search varies.
STEP_KINDS = ("leapfrog", "langevin")
#: the fixed seed of the search's own generator (module docstring).
SEARCH_SEED = 20140101
#: at most this many doublings or halvings (a factor of 2⁴⁰ ≈ 10¹²); a search that has not
#: crossed by then (a flat energy) keeps the step size it was given.
MAX_DOUBLINGS = 40


def check_step_kind(owner: str, kind: object) -> str:
    if kind not in STEP_KINDS:
        raise ConfigError(
            f"{owner}: step_kind must be one of {', '.join(map(repr, STEP_KINDS))}, got {kind!r}"
        )
    return str(kind)


def leapfrog_acceptance(
    energy: Energy,
    state: SamplerState,
    eps: float,
    generator: torch.Generator,
    inverse_mass: Tensor | None = None,
) -> float:
    """ā(ε): the mean over the chains of min(1, exp(H₀ − H₁)) after one leapfrog step of
    size ``eps`` from ``state`` with a fresh momentum p ~ N(0, M) (M⁻¹ = ``inverse_mass``,
    one event's shape, or I)."""
    x, e0, s0 = state.x, state.energy, state.score
    assert e0 is not None  # the callers search only for energies with values
    p = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if inverse_mass is not None:
        p = p / inverse_mass.sqrt()
    p_half = torch.add(p, s0, alpha=0.5 * eps)
    velocity = p_half if inverse_mass is None else inverse_mass * p_half
    e1, s1 = energy.energy_and_score(torch.add(x, velocity, alpha=eps), state.sigma)
    assert e1 is not None  # an energy that gave values at x gives them at x′
    p1 = p_half.add_(s1, alpha=0.5 * eps)
    h0 = e0.double() + 0.5 * _kinetic(p, inverse_mass)
    h1 = e1.double() + 0.5 * _kinetic(p1, inverse_mass)
    log_a = torch.nan_to_num(h0 - h1, nan=-math.inf).clamp(max=0.0)
    return float(log_a.exp().mean())


def find_step_size(
    energy: Energy,
    state: SamplerState,
    step_size: float,
    kind: str = "leapfrog",
    inverse_mass: Tensor | None = None,
) -> float:
    """The step size from which the warm-up starts: ``step_size`` doubled or halved until
    the one-step acceptance crosses ½ (module docstring). ``kind`` is ``"leapfrog"`` (HMC,
    NUTS: the step size is ε) or ``"langevin"`` (MALA: the step size is η = ε²/2)."""
    check_step_kind("find_step_size", kind)
    if state.energy is None:
        return step_size
    langevin = kind == "langevin"
    eps = math.sqrt(2.0 * step_size) if langevin else step_size
    generator = torch.Generator(device=state.x.device).manual_seed(SEARCH_SEED)
    with torch.no_grad():
        above = leapfrog_acceptance(energy, state, eps, generator, inverse_mass) > 0.5
        factor = 2.0 if above else 0.5
        for _ in range(MAX_DOUBLINGS):
            eps *= factor
            if (leapfrog_acceptance(energy, state, eps, generator, inverse_mass) > 0.5) != above:
                return 0.5 * eps * eps if langevin else eps
    return step_size


def _kinetic(p: Tensor, inverse_mass: Tensor | None) -> Tensor:
    """pᵀM⁻¹p per chain, in float64."""
    q = p * p if inverse_mass is None else p * inverse_mass * p
    return q.flatten(1).double().sum(1)
