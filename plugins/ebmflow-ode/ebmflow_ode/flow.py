"""The probability-flow ODE of a noise-conditional model in VE coordinates, and its solver.

For VE diffusion dx = g(t) dW with noise level σ(t) (g² = dσ²/dt), the probability-flow ODE
(Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential
Equations") dx/dt = −½ g² ∇ₓ log p_σ(x) reads, with σ itself as time,

    dx/dσ = −σ s(x, σ),          s = ∇ₓ log p_σ = −∇ₓE(x, σ),

EDM's ODE with s(t) = 1, σ(t) = t (Karras et al. 2022). In log-σ time u = log σ, the form
the adaptive solver integrates (it keeps step sizes comparable across decades of σ),

    dx/du = −σ² s(x, σ).

Its solutions carry p_σ to p_σ' for every pair of levels, so x(σ_max) ~ N(0, σ_max² I)
integrated down to σ_min draws from p_σmin, and the change of variables along the path gives
the likelihood (:mod:`ebmflow_ode.likelihood`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import current_host

#: torchdiffeq methods with error control (``rtol``/``atol``, ``max_steps`` apply).
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: torchdiffeq methods on a fixed grid (``n_steps`` steps, uniform in log σ).
FIXED_METHODS = ("euler", "midpoint", "heun3", "rk4", "explicit_adams", "implicit_adams")


class ODEConvergenceError(ebmflow.EbmflowError, ArithmeticError):
    """The adaptive solver did not reach the end of the interval within its step budget,
    or its step size underflowed (a stiff or non-finite drift)."""


def check_solver(owner: str, solver: Any) -> str:
    if solver not in ADAPTIVE_METHODS + FIXED_METHODS:
        raise ebmflow.ConfigError(
            f"{owner}: solver must be a torchdiffeq solver, adaptive "
            f"{', '.join(map(repr, ADAPTIVE_METHODS))} or fixed-step "
            f"{', '.join(map(repr, FIXED_METHODS))}; got {solver!r}"
        )
    return solver


def check_tolerance(owner: str, name: str, value: Any) -> float:
    value = ebmflow.check_positive(owner, name, value)
    if not value < 1:
        raise ebmflow.ConfigError(f"{owner}: {name} must be a number in (0, 1), got {value!r}")
    return value


def check_sigma_level(owner: str, name: str, value: Any) -> float:
    """A noise level: a finite number > 0 (σ = 0 is the data itself, where the ODE's
    drift −σ s is not defined for a learned score)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ebmflow.ConfigError(
            f"{owner}: {name} must be a finite noise level > 0 (VE σ), got {value!r}"
        )
    return float(value)


def resolve_sigmas(owner: str, noise_schedule: Any, n_levels: int) -> list[float]:
    """Noise levels σ₀ > … > σ_L > 0 from what a sampler was given, the way
    ``annealed-langevin`` takes them: a registered schedule (name or config dict), an object
    with ``sigmas(n)``, or an explicit decreasing sequence."""
    if isinstance(noise_schedule, (str, Mapping)):
        noise_schedule = current_host().create("noise_schedule", noise_schedule)
    if hasattr(noise_schedule, "sigmas"):
        sigmas = noise_schedule.sigmas(n_levels)
    elif isinstance(noise_schedule, (Sequence, Tensor)):
        sigmas = noise_schedule
    else:
        raise ebmflow.ComponentArgumentError(
            f"{owner}: noise_schedule must be a registered schedule name, a config dict, a "
            f"schedule object or a sequence of sigmas; got {type(noise_schedule).__name__}"
        )
    given = sigmas
    try:
        levels = [float(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).flatten()]
    except (TypeError, ValueError, RuntimeError):
        levels = []
    if (
        len(levels) < 2
        or any(not math.isfinite(s) or s <= 0 for s in levels)
        or any(a <= b for a, b in zip(levels, levels[1:]))
    ):
        raise ebmflow.ConfigError(
            f"{owner}: noise_schedule must give at least two noise levels that are positive "
            f"and strictly decreasing, got {levels if levels else given}"
        )
    return levels


def drift(energy: ebmflow.Energy, x: Tensor, sigma: float | Tensor) -> Tensor:
    """dx/dσ = −σ s(x, σ) at one noise level (no graph kept)."""
    score = energy.energy_and_score(x, ebmflow.broadcast_sigma(sigma, x))[1]
    return -float(sigma) * score


def solve(
    owner: str,
    func: Callable[[Tensor, Any], Any],
    y0: Any,
    u0: float,
    u1: float,
    *,
    method: str,
    rtol: float,
    atol: float,
    max_steps: int,
    n_steps: int,
) -> Any:
    """y(u1) for dy/du = func(u, y) from y(u0) = y0 by ``torchdiffeq.odeint`` (``y`` a tensor
    or a tuple of tensors). Adaptive methods stop with :class:`ODEConvergenceError` after
    ``max_steps`` steps; fixed-step methods take ``n_steps`` equal steps in u."""
    from torchdiffeq import odeint  # type: ignore[import-untyped]

    device = (y0[0] if isinstance(y0, tuple) else y0).device
    times = torch.tensor([u0, u1], dtype=torch.float64, device=device)
    if method in FIXED_METHODS:
        grid = torch.linspace(u0, u1, n_steps + 1, dtype=torch.float64, device=device)
        options: dict[str, Any] = {"grid_constructor": lambda f, y, t: grid}
        return _last(odeint(func, y0, times, method=method, options=options))
    budget = {"evaluations": 0}
    # a drift that stalls the controller would spin for ever under ``python -O`` (which
    # strips torchdiffeq's own step check), so the evaluations are counted here as well
    limit = 16 * max_steps + 16

    def counted(u: Tensor, y: Any) -> Any:
        budget["evaluations"] += 1
        if budget["evaluations"] > limit:
            raise _not_converged(owner, max_steps, u0, u1, float(u))
        return func(u, y)

    options = {"max_num_steps": max_steps}
    try:
        out = odeint(counted, y0, times, method=method, rtol=rtol, atol=atol, options=options)
    except AssertionError as exc:  # torchdiffeq reports its step budget and underflow so
        text = str(exc)
        if "max_num_steps" in text:
            raise _not_converged(owner, max_steps, u0, u1, None) from exc
        if "underflow" in text:
            raise ODEConvergenceError(
                f"{owner}: the {method} step size underflowed between log σ = {u0:.4g} and "
                f"{u1:.4g} ({text}); the drift is stiff or not finite there"
            ) from exc
        raise
    return _last(out)


def _not_converged(
    owner: str, max_steps: int, u0: float, u1: float, at: float | None
) -> ODEConvergenceError:
    where = "" if at is None else f", stopped at σ = {math.exp(at):.4g}"
    return ODEConvergenceError(
        f"{owner}: the adaptive ODE solver did not converge within max_steps={max_steps} "
        f"steps from σ = {math.exp(u0):.4g} to σ = {math.exp(u1):.4g}{where}; raise "
        "max_steps, loosen rtol/atol, or use a fixed-step method"
    )


def _last(out: Any) -> Any:
    return tuple(part[-1] for part in out) if isinstance(out, tuple) else out[-1]
