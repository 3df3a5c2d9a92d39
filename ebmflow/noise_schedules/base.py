"""The NoiseSchedule interface and the VP ↔ VE conversions every schedule shares.

σ is always a noise level in *variance-exploding* (VE) coordinates: a noisy sample is
x + σ z, z ~ N(0, I). A *variance-preserving* (VP, DDPM) marginal x_vp = √ᾱ x + √(1 − ᾱ) z
is the same thing after rescaling, x_ve = x_vp / √ᾱ, with

    σ = √((1 − ᾱ) / ᾱ),        ᾱ = 1 / (1 + σ²),

as in k-diffusion (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", and Crowson's k-diffusion ``external.py``).
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
from torch import Tensor

from ebmflow.config import Configurable
from ebmflow.errors import ConfigError
from ebmflow.validation import check_positive, check_positive_int

Scalar = TypeVar("Scalar", float, Tensor)


def as_float64(value: Any) -> Tensor:
    """``value`` as a tensor; Python numbers become float64, tensors keep a floating dtype."""
    if isinstance(value, Tensor):
        return value if torch.is_floating_point(value) else value.to(torch.float64)
    return torch.as_tensor(value, dtype=torch.float64)


def like_input(result: Tensor, value: Any) -> Any:
    """Return a Python float for a Python-number input, else the tensor."""
    return result if isinstance(value, Tensor) else float(result)


def _check_number(
    function: str, name: str, value: Any, low: float, high: float, accepted: str
) -> None:
    """Validate a Python-number argument of a conversion function (tensors are not checked,
    to avoid a device synchronisation; out-of-domain entries give nan or inf)."""
    if isinstance(value, Tensor):
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (low <= value <= high):
        raise ConfigError(f"{function}: {name} must be {accepted}, got {value!r}")


def sigma_from_alpha_bar(alpha_bar: Scalar) -> Scalar:
    """VE noise level of a VP marginal: σ = √((1 − ᾱ) / ᾱ).

    Accepts a Python number in (0, 1] (returns a float) or a tensor (returns a tensor of
    the same floating dtype; ᾱ = 0 gives inf). In float64 the round trip
    σ → ᾱ → σ is exact to about 1e-16 / σ² relative, i.e. better than 1e-10 for σ ≥ 1e-3.
    """
    _check_number("sigma_from_alpha_bar", "alpha_bar", alpha_bar, 0.0, 1.0, "a number in (0, 1]")
    if not isinstance(alpha_bar, Tensor) and alpha_bar == 0:
        raise ConfigError(
            "sigma_from_alpha_bar: alpha_bar must be a number in (0, 1], got 0 "
            "(σ would be infinite)"
        )
    a = as_float64(alpha_bar)
    return like_input(torch.sqrt((1.0 - a) / a), alpha_bar)


def alpha_bar_from_sigma(sigma: Scalar) -> Scalar:
    """VP signal level of a VE noise level: ᾱ = 1 / (1 + σ²).

    Accepts a Python number ≥ 0 (returns a float) or a tensor (returns a tensor of the
    same floating dtype).
    """
    _check_number("alpha_bar_from_sigma", "sigma", sigma, 0.0, math.inf, "a number ≥ 0")
    s = as_float64(sigma)
    return like_input(1.0 / (1.0 + s * s), sigma)


def uniform_draws(
    batch_size: int, generator: torch.Generator | None, device: torch.device | str | None
) -> Tensor:
    """U[0, 1) float64 draws on the generator's device, moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch_size, generator=generator, dtype=torch.float64, device=gen_device)
    return u if device is None else u.to(device)


def normal_draws(
    batch_size: int, generator: torch.Generator | None, device: torch.device | str | None
) -> Tensor:
    """N(0, 1) float64 draws on the generator's device, moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    z = torch.randn(batch_size, generator=generator, dtype=torch.float64, device=gen_device)
    return z if device is None else z.to(device)


class NoiseSchedule(Configurable):
    """Base class of noise schedules: a range [σ_min, σ_max] of VE noise levels.

    Subclasses set the floats :attr:`sigma_min` < :attr:`sigma_max` in ``__init__`` and
    implement :meth:`_sigmas` (the discrete levels used by samplers such as
    annealed Langevin) and :meth:`_sample` (the continuous training distribution used by
    objectives such as multiscale DSM).

    Conventions shared by every schedule:

    - ``sigmas(n)`` is a float64 tensor of shape ``(n,)``, strictly decreasing from
      ``sigma_max`` to ``sigma_min``, both included. ``n = 1`` gives ``[sigma_max]`` (the
      first level of any longer schedule, as ``linspace(0, 1, 1) = [0]`` does in
      k-diffusion).
    - ``sample(batch_size, generator)`` draws σ ∈ [σ_min, σ_max] from the schedule's
      natural training distribution. Randomness comes only from ``generator``; with
      ``generator=None`` torch's default generator is used, exactly as ``torch.rand`` does.
      Draws happen in float64 on the generator's device and are then cast to ``dtype`` and
      moved to ``device``, so a seeded CPU generator gives the same σ on every device.
    """

    #: registered name, used in error messages
    name: str = "noise schedule"
    sigma_min: float
    sigma_max: float

    def sigmas(self, n: int, *, device: torch.device | str | None = None) -> Tensor:
        """The ``n`` noise levels σ_0 = σ_max > … > σ_{n−1} = σ_min, float64, shape ``(n,)``."""
        n = check_positive_int(f"{self.name} schedule", "n", n)
        if n == 1:
            sigmas = torch.tensor([self.sigma_max], dtype=torch.float64)
        else:
            sigmas = self._sigmas(n)
            sigmas[0], sigmas[-1] = self.sigma_max, self.sigma_min  # exact endpoints
        return sigmas if device is None else sigmas.to(device)

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        *,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """``batch_size`` training noise levels in [σ_min, σ_max], shape ``(batch_size,)``.

        ``dtype`` defaults to torch's default floating dtype (float32 unless changed).
        """
        batch_size = check_positive_int(
            f"{self.name} schedule", "batch_size", batch_size, minimum=0
        )
        sigma = self._sample(batch_size, generator, device)
        sigma = sigma.clamp(self.sigma_min, self.sigma_max)
        return sigma.to(torch.get_default_dtype() if dtype is None else dtype)

    def _sigmas(self, n: int) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement _sigmas(n)")

    def _sample(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device | str | None
    ) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement _sample(...)")


def check_sigma_range(owner: str, sigma_min: Any, sigma_max: Any) -> tuple[float, float]:
    """Validate 0 < sigma_min < sigma_max (finite numbers) for schedule ``owner``."""
    sigma_min = check_positive(owner, "sigma_min", sigma_min)
    sigma_max = check_positive(owner, "sigma_max", sigma_max)
    if not sigma_min < sigma_max:
        raise ConfigError(
            f"{owner}: sigma_min must be smaller than sigma_max, got sigma_min={sigma_min!r}, "
            f"sigma_max={sigma_max!r}"
        )
    return sigma_min, sigma_max
