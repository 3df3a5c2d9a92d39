"""The inverse-temperature ladder of parallel tempering: the default geometric ladder, the
check of a given one, and its warm-up toward equal swap rates.

Adaptation (Syed, Bouchard-Côté, Deligiannidis & Doucet 2021, "Non-reversible parallel
tempering", Algorithm 4 in spirit): the warm-up of ``adapt_steps`` steps is cut into rounds
of doubling length (:func:`adaptation_round_ends`); after each, :func:`equalised_ladder`
moves the inner β_k toward equal rejection rates between neighbours.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

import ebmflow

#: shortest adaptation round, in steps (every pair is proposed on every other step).
MIN_ROUND = 8
#: floor of a pair's rejection rate in the ladder update, so that Λ increases strictly.
MIN_REJECTION = 1e-3


def geometric_ladder(n_replicas: int, beta_min: float) -> Tensor:
    """β_k = β_min^(k / (R − 1)), k = 0 … R − 1: from 1 down to ``beta_min``, float64."""
    k = torch.arange(n_replicas, dtype=torch.float64)
    betas = torch.exp(k / (n_replicas - 1) * math.log(beta_min))
    betas[0], betas[-1] = 1.0, beta_min
    return betas


def check_ladder(owner: str, n_replicas: Any, beta_min: Any, betas: Any) -> Tensor:
    """The ladder a sampler was given: ``betas`` checked (1 first, strictly decreasing, > 0)
    and agreeing with ``n_replicas`` and ``beta_min`` where those are given too, or else the
    geometric ladder of ``n_replicas`` (default 8) down to ``beta_min`` (default 0.05);
    float64. Errors name ``owner``, the value and what is accepted."""
    if n_replicas is not None:
        n_replicas = ebmflow.check_positive_int(owner, "n_replicas", n_replicas, minimum=2)
    if beta_min is not None:
        ok = (
            isinstance(beta_min, (int, float))
            and not isinstance(beta_min, bool)
            and 0.0 < beta_min < 1.0
        )
        if not ok:
            raise ebmflow.ConfigError(
                f"{owner}: beta_min must be a number in (0, 1) (the hottest inverse "
                f"temperature), got {beta_min!r}"
            )
        beta_min = float(beta_min)
    if betas is None:
        return geometric_ladder(
            8 if n_replicas is None else n_replicas, 0.05 if beta_min is None else beta_min
        )
    accepted = (
        "a sequence of at least 2 inverse temperatures starting at 1 and strictly "
        "decreasing to a value > 0, e.g. [1.0, 0.5, 0.25]"
    )
    try:
        ladder = torch.as_tensor(betas, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        ladder = None
    if (
        isinstance(betas, (str, bytes))
        or ladder is None
        or ladder.ndim != 1
        or ladder.numel() < 2
        or not bool(torch.isfinite(ladder).all())
        or float(ladder[0]) != 1.0
        or not bool((ladder[1:] < ladder[:-1]).all())
        or float(ladder[-1]) <= 0.0
    ):
        raise ebmflow.ConfigError(f"{owner}: betas must be {accepted}; got {betas!r}")
    if n_replicas is not None and n_replicas != ladder.numel():
        raise ebmflow.ConfigError(
            f"{owner}: n_replicas={n_replicas} but betas has {ladder.numel()} entries; give "
            "one of them, or make them agree"
        )
    if beta_min is not None and not math.isclose(beta_min, float(ladder[-1])):
        raise ebmflow.ConfigError(
            f"{owner}: beta_min={beta_min} but betas ends at {float(ladder[-1])}; give one "
            "of them, or make them agree"
        )
    return ladder.clone()


def adaptation_round_ends(adapt_steps: int) -> tuple[int, ...]:
    """The steps after which the ladder adapts: ``adapt_steps`` and its halvings down to
    :data:`MIN_ROUND` (rounds of doubling length); none for 0."""
    ends, t = set(), adapt_steps
    while t >= MIN_ROUND:
        ends.add(t)
        t //= 2
    if adapt_steps:
        ends.add(adapt_steps)
    return tuple(sorted(ends))


def stats_dtype(device: torch.device) -> torch.dtype:
    """float64 for the ladder and the statistics, where the device has it."""
    return torch.float32 if device.type == "mps" else torch.float64


def equalised_ladder(betas: Tensor, rejection: Tensor) -> Tensor:
    """The ladder with equal shares of the cumulative barrier Λ between neighbours.

    Λ_k = Σ_{j<k} max(r_j, MIN_REJECTION) at u_k = −log β_k, linear in between; the new
    u_k = Λ⁻¹(k Λ_{R−1} / (R − 1)). β_0 = 1 and β_{R−1} stay where they are.
    """
    n = betas.shape[0]
    u = -betas.log()
    lam = torch.cat([rejection.new_zeros(1), rejection.clamp(min=MIN_REJECTION).cumsum(0)])
    target = torch.linspace(0.0, float(lam[-1]), n, dtype=lam.dtype, device=lam.device)
    idx = torch.searchsorted(lam, target).clamp(1, n - 1)
    w = (target - lam[idx - 1]) / (lam[idx] - lam[idx - 1])
    new = torch.exp(-(u[idx - 1] + w * (u[idx] - u[idx - 1])))
    new[0], new[-1] = 1.0, betas[-1]
    return new
