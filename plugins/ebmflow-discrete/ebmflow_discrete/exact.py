"""Exact log Z, marginals and pair moments of a small discrete energy, by enumeration.

For an energy over binary states (2^D of them) or one-hot categorical states (q^N), with at
most ``max_states`` (2^16 by default) states: every state is built, its energy evaluated in
chunks, and

    log Z = logsumexp_x(−E(x)),   p(x) = exp(−E(x) − log Z),
    marginals = Σ_x p(x) x,       pair moments = Σ_x p(x) x xᵀ,

in float64 (the energy is evaluated in its own dtype, then promoted). For binary states the
marginals are P(x_i = 1) and the pair moments P(x_i = 1, x_j = 1); for categorical ones,
flattened over (site, category), P(x_n = c) and P(x_n = c, x_m = c′). These are what the
tests compare sampler estimates with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

import ebmflow
from ebmflow_discrete.spaces import DISCRETE_SPACES, n_states

#: the most states :func:`exact_moments` enumerates by default.
MAX_STATES = 2**16


@dataclass(frozen=True)
class ExactMoments:
    """What :func:`exact_moments` returns (all float64).

    Attributes:
        log_z: log Z, a float.
        marginals: E[x], shaped like one event.
        pair_moments: E[x xᵀ] over the flattened event, (K, K).
        states: every state, (S, *event_shape), in the energy's dtype.
        log_probs: log p of each state, (S,).
    """

    log_z: float
    marginals: Tensor
    pair_moments: Tensor
    states: Tensor
    log_probs: Tensor

    def correlations(self) -> Tensor:
        """The covariance matrix E[x xᵀ] − E[x] E[x]ᵀ of the flattened event, (K, K)."""
        m = self.marginals.flatten()
        return self.pair_moments - torch.outer(m, m)


def all_states(space: str, event_shape: tuple[int, ...], *, dtype=torch.float32, device=None):
    """Every state of ``space`` with events of ``event_shape``, (S, *event_shape): binary
    states in the order of their bits (the last site is the least significant), categorical
    ones in the order of their category digits."""
    if space == "binary":
        d = math.prod(event_shape)
        codes = torch.arange(2**d, device=device)
        bits = (codes[:, None] >> torch.arange(d - 1, -1, -1, device=device)) & 1
        return bits.to(dtype).reshape(-1, *event_shape)
    q, n = event_shape[-1], math.prod(event_shape[:-1])
    codes = torch.arange(q**n, device=device)
    powers = q ** torch.arange(n - 1, -1, -1, device=device)
    digits = (codes[:, None] // powers) % q
    return torch.nn.functional.one_hot(digits, q).to(dtype).reshape(-1, *event_shape)


@torch.no_grad()
def exact_moments(
    energy: ebmflow.Energy, *, max_states: int = MAX_STATES, chunk: int = 8192
) -> ExactMoments:
    """log Z, marginals and pair moments of ``energy`` by enumeration (module docstring).

    Raises :class:`~ebmflow.ConfigError` for a continuous energy, one without an
    ``event_shape``, or one with more than ``max_states`` states.
    """
    owner = "exact_moments"
    space = getattr(energy, "event_space", "continuous")
    if space not in DISCRETE_SPACES:
        raise ebmflow.ConfigError(
            f"{owner}: {type(energy).__name__} is defined on a {space!r} event space; "
            "enumeration needs a 'binary' or 'categorical' energy"
        )
    if energy.event_shape is None:
        raise ebmflow.ConfigError(f"{owner}: {type(energy).__name__} declares no event_shape")
    shape = tuple(energy.event_shape)
    count = n_states(space, shape)
    max_states = ebmflow.check_positive_int(owner, "max_states", max_states)
    if count > max_states:
        raise ebmflow.ConfigError(
            f"{owner}: {type(energy).__name__} has {count} states ({space}, event {shape}), "
            f"more than max_states={max_states}; enumerate only small models (estimate log Z "
            "by sampling otherwise)"
        )
    param = next(iter(energy.parameters()), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else None
    states = all_states(space, shape, dtype=dtype, device=device)
    energies = torch.cat([energy(states[i : i + chunk]) for i in range(0, count, chunk)])
    neg = -energies.to(torch.float64)
    log_z = torch.logsumexp(neg, dim=0)
    log_probs = neg - log_z
    p = log_probs.exp()
    flat = states.reshape(count, -1).to(torch.float64)
    marginals = (p @ flat).reshape(shape)
    pair = flat.T @ (flat * p[:, None])
    return ExactMoments(float(log_z), marginals, pair, states, log_probs)
