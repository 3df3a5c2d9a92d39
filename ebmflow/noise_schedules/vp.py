"""Variance-preserving (DDPM) noise schedules in continuous time, mapped to VE noise levels.

A VP schedule gives the signal level ᾱ(t) of x_t = √ᾱ(t) x_0 + √(1 − ᾱ(t)) z for
t ∈ [0, 1]. In ebmflow's VE coordinates (x_t / √ᾱ = x_0 + σ z) that is the noise level

    σ(t) = √((1 − ᾱ(t)) / ᾱ(t)),

which increases with t. ``sigmas(n)`` takes n times evenly spaced from t_max down to t_eps
(as DDPM's equally spaced timesteps) and maps them to σ; ``sample`` draws t ~ U(t_eps, t_max)
(Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential
Equations") and maps it to σ.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmflow.errors import ConfigError
from ebmflow.noise_schedules.base import (
    NoiseSchedule,
    Scalar,
    as_float64,
    like_input,
    uniform_draws,
)
from ebmflow.validation import check_positive


class _VPSchedule(NoiseSchedule):
    """Shared part of the VP schedules: t ∈ [t_eps, t_max] ↔ σ ∈ [σ_min, σ_max].

    Subclasses set ``t_eps``, ``t_max`` and implement ``_log_alpha_bar``, ``_sigma`` and
    ``_t`` on float64 tensors.
    """

    t_eps: float
    t_max: float

    def alpha_bar(self, t: Scalar) -> Scalar:
        """ᾱ(t) for a Python number (returns a float) or a tensor (same floating dtype)."""
        return like_input(self._log_alpha_bar(as_float64(t)).exp(), t)

    def t_to_sigma(self, t: Scalar) -> Scalar:
        """σ(t) = √((1 − ᾱ(t)) / ᾱ(t)), for a Python number or a tensor."""
        return like_input(self._sigma(as_float64(t)), t)

    def sigma_to_t(self, sigma: Scalar) -> Scalar:
        """The time t with σ(t) = σ (closed-form inverse of :meth:`t_to_sigma`)."""
        return like_input(self._t(as_float64(sigma)), sigma)

    def _finish_init(self, owner: str) -> None:
        self.sigma_min = float(self._sigma(torch.tensor(self.t_eps, dtype=torch.float64)))
        self.sigma_max = float(self._sigma(torch.tensor(self.t_max, dtype=torch.float64)))
        if not (0.0 < self.sigma_min < self.sigma_max < math.inf):
            raise ConfigError(
                f"{owner}: these arguments give σ_min={self.sigma_min!r}, "
                f"σ_max={self.sigma_max!r}; a schedule needs 0 < σ_min < σ_max < inf"
            )

    def _sigmas(self, n: int) -> Tensor:
        t = torch.linspace(self.t_max, self.t_eps, n, dtype=torch.float64)
        return self._sigma(t)

    def _sample(self, batch_size, generator, device) -> Tensor:
        u = uniform_draws(batch_size, generator, device)
        return self._sigma(self.t_eps + u * (self.t_max - self.t_eps))

    def _log_alpha_bar(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sigma(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t(self, sigma: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _check_t_eps(owner: str, t_eps: float) -> float:
    t_eps = check_positive(owner, "t_eps", t_eps)
    if not t_eps < 1.0:
        raise ConfigError(f"{owner}: t_eps must be a number in (0, 1), got {t_eps!r}")
    return t_eps


class VPLinearSchedule(_VPSchedule):
    """DDPM's linear β in continuous time: the VP-SDE of Song et al. 2021.

    β(t) = β_min + t (β_max − β_min), so

        log ᾱ(t) = −½ t² (β_max − β_min) − t β_min,
        σ(t)     = √(expm1(½ t² (β_max − β_min) + t β_min)),

    and, with L = log(1 + σ²) = −log ᾱ, the inverse is the positive root of
    ½ (β_max − β_min) t² + β_min t − L = 0, written without cancellation as

        t(σ) = 2 L / (β_min + √(β_min² + 2 (β_max − β_min) L)).

    Times run over [t_eps, 1]: σ_min = σ(t_eps), σ_max = σ(1) (≈ 0.0105 and ≈ 152.2 with
    the defaults, which are DDPM's β₁ = 1e-4, β_T = 0.02 times T = 1000).

    Args:
        beta_min: β_min ≥ 0.
        beta_max: β_max ≥ beta_min, > 0.
        t_eps: smallest time, in (0, 1); Song et al. sample from t_eps = 1e-3.
    """

    name = "vp-linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_eps: float = 1e-3) -> None:
        owner = "vp-linear schedule"
        self.beta_min = check_positive(owner, "beta_min", beta_min, allow_zero=True)
        self.beta_max = check_positive(owner, "beta_max", beta_max)
        if self.beta_max < self.beta_min:
            raise ConfigError(
                f"{owner}: beta_max must be ≥ beta_min, got beta_min={beta_min!r}, "
                f"beta_max={beta_max!r}"
            )
        self.t_eps = _check_t_eps(owner, t_eps)
        self.t_max = 1.0
        self._finish_init(owner)

    def _neg_log_alpha_bar(self, t: Tensor) -> Tensor:
        return 0.5 * t * t * (self.beta_max - self.beta_min) + t * self.beta_min

    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        return -self._neg_log_alpha_bar(t)

    def _sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.expm1(self._neg_log_alpha_bar(t)))

    def _t(self, sigma: Tensor) -> Tensor:
        log_one_plus = torch.log1p(sigma * sigma)  # L = −log ᾱ
        delta = self.beta_max - self.beta_min
        root = torch.sqrt(self.beta_min**2 + 2.0 * delta * log_one_plus)
        return 2.0 * log_one_plus / (self.beta_min + root)


class VPCosineSchedule(_VPSchedule):
    """The cosine schedule of Nichol & Dhariwal 2021 ("Improved Denoising Diffusion
    Probabilistic Models") in continuous time.

    With θ(t) = (t + s) / (1 + s) · π/2 and θ₀ = θ(0):

        ᾱ(t) = f(t) / f(0),   f(t) = cos² θ(t),
        σ(t) = √(sin(θ − θ₀) sin(θ + θ₀)) / cos θ        (= √(f(0)/f(t) − 1), no cancellation),

    and the closed-form inverse (tan θ = √(σ² + sin² θ₀) / cos θ₀, rewritten so that small σ
    loses no digits): with A = √(σ² + sin² θ₀), S = sin θ₀, C = cos θ₀,

        θ − θ₀ = atan2(σ² C, (A + S)(C² + A S)),   t = (θ − θ₀) · 2 (1 + s) / π.

    ᾱ(1) = 0 (σ = ∞), so times stop at t_max < 1, where the continuous-time β(t) = −d log ᾱ/dt
    = π/(1 + s) · tan θ(t) reaches ``beta_max``:

        t_max = atan(β_max (1 + s) / π) · 2 (1 + s) / π − s.

    β_max = 999 is Nichol & Dhariwal's clip β_t ≤ 0.999 for T = 1000 steps (β(t) ≈ T β_t),
    and the same cap as DPM-Solver's cosine schedule (Lu et al. 2022); with s = 0.008 it
    gives t_max ≈ 0.998 and σ_max ≈ 320.5; σ_min = σ(t_eps) ≈ 0.0064.

    Args:
        s: the offset s > 0 (0.008 in the paper) that keeps β small near t = 0.
        t_eps: smallest time, in (0, t_max).
        beta_max: cap on β(t) that sets t_max; must exceed β(t_eps).
    """

    name = "vp-cosine"

    def __init__(self, s: float = 0.008, t_eps: float = 1e-3, beta_max: float = 999.0) -> None:
        owner = "vp-cosine schedule"
        self.s = check_positive(owner, "s", s)
        self.t_eps = _check_t_eps(owner, t_eps)
        self.beta_max = check_positive(owner, "beta_max", beta_max)
        self._theta0 = self.s / (1.0 + self.s) * math.pi / 2
        self.t_max = (
            math.atan(self.beta_max * (1.0 + self.s) / math.pi) * 2.0 * (1.0 + self.s) / math.pi
            - self.s
        )
        if not self.t_max > self.t_eps:
            beta_at_eps = (
                math.pi
                / (1.0 + self.s)
                * math.tan((self.t_eps + self.s) / (1.0 + self.s) * math.pi / 2)
            )
            raise ConfigError(
                f"{owner}: beta_max={beta_max!r} is reached before t_eps={t_eps!r}; "
                f"beta_max must exceed β(t_eps) = {beta_at_eps:.6g}"
            )
        self._finish_init(owner)

    def _theta(self, t: Tensor) -> Tensor:
        return (t + self.s) / (1.0 + self.s) * (math.pi / 2)

    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        return 2.0 * (torch.log(torch.cos(self._theta(t))) - math.log(math.cos(self._theta0)))

    def _sigma(self, t: Tensor) -> Tensor:
        theta = self._theta(t)
        d_theta = t / (1.0 + self.s) * (math.pi / 2)  # θ − θ₀, computed without cancellation
        return torch.sqrt(torch.sin(d_theta) * torch.sin(theta + self._theta0)) / torch.cos(theta)

    def _t(self, sigma: Tensor) -> Tensor:
        sin0, cos0 = math.sin(self._theta0), math.cos(self._theta0)
        a = torch.sqrt(sigma * sigma + sin0 * sin0)
        d_theta = torch.atan2(sigma * sigma * cos0, (a + sin0) * (cos0 * cos0 + a * sin0))
        return d_theta * 2.0 * (1.0 + self.s) / math.pi
