"""Noise tables of diffusion schedulers, and the conversions between a model's output and
the quantities ebmflow works with.

Coordinates. A diffusers model sees x_t = a_t x₀ + v_t ε, with (signal, noise) scales

    VP (DDPM):  a_t = √ᾱ_t,  v_t = √(1 − ᾱ_t)
    VE (SMLD):  a_t = 1,     v_t = σ_t

and ebmflow's variance-exploding coordinates are x_ve = x_t / a_t = x₀ + σ ε with

    σ_t = v_t / a_t = √((1 − ᾱ_t) / ᾱ_t)   (VP),   σ_t   (VE),

as k-diffusion maps them. The score there is s(x_ve, σ) = ∇ log p_σ(x_ve) = −ε̂ / σ, with ε̂
the noise the model predicts. Every prediction type is turned into the pair (x̂₀, ε̂):

    epsilon:       ε̂ = f,                 x̂₀ = (x_t − v ε̂) / a
    sample (x₀):   x̂₀ = f,                ε̂ = (x_t − a x̂₀) / v
    v_prediction:  x̂₀ = a x_t − v f,      ε̂ = a f + v x_t           (VP only: a² + v² = 1)
    score (VE):    ε̂ = −σ f,              x̂₀ = x_t + σ² f          (ScoreSdeVe's models)

The VP tables (β, ᾱ) are computed exactly as ``DDPMScheduler`` computes them, in float32, so
that an EBMScheduler and a DDPMScheduler with one config hold bit-identical tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ebmflow import ConfigError

#: ``beta_schedule`` values of DDPMScheduler, all supported.
VP_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace")
#: prediction types per schedule kind.
PREDICTION_TYPES = {
    "vp": ("epsilon", "v_prediction", "sample"),
    "ve": ("score", "epsilon", "sample"),
}
#: diffusers scheduler classes whose config describes a discrete DDPM (VP) training schedule.
VP_SCHEDULER_CLASSES = (
    "DDPMScheduler",
    "DDIMScheduler",
    "PNDMScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "LMSDiscreteScheduler",
    "HeunDiscreteScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
)
#: diffusers scheduler classes with a continuous variance-exploding schedule.
VE_SCHEDULER_CLASSES = ("ScoreSdeVeScheduler",)
#: σ → timestep values within this distance of an integer are snapped to it: float32 rounding
#: of σ (relative 6e-8) moves a DDPM timestep by at most ~1e-5 (log σ changes by ≥ 0.005 per
#: step for β ≤ 0.02), so σ_t rounded to float32 still maps to t (see sigma_to_timestep).
SNAP = 1e-4
#: the most training timesteps a table may have (diffusion models use 1000 to 4000); a bound
#: so that a config cannot make the table allocate without limit.
MAX_TIMESTEPS = 1_000_000


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def _finite(name: str, value: Any, *, unit: bool = False) -> float:
    """A finite number (``unit``: in (0, 1), as a β is) from a config."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (unit and not 0 < value < 1):
        accepted = "a finite number in (0, 1)" if unit else "a finite number"
        raise ConfigError(f"{name} must be {accepted}, got {value!r}")
    return float(value)


def _trained_betas(value: Any) -> list[float]:
    """The betas of a list, tuple or 1-D array (NumPy or torch) of numbers."""
    plain = value.tolist() if hasattr(value, "tolist") else value
    numbers = list(plain) if isinstance(plain, (list, tuple)) else None
    if (
        not numbers
        or len(numbers) > MAX_TIMESTEPS
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in numbers)
    ):
        raise ConfigError(
            f"trained_betas must be a list of 1 to {MAX_TIMESTEPS} numbers in (0, 1), got "
            f"{_short(value)}"
        )
    return [float(b) for b in numbers]


def _short(value: Any) -> str:
    """``repr`` of a config value, cut so that a long list cannot flood an error line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_vp_table(betas: Tensor, where: str, zero_terminal_snr: bool = False) -> Tensor:
    """``betas`` if every β lies in (0, 1) and every ᾱ_t = Π(1 − β) in (0, 1]; otherwise a
    :class:`~ebmflow.ConfigError` naming the first bad value.

    Outside those ranges σ_t = √((1 − ᾱ_t)/ᾱ_t) is NaN, 0 or ∞ at some training level, and
    a model converted from such a table would score NaN there. The one exception is
    zero-terminal-SNR rescaling, which sets the last β to exactly 1 on purpose (ᾱ_T = 0,
    σ_T = ∞), as ``DDPMScheduler`` does.
    """
    accepted = "the betas must lie in (0, 1) and their cumulative product ᾱ (alphas_cumprod) "
    accepted += "in (0, 1]"
    inner = betas[:-1] if zero_terminal_snr and betas.numel() and betas[-1] == 1 else betas
    bad = ~(torch.isfinite(inner) & (inner > 0) & (inner < 1))
    if bad.any():
        t = int(bad.nonzero()[0, 0])
        raise ConfigError(
            f"{where} gives beta_{t} = {float(inner[t]):.6g} ({int(bad.sum())} of "
            f"{betas.numel()} betas out of range): {accepted}"
        )
    alphas_cumprod = torch.cumprod(1.0 - inner, dim=0)
    if inner.numel() and not alphas_cumprod[-1] > 0:
        t = int((alphas_cumprod <= 0).nonzero()[0, 0])
        raise ConfigError(
            f"{where} gives alphas_cumprod_{t} = 0 (float32 underflow: the noise level σ_{t} "
            f"would be infinite): {accepted}"
        )
    return betas


def vp_betas(
    num_train_timesteps: int,
    beta_start: float,
    beta_end: float,
    beta_schedule: str,
    trained_betas: Any = None,
    rescale_betas_zero_snr: bool = False,
) -> Tensor:
    """β_1 … β_T (float32) as ``DDPMScheduler`` builds them, for every schedule it knows.

    The arguments are checked first (they come from JSON configs) and the table after (see
    :func:`check_vp_table`): a bad value raises :class:`~ebmflow.ConfigError` naming it.
    """
    from diffusers.schedulers.scheduling_ddpm import (
        betas_for_alpha_bar,
        rescale_zero_terminal_snr,
    )

    if not isinstance(rescale_betas_zero_snr, bool):
        raise ConfigError(
            f"rescale_betas_zero_snr must be True or False, got {rescale_betas_zero_snr!r}"
        )
    if trained_betas is not None:
        betas = torch.tensor(_trained_betas(trained_betas), dtype=torch.float32)
        where = "trained_betas"
    else:
        num_train_timesteps = _integer("num_train_timesteps", num_train_timesteps, 1, MAX_TIMESTEPS)
        if beta_schedule in ("linear", "scaled_linear", "sigmoid"):  # the others ignore them
            beta_start = _finite("beta_start", beta_start, unit=True)
            beta_end = _finite("beta_end", beta_end, unit=True)
        betas = _scheduled_betas(
            num_train_timesteps, beta_start, beta_end, beta_schedule, betas_for_alpha_bar
        )
        where = f"beta_schedule {beta_schedule!r} with num_train_timesteps = {num_train_timesteps}"
    if rescale_betas_zero_snr:
        betas = rescale_zero_terminal_snr(betas)
    return check_vp_table(betas, where, zero_terminal_snr=rescale_betas_zero_snr)


def _scheduled_betas(
    num_train_timesteps, beta_start, beta_end, beta_schedule, betas_for_alpha_bar
) -> Tensor:
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        betas = (
            torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32)
            ** 2
        )
    elif beta_schedule == "squaredcos_cap_v2":
        betas = betas_for_alpha_bar(num_train_timesteps)
    elif beta_schedule == "laplace":
        betas = betas_for_alpha_bar(num_train_timesteps, alpha_transform_type="laplace")
    elif beta_schedule == "sigmoid":
        betas = (
            torch.sigmoid(torch.linspace(-6, 6, num_train_timesteps)) * (beta_end - beta_start)
            + beta_start
        )
    else:
        raise ConfigError(
            f"unsupported beta_schedule {beta_schedule!r}; supported: "
            f"{', '.join(VP_BETA_SCHEDULES)} (or trained_betas)"
        )
    return betas


def ve_sigmas(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """n noise levels geometric from σ_max down to σ_min (float64)."""
    if n == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    return torch.exp(
        torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64)
    )


def alphas_cumprod_at(alphas_cumprod: Tensor, timesteps: Tensor, like: Tensor) -> Tensor:
    """ᾱ_t at each of ``timesteps``, on ``like``'s device and dtype and shaped (B, 1, …) to
    broadcast over it (as DDPMScheduler's ``add_noise`` indexes its table)."""
    view = (-1,) + (1,) * (like.ndim - 1)
    ac = alphas_cumprod.to(device=like.device, dtype=like.dtype)
    return ac[timesteps.to(like.device)].flatten().reshape(view)


def split_output(
    model_output: Tensor,
    sample: Tensor,
    a: float | Tensor,
    v: float | Tensor,
    prediction_type: str,
) -> tuple[Tensor, Tensor]:
    """(x̂₀, ε̂) from a model output at a level with signal scale ``a`` and noise scale
    ``v`` (see the module docstring)."""
    if prediction_type == "epsilon":
        return (sample - v * model_output) / a, model_output
    if prediction_type == "sample":
        return model_output, (sample - a * model_output) / v
    if prediction_type == "v_prediction":
        return a * sample - v * model_output, a * model_output + v * sample
    if prediction_type == "score":
        eps = (-v / a) * model_output
        return (sample + (v * v / a) * model_output) / a, eps
    raise ConfigError(f"unknown prediction_type {prediction_type!r}")


def score_from_output(
    model_output: Tensor,
    sample: Tensor,
    a: float | Tensor,
    v: float | Tensor,
    prediction_type: str,
) -> Tensor:
    """The VE score s(x_ve, σ) = −ε̂ / σ, σ = v / a, of a raw model output (no clipping)."""
    if prediction_type == "score":
        return model_output
    if prediction_type == "epsilon":
        return (-a / v) * model_output
    if prediction_type == "sample":  # s = (x̂₀ − x_ve) / σ² = (a x̂₀ − x_t) a / v²
        return (a * model_output - sample) * (a / (v * v))
    _, eps = split_output(model_output, sample, a, v, prediction_type)
    return (-a / v) * eps


def output_from_score(
    score: Tensor,
    sample: Tensor,
    a: float | Tensor,
    v: float | Tensor,
    prediction_type: str,
) -> Tensor:
    """The model output of ``prediction_type`` that a VE score ``score`` at x_t = ``sample``
    corresponds to (the inverse of :func:`score_from_output`)."""
    if prediction_type == "score":
        return score
    eps = (-v / a) * score
    if prediction_type == "epsilon":
        return eps
    x0 = (sample - v * eps) / a
    if prediction_type == "sample":
        return x0
    if prediction_type == "v_prediction":
        return a * eps - v * x0
    raise ConfigError(f"unknown prediction_type {prediction_type!r}")


def sigma_to_timestep(sigma: Tensor, log_sigmas: Tensor, *, integer: bool = False) -> Tensor:
    """Continuous timestep of VE noise levels ``sigma`` on a table of log σ_t (increasing in t):
    linear interpolation in log σ, clamped to [0, T − 1]; a level within ``SNAP`` of an
    integer timestep is that integer (so σ_t rounded to float32 still gives t), and
    ``integer=True`` rounds (for learned, table-lookup time embeddings)."""
    log_sigma = sigma.to(torch.float64).log()
    table = log_sigmas.to(log_sigma.device)
    n = table.shape[0]
    hi = torch.searchsorted(table, log_sigma).clamp(1, n - 1)
    lo = hi - 1
    width = table[hi] - table[lo]
    frac = torch.where(width > 0, (log_sigma - table[lo]) / width, torch.zeros_like(width))
    t = (lo.to(torch.float64) + frac).clamp(0, n - 1)
    nearest = t.round()
    if integer:
        return nearest
    return torch.where((t - nearest).abs() < SNAP, nearest, t)


class NoiseTable:
    """The training noise levels of one diffusion model, read from its scheduler config.

    Attributes:
        kind: ``"vp"`` or ``"ve"``.
        prediction_type: what the model outputs (see :data:`PREDICTION_TYPES`).
        learned_variance: the model outputs 2C channels, the second half a variance.
        alphas_cumprod: ᾱ_t, float32 (VP only).
        log_sigmas: log σ_t per training timestep, float64 (VP only).
        sigma_min, sigma_max: the VE range.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        config = dict(config)
        class_name = config.get("_class_name")
        kind = config.get("schedule")
        if kind is None:
            if class_name in VE_SCHEDULER_CLASSES:
                kind = "ve"
            elif (
                class_name in VP_SCHEDULER_CLASSES
                or class_name == "EBMScheduler"
                or (class_name is None and "beta_schedule" in config)
            ):
                kind = "vp"
            else:
                raise ConfigError(
                    f"scheduler class {class_name!r} is not supported; supported: "
                    f"{', '.join(VP_SCHEDULER_CLASSES + VE_SCHEDULER_CLASSES)}, EBMScheduler"
                )
        if kind not in ("vp", "ve"):  # a tuple, not the dict: a list value is unhashable
            raise ConfigError(f"schedule must be 'vp' or 've', got {kind!r}")
        self.kind = kind
        default_prediction = "epsilon" if kind == "vp" else "score"
        self.prediction_type = config.get("prediction_type") or default_prediction
        if self.prediction_type not in PREDICTION_TYPES[kind]:
            raise ConfigError(
                f"prediction_type {self.prediction_type!r} is not supported for a {kind.upper()} "
                f"schedule; supported: {', '.join(PREDICTION_TYPES[kind])}"
            )
        self.learned_variance = config.get("variance_type") in ("learned", "learned_range")
        if kind == "vp":
            betas = vp_betas(
                config.get("num_train_timesteps", 1000),
                config.get("beta_start", 1e-4),
                config.get("beta_end", 0.02),
                config.get("beta_schedule", "linear"),
                config.get("trained_betas"),
                config.get("rescale_betas_zero_snr", False),
            )
            self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
            ac = self.alphas_cumprod.to(torch.float64)
            self.log_sigmas = 0.5 * (torch.log1p(-ac) - torch.log(ac))
            self.sigma_min = float(self.log_sigmas[0].exp())
            self.sigma_max = float(self.log_sigmas[-1].exp())
        else:
            self.sigma_min = _finite("sigma_min", config.get("sigma_min", 0.01))
            self.sigma_max = _finite("sigma_max", config.get("sigma_max", 1348.0))
            if not 0 < self.sigma_min < self.sigma_max:
                raise ConfigError(
                    f"a VE schedule needs 0 < sigma_min < sigma_max, got "
                    f"{self.sigma_min!r}, {self.sigma_max!r}"
                )

    def scales(self, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(a, v) for VE noise levels σ: VP a = 1/√(1 + σ²), v = σ a; VE a = 1, v = σ."""
        if self.kind == "ve":
            return torch.ones_like(sigma), sigma
        a = torch.rsqrt(1.0 + sigma * sigma)
        return a, sigma * a
