"""The warm-up of gradient-based kernels, kept apart from the kernels it tunes (as BlackJAX
and Stan separate adaptation from their kernels). One routine serves ``mala``, ``hmc`` and
``nuts``.

A kernel's ``step`` reads its step size ε from the state (``state.extras["log_step_size"]``)
and, where it has one, its diagonal inverse mass matrix M⁻¹ (``state.extras["inverse_mass"]``,
shaped like one event; absent means M = I), and never changes either, so ``step`` is one
fixed Markov transition. :class:`Warmup` updates them *between* steps, from the step just
taken; a run applies it (:meth:`ebmflow.Sampler.step_and_adapt`) after its first
``n_steps`` steps only, and the chain is a valid MCMC chain from then on.

**Step size: dual averaging** (Nesterov 2009; Hoffman & Gelman 2014, "The No-U-Turn
Sampler", Algorithm 5; the constants are Stan's). With ᾱₘ the adaptation statistic of the
m-th adapted step averaged over the chains (the Metropolis acceptance probability; for NUTS
the mean of min(1, e^(H₀−H)) over the tree), δ the target, μ = log(10 ε₀), γ = 0.05,
t₀ = 10, κ = 0.75:

    H̄ₘ = (1 − 1/(m + t₀)) H̄ₘ₋₁ + (δ − ᾱₘ)/(m + t₀)
    log εₘ = μ − (√m / γ) H̄ₘ
    log ε̄ₘ = m^(−κ) log εₘ + (1 − m^(−κ)) log ε̄ₘ₋₁

and after the last warm-up step the kernel keeps ε = ε̄.

**Initial step size** (``search_step_size=True``, the default): before the first step,
ε is doubled or halved until the acceptance of one leapfrog step crosses ½ (Hoffman & Gelman
2014, Algorithm 4; :mod:`ebmflow.samplers.step_size_search`), so a badly chosen starting
ε costs a few evaluations rather than much of the warm-up.

**Mass matrix: Stan's windows** (``adapt_mass=True``). The warm-up is cut into a fast
initial buffer (75 steps), slow windows of doubling length (25, 50, 100, …; the last one
stretched to the terminal buffer) and a fast terminal buffer (50 steps); warm-ups shorter
than 150 steps use 15% / 75% / 10%, and those shorter than 20 adapt the step size only
(:func:`mass_windows`). During a slow window the positions of every chain are pooled into
a running (Welford) variance; at its end M⁻¹ becomes that variance, regularised toward
10⁻³ as Stan does, (n/(n + 5)) var + 10⁻³ · 5/(n + 5) with n the number of draws, and
dual averaging restarts with μ = log(10 ε) at the current ε.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ebmflow.energy import Energy
from ebmflow.errors import ConfigError
from ebmflow.samplers.base import SamplerState
from ebmflow.samplers.step_size_search import check_step_kind, find_step_size
from ebmflow.validation import check_positive_int

#: Stan's defaults for the fast initial buffer, the first slow window and the terminal buffer.
INIT_BUFFER, BASE_WINDOW, TERM_BUFFER = 75, 25, 50


def check_target_accept(owner: str, value: object, name: str = "target_accept") -> float:
    """Validate an adaptation target in (0, 1); a bad value raises
    :class:`~ebmflow.ConfigError` naming ``owner`` and the argument ``name``."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value < 1.0):
        raise ConfigError(f"{owner}: {name} must lie in (0, 1), got {value!r}")
    return float(value)


def mass_windows(n_steps: int) -> tuple[tuple[int, int], ...]:
    """Stan's slow windows of a warm-up of ``n_steps`` steps, as ``(start, end)`` step
    indices (end exclusive): doubling lengths from 25 after a 75-step buffer, the last one
    stretched to 50 steps before the end (15% / 75% / 10% for warm-ups under 150 steps;
    none under 20)."""
    if n_steps < 20:
        return ()
    init, base, term = INIT_BUFFER, BASE_WINDOW, TERM_BUFFER
    if init + base + term > n_steps:
        init, term = int(0.15 * n_steps), int(0.1 * n_steps)
        base = n_steps - init - term
    last = n_steps - term
    windows = []
    start, size = init, base
    while start < last:
        end = start + size
        if end + 2 * size > last:  # the next, doubled, window would not fit: stretch this one
            end = last
        windows.append((start, end))
        start, size = end, 2 * size
    return tuple(windows)


@dataclass(frozen=True)
class Warmup:
    """Warm-up of a kernel's step size toward ``target_accept`` and, with ``adapt_mass``, of
    its diagonal inverse mass matrix (module docstring).

    Attributes:
        n_steps: the warm-up length: steps 0 … ``n_steps`` − 1 of a run are adapted after.
        target_accept: δ, the mean acceptance statistic aimed for, in (0, 1).
        adapt_mass: also estimate M⁻¹ from windowed variances (kernels with a momentum).
        gamma, t0, kappa: the dual-averaging constants γ, t₀, κ.
        search_step_size: before the first step, double or halve the starting step size
            until one leapfrog step's acceptance crosses ½ (module docstring); needs the
            energy, given to :meth:`init`.
        step_kind: what the kernel's step size is: ``"leapfrog"`` (ε; HMC, NUTS) or
            ``"langevin"`` (η = ε²/2; MALA), for the search.
    """

    n_steps: int
    target_accept: float
    adapt_mass: bool = False
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75
    search_step_size: bool = True
    step_kind: str = "leapfrog"
    #: the slow windows of the mass matrix (:func:`mass_windows`; empty without adapt_mass)
    windows: tuple[tuple[int, int], ...] = field(init=False)
    _window_ends: frozenset[int] = field(init=False, repr=False, compare=False)
    _restarts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_positive_int("warm-up", "n_steps", self.n_steps, minimum=0)
        check_target_accept("warm-up", self.target_accept)
        if not isinstance(self.search_step_size, bool):
            raise ConfigError(
                f"warm-up: search_step_size must be True or False, got {self.search_step_size!r}"
            )
        check_step_kind("warm-up", self.step_kind)
        windows = mass_windows(self.n_steps) if self.adapt_mass else ()
        object.__setattr__(self, "windows", windows)
        # the step index after which each slow window ends, and where dual averaging restarts
        object.__setattr__(self, "_window_ends", frozenset(end - 1 for _, end in windows))
        object.__setattr__(self, "_restarts", (0, *(end for _, end in windows)))

    def init(
        self, state: SamplerState, step_size: float, energy: Energy | None = None
    ) -> SamplerState:
        """``state`` with log ε = log ``step_size`` and the warm-up's running sums in
        ``state.extras`` (float64, so that many small updates do not round away). With
        ``energy``, a warm-up (``n_steps`` > 0) and ``search_step_size``, ε is first moved
        to where one leapfrog step's acceptance crosses ½ (module docstring)."""
        if energy is not None and self.n_steps and self.search_step_size:
            step_size = find_step_size(energy, state, step_size, self.step_kind)
        log_eps = torch.tensor(math.log(step_size), dtype=torch.float64)
        extras = {**state.extras, "log_step_size": log_eps}
        if self.n_steps:
            extras |= _restart(log_eps)
        if self.windows:
            zeros = torch.zeros(state.x.shape[1:], dtype=torch.float64, device=state.x.device)
            extras |= {
                "inverse_mass": torch.ones_like(state.x[0]),
                "mass_count": torch.zeros((), dtype=torch.float64),
                "mass_mean": zeros,
                "mass_m2": zeros.clone(),
            }
        return state.replace(extras=extras)

    def update(self, state: SamplerState) -> SamplerState:
        """``state`` after one more warm-up update, from the step that produced it (step
        t = ``state.step`` − 1); unchanged once t ≥ ``n_steps``."""
        t = state.step - 1
        if t < 0 or t >= self.n_steps or state.accept_prob is None:
            return state
        extras = dict(state.extras)
        restart = max(r for r in self._restarts if r <= t)
        alpha = state.accept_prob.detach().to(torch.float64).clamp(max=1.0).mean()
        extras |= self._dual_averaging(extras, alpha.cpu(), t + 1 - restart)
        if any(start <= t < end for start, end in self.windows):
            extras |= _welford(extras, state.x.detach().flatten(1).to(torch.float64))
        if t in self._window_ends:
            n = extras["mass_count"]
            var = (extras["mass_m2"] / (n - 1)).reshape(state.x.shape[1:])
            var = (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))
            extras["inverse_mass"] = var.to(state.x.dtype)
            extras["mass_count"] = torch.zeros_like(n)
            extras["mass_mean"] = torch.zeros_like(extras["mass_mean"])
            extras["mass_m2"] = torch.zeros_like(extras["mass_m2"])
            extras |= _restart(extras["log_step_size"])
        if t == self.n_steps - 1:
            extras["log_step_size"] = extras["da_log_avg"]
        return state.replace(extras=extras)

    def _dual_averaging(self, extras: dict[str, Tensor], alpha: Tensor, m: int) -> dict:
        eta = 1.0 / (m + self.t0)
        h_bar = (1.0 - eta) * extras["da_h_bar"] + eta * (self.target_accept - alpha)
        log_eps = extras["da_mu"] - math.sqrt(m) / self.gamma * h_bar
        weight = m**-self.kappa
        log_avg = weight * log_eps + (1.0 - weight) * extras["da_log_avg"]
        return {"log_step_size": log_eps, "da_h_bar": h_bar, "da_log_avg": log_avg}

    @staticmethod
    def step_size(state: SamplerState) -> float:
        """The step size ε that ``state`` holds."""
        return math.exp(float(state.extras["log_step_size"]))

    @staticmethod
    def inverse_mass(state: SamplerState) -> Tensor | None:
        """The diagonal inverse mass matrix M⁻¹ that ``state`` holds (one event's shape),
        or ``None`` for M = I."""
        return state.extras.get("inverse_mass")


def _restart(log_eps: Tensor) -> dict[str, Tensor]:
    """Dual averaging from scratch around ε: μ = log(10 ε), H̄ = 0, log ε̄ = 0."""
    return {
        "da_mu": log_eps + math.log(10.0),
        "da_h_bar": torch.zeros((), dtype=torch.float64),
        "da_log_avg": torch.zeros((), dtype=torch.float64),
    }


def _welford(extras: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
    """The running count, mean and sum of squared deviations with a batch of draws
    ``x`` (B, D) added (Chan et al.'s pairwise combination of Welford sums)."""
    n_a, mean_a, m2_a = extras["mass_count"], extras["mass_mean"].flatten(), extras["mass_m2"]
    n_b = x.shape[0]
    mean_b = x.mean(dim=0)
    m2_b = ((x - mean_b) ** 2).sum(dim=0)
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = m2_a.flatten() + m2_b + delta**2 * (n_a * n_b / n)
    shape = extras["mass_mean"].shape
    return {"mass_count": n, "mass_mean": mean.reshape(shape), "mass_m2": m2.reshape(shape)}
