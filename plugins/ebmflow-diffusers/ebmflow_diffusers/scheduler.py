"""EBMScheduler: a diffusers scheduler that treats the model as a noise-conditional energy.

Predictor. With x_t = a x₀ + v ε (a = √ᾱ, v = √(1 − ᾱ) for VP; a = 1, v = σ for VE), the
model's output gives (x̂₀, ε̂) (:func:`~ebmflow_diffusers.schedule.split_output`); x̂₀ is
clipped or dynamically thresholded as configured. With the previous level's (a′, v′) and the
"gap" g = a′² v² − v′² a² (= ᾱ′ − ᾱ for VP, σ² − σ′² for VE):

``ddpm`` (ancestral; Ho et al. 2020, the posterior q(x_{t′} | x_t, x̂₀)):
    x_{t′} = g / (a′ v²) · x̂₀ + v′² a / (a′ v²) · x_t + std · z,
    std² = max(v′² g / (a′² v²), 1e-20)  ("fixed_small"; "fixed_large": g / a′²;
    "learned" and "learned_range" from the model's extra channels, as DDPMScheduler).
``ddim`` (Song, Meng & Ermon 2021):
    std = η √(v′² g / (a′² v²)),   x_{t′} = a′ x̂₀ + √(v′² − std²) ε̂ + std · z.

These are DDPMScheduler's and DDIMScheduler's updates written for both kinds of schedule;
with no corrector steps the outputs agree with theirs given the same noise (the noise is
drawn with the same calls, in the same order).

Corrector. At each level, before the predictor step, ``corrector_steps`` steps of a
registered ebmflow sampler (``langevin``, ``mala``, ``hmc``, ``parallel-tempering``, ...)
run on the energy at σ = v / a in VE coordinates x_ve = x_t / a, with the step size from
``step_size_rule`` (:mod:`ebmflow_diffusers.corrector`). Samplers that need energies get
segment-integral estimates on score-only models (:mod:`ebmflow_diffusers.segment`).

- In :class:`~ebmflow_diffusers.EBMPipeline` the corrector calls the model itself
  (:meth:`EBMScheduler.correct`), so any sampler works.
- In a stock pipeline (``DDPMPipeline``) only the model output at the current sample is
  available, which is what one ULA step needs: ``set_timesteps`` repeats every timestep
  ``corrector_steps + 1`` times (``order`` says so) and ``step`` makes ULA steps
  x_ve ← x_ve + η s + √(2η) z on the first ``corrector_steps`` calls of a timestep and the
  predictor step on the last. The scheduler counts its calls for this (``step_index``,
  reset by ``set_timesteps``); without a corrector ``step`` keeps no state at all.

Timesteps. VP schedules use DDPMScheduler's discrete timesteps (``timestep_spacing``
``leading``, ``linspace`` or ``trailing``, ``steps_offset``, or custom lists); the previous
timestep is the next in the list for ``ddpm`` and t − T // N for ``ddim``, as the two stock
schedulers do. VE schedules (``schedule="ve"``) use continuous levels: ``timesteps`` are the
noise levels σ themselves, geometric from ``sigma_max`` to ``sigma_min``, and the model is
called with σ as its timestep (as ScoreSdeVePipeline does); the last step goes to σ′ = 0.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

import ebmflow
from ebmflow_diffusers import corrector as _corrector
from ebmflow_diffusers.corrected import warn_if_replaced
from ebmflow_diffusers.predictor import ancestral_std, dynamic_threshold
from ebmflow_diffusers.schedule import (
    alphas_cumprod_at,
    output_from_score,
    score_from_output,
    split_output,
    ve_sigmas,
    vp_betas,
)
from ebmflow_diffusers.scheduler_arguments import check_arguments, fail
from ebmflow_diffusers.scheduler_corrector import SchedulerCorrector
from ebmflow_diffusers.scheduler_stock import StockPredictor, predictor_from_config, step_keywords
from ebmflow_diffusers.timesteps import custom_ve_levels, custom_vp_timesteps, spaced_timesteps


@dataclass
class EBMSchedulerOutput(BaseOutput):
    """Output of :meth:`EBMScheduler.step`.

    Attributes:
        prev_sample: the sample after this call (the next model input).
        pred_original_sample: x̂₀ predicted at the current sample (clipped as configured).
    """

    prev_sample: Tensor
    pred_original_sample: Tensor | None = None


class EBMScheduler(SchedulerCorrector, StockPredictor, SchedulerMixin, ConfigMixin):
    """Predictor–corrector scheduler over a noise-conditional energy (see the module docstring).

    DDPMScheduler's and DDIMScheduler's arguments keep their names and meanings, so configs
    convert both ways with ``from_config``. Added:

    Args:
        set_alpha_to_one: DDIMScheduler's: ᾱ after the last step is 1 (else ᾱ_0); used by
            the ``ddim`` predictor.
        schedule: ``"vp"`` (DDPM tables from the beta arguments) or ``"ve"`` (σ from
            ``sigma_min`` to ``sigma_max``; prediction types ``score``, ``epsilon``,
            ``sample``).
        sigma_min, sigma_max: the VE range.
        predictor: ``"ddpm"`` (ancestral) or ``"ddim"``.
        eta: DDIM's η (0: deterministic; 1: the ancestral variance).
        corrector: a registered sampler name, e.g. ``"langevin"``, ``"mala"``, ``"hmc"``,
            ``"parallel-tempering"``.
        corrector_steps: sampler steps per level (0: none; the scheduler is then a plain
            DDPM/DDIM scheduler).
        corrector_args: further arguments of the sampler (not its step size).
        step_size_rule: ``"snr"`` or ``"beta"`` (:mod:`ebmflow_diffusers.corrector`).
        snr: r of the snr rule (Song et al. use 0.16; ScoreSdeVeScheduler 0.15).
        step_size_scale: c of the beta rule.
        energy_rule, energy_points: the quadrature for energies of score-only models
            (``"trapezoid"`` or ``"simpson"``, number of nodes).
    """

    _compatibles: ClassVar[list[str]] = [e.name for e in KarrasDiffusionSchedulers]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        variance_type: str = "fixed_small",
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        set_alpha_to_one: bool = True,
        schedule: Literal["vp", "ve"] = "vp",
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        predictor: Literal["ddpm", "ddim"] = "ddpm",
        eta: float = 0.0,
        corrector: str = "langevin",
        corrector_steps: int = 0,
        corrector_args: dict | None = None,
        step_size_rule: Literal["snr", "beta"] = "snr",
        snr: float = 0.16,
        step_size_scale: float = 1.0,
        energy_rule: Literal["trapezoid", "simpson"] = "trapezoid",
        energy_points: int = 2,
    ):
        check_arguments(
            schedule=schedule,
            prediction_type=prediction_type,
            predictor=predictor,
            variance_type=variance_type,
            timestep_spacing=timestep_spacing,
            step_size_rule=step_size_rule,
            energy_rule=energy_rule,
            energy_points=energy_points,
            corrector_steps=corrector_steps,
            eta=eta,
            snr=snr,
            step_size_scale=step_size_scale,
            corrector_args=corrector_args,
        )
        self._corrector_factory = _corrector.sampler_factory(corrector)
        if corrector_steps:  # build one now so that bad arguments fail here, not mid-run
            self.make_corrector(1e-3)

        if schedule == "vp":
            try:
                self.betas = vp_betas(
                    num_train_timesteps,
                    beta_start,
                    beta_end,
                    beta_schedule,
                    trained_betas,
                    rescale_betas_zero_snr,
                )
            except ValueError as exc:  # name the scheduler, as its other checks do
                raise fail(str(exc)) from None
            self.alphas = 1.0 - self.betas
            self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
            ones = (self.alphas_cumprod >= 1).nonzero()
            if ones.numel():  # 1 − β rounds to 1 in float32: σ_t = 0, no noise to remove
                t = int(ones[0, 0])
                raise fail(
                    f"alphas_cumprod_{t} = 1 in float32 (beta_{t} = {float(self.betas[t]):.3g} "
                    f"is below float32's resolution at 1), so the noise level σ_{t} is 0; "
                    f"accepted: betas of at least about 6e-8 (the float32 spacing below 1)"
                )
            self._ac = self.alphas_cumprod.to(torch.float64)  # the tables the arithmetic uses
            self.final_alpha_cumprod = (
                torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]
            )
            self.init_noise_sigma = 1.0
            self.timesteps = torch.from_numpy(np.arange(0, len(self.betas))[::-1].copy())
        else:
            if not 0 < sigma_min < sigma_max:
                raise fail(
                    f"a VE schedule needs 0 < sigma_min < sigma_max, got {sigma_min!r}, "
                    f"{sigma_max!r}"
                )
            self.init_noise_sigma = float(sigma_max)
            self.timesteps = ve_sigmas(num_train_timesteps, sigma_min, sigma_max).float()
        self.num_inference_steps: int | None = None
        self.custom_timesteps = False
        self.variance_type = variance_type
        self._levels = self.timesteps
        self._loop_corrector = False
        self.step_index = 0
        self._level_step_size: float | None = None
        self._stock_cache: Any = None

    @property
    def config(self) -> Any:
        config = self._internal_dict
        if config.get("corrector_steps"):
            warn_if_replaced(self, sys._getframe(1))
        return config

    @classmethod
    def from_config(cls, config: Any = None, return_unused_kwargs: bool = False, **kwargs: Any):
        """diffusers' ``from_config``; a ``DDIMScheduler`` config gives the ``ddim``
        predictor (a DDPM one, or any naming no predictor, ``ddpm``)."""
        predictor = predictor_from_config(config, kwargs)
        if predictor is not None:
            kwargs["predictor"] = predictor
        return super().from_config(config, return_unused_kwargs, **kwargs)

    # -- the noise levels --------------------------------------------------------------

    @property
    def predictor_timesteps(self) -> Tensor:
        """The distinct timesteps, one per predictor step (``timesteps`` repeats them when
        a ULA corrector runs inside a stock pipeline loop)."""
        return self._levels

    def scales(self, timestep: int | float | Tensor) -> tuple[float, float]:
        """(a, v) of x_t = a x₀ + v ε at ``timestep``; a negative VP timestep is "after the
        last step" (ᾱ = 1), a VE level σ = 0 likewise."""
        if self.config.schedule == "ve":
            return 1.0, float(timestep)
        t = int(timestep)
        ac = 1.0 if t < 0 else float(self._ac[t])
        return math.sqrt(ac), math.sqrt(1.0 - ac)

    def _prev_scales(self, prev: int | float) -> tuple[float, float]:
        if self.config.schedule == "vp" and prev < 0 and self.config.predictor == "ddim":
            ac = float(self.final_alpha_cumprod)
            return math.sqrt(ac), math.sqrt(1.0 - ac)
        return self.scales(prev)

    def sigma(self, timestep: int | float | Tensor) -> float:
        """The VE noise level σ = v / a of ``timestep`` (∞ where ᾱ = 0)."""
        a, v = self.scales(timestep)
        return math.inf if a == 0 else v / a

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
        *,
        repeat_for_corrector: bool = True,
    ) -> None:
        """Set the timesteps of a run (before sampling).

        Args:
            num_inference_steps: number of predictor steps N.
            device: where ``timesteps`` go.
            timesteps: custom descending timesteps instead (VP), or noise levels (VE).
            repeat_for_corrector: with a corrector, repeat each timestep
                ``corrector_steps + 1`` times for a stock pipeline's loop (the ULA corrector
                runs inside ``step``). :class:`EBMPipeline` passes ``False``: it calls the
                corrector itself.
        """
        config = self.config
        if (num_inference_steps is None) == (timesteps is None):
            raise fail("pass exactly one of num_inference_steps or timesteps")
        count = cast(int, num_inference_steps)  # read only where timesteps is None
        if config.schedule == "ve":
            if timesteps is not None:
                levels = custom_ve_levels(timesteps)
                self.custom_timesteps = True
                self.num_inference_steps = len(levels)
            else:
                levels = ve_sigmas(count, config.sigma_min, config.sigma_max)
                self.custom_timesteps = False
                self.num_inference_steps = count
            levels = levels.float()
        elif timesteps is not None:
            levels = custom_vp_timesteps(timesteps, config.num_train_timesteps)
            self.custom_timesteps = True
            self.num_inference_steps = len(levels)
        else:
            levels = torch.from_numpy(
                spaced_timesteps(
                    count, config.num_train_timesteps, config.timestep_spacing, config.steps_offset
                )
            )
            self.custom_timesteps = False
            self.num_inference_steps = count
        self._levels = levels.to(device)
        m = config.corrector_steps
        self._loop_corrector = bool(m) and repeat_for_corrector
        if self._loop_corrector:
            if not issubclass_safe(self._corrector_factory, ebmflow.Langevin):
                raise fail(
                    f"corrector {config.corrector!r} needs model evaluations at proposed "
                    f"points, which a stock pipeline loop (one model call per timestep) does not "
                    f"make; only 'langevin' runs inside a stock pipeline. Sample with "
                    f"ebmflow_diffusers.EBMPipeline, or set corrector_steps=0"
                )
            self.timesteps = self._levels.repeat_interleave(m + 1)
            self.order = m + 1
        else:
            self.timesteps = self._levels
            self.order = 1
        self.step_index = 0
        self._level_step_size = None

    def previous_timestep(self, timestep: int | float | Tensor) -> Tensor:
        """The level the predictor steps to from ``timestep`` (−1 or σ = 0 after the last),
        a tensor as diffusers' schedulers return it."""
        return torch.as_tensor(self._previous(timestep))

    def _previous(self, timestep: int | float | Tensor) -> int | float:
        if self.config.schedule == "ve":
            if self.num_inference_steps is None:
                raise fail("a VE schedule needs set_timesteps before step")
            return self._next_level(timestep, end=0.0)
        t = int(timestep)
        if self.num_inference_steps is None:
            return t - 1
        if self.config.predictor == "ddim" and not self.custom_timesteps:
            return t - self.config.num_train_timesteps // self.num_inference_steps
        return self._next_level(t, end=-1)

    def _next_level(self, timestep, end):
        matches = (self._levels == torch.as_tensor(timestep).to(self._levels)).nonzero()
        if matches.numel() == 0:
            raise fail(
                f"timestep {timestep!r} is not one of the timesteps set by "
                f"set_timesteps ({self._levels.tolist()})"
            )
        index = int(matches[0, 0])
        if index == len(self._levels) - 1:
            return end
        value = self._levels[index + 1]
        return float(value) if self.config.schedule == "ve" else int(value)

    # -- stepping ----------------------------------------------------------------------

    def scale_model_input(self, sample: Tensor, timestep: int | None = None) -> Tensor:
        """The model takes x_t as it is."""
        return sample

    def step(
        self,
        model_output: Tensor,
        timestep: int | float | Tensor,
        sample: Tensor,
        *args: Any,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        eta: float | None = None,
        use_clipped_model_output: bool = False,
        variance_noise: Tensor | None = None,
    ) -> EBMSchedulerOutput | tuple:
        """One call of a sampling loop: a predictor step, or, when ``set_timesteps``
        repeated the timesteps for a ULA corrector, a corrector step on all but the last
        call of a timestep.

        Args:
            model_output: the model's output at (``sample``, ``timestep``).
            timestep: the current timestep (VE: the noise level σ).
            sample: x_t.
            args: the optional arguments by position, in the stock scheduler's order: the
                ``ddpm`` predictor's (generator, return_dict) as DDPMScheduler's, the
                ``ddim`` predictor's (eta, use_clipped_model_output, generator,
                variance_noise, return_dict) as DDIMScheduler's.
            generator: the source of the noise.
            return_dict: return :class:`EBMSchedulerOutput` (else a tuple).
            eta: DDIM's η for this call (default: the config's), as DDIMPipeline passes it.
            use_clipped_model_output: DDIM's option: recompute ε̂ from the clipped x̂₀.
            variance_noise: the predictor's noise z itself instead of drawing it.
        """
        if args:
            named = step_keywords(
                self.config.predictor,
                args,
                {
                    key: value
                    for key, value in (
                        ("generator", generator),
                        ("return_dict", return_dict),
                        ("eta", eta),
                        ("use_clipped_model_output", use_clipped_model_output),
                        ("variance_noise", variance_noise),
                    )
                    if value is not None and value is not True and value is not False
                },
                "EBMScheduler",
            )
            generator = named.get("generator")
            return_dict = named.get("return_dict", return_dict)
            eta = named.get("eta", eta)
            use_clipped_model_output = named.get(
                "use_clipped_model_output", use_clipped_model_output
            )
            variance_noise = named.get("variance_noise")
        if self._loop_corrector:
            index = self.step_index
            if index >= len(self.timesteps) or int(
                (self.timesteps[index] != torch.as_tensor(timestep).to(self.timesteps)).sum()
            ):
                raise fail(
                    f"call {index} of this run got timestep {timestep!r}, but with a corrector "
                    f"in the loop the calls must follow scheduler.timesteps in order; call "
                    f"set_timesteps again to start a new run"
                )
            self.step_index += 1
            if index % (self.config.corrector_steps + 1) < self.config.corrector_steps:
                prev, x0 = self._ula_step(
                    model_output,
                    timestep,
                    sample,
                    generator,
                    first=(index % (self.config.corrector_steps + 1) == 0),
                )
                out = EBMSchedulerOutput(prev_sample=prev, pred_original_sample=x0)
                return out if return_dict else out.to_tuple()
            self._level_step_size = None
        prev, x0 = self._predict(
            model_output,
            timestep,
            sample,
            generator,
            self.config.eta if eta is None else eta,
            use_clipped_model_output,
            variance_noise,
        )
        if not return_dict:
            return prev, x0
        return EBMSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    def _channels(self, model_output: Tensor, sample: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.variance_type in ("learned", "learned_range") and (
            model_output.shape[1] == 2 * sample.shape[1]
        ):
            out, var = torch.split(model_output, sample.shape[1], dim=1)
            return out, var
        return model_output, None

    def _clip(self, x0: Tensor) -> Tensor:
        config = self.config
        if config.thresholding:
            return dynamic_threshold(x0, config.dynamic_thresholding_ratio, config.sample_max_value)
        if config.clip_sample:
            return x0.clamp(-config.clip_sample_range, config.clip_sample_range)
        return x0

    def _predict(
        self,
        model_output,
        timestep,
        sample,
        generator,
        eta,
        use_clipped_model_output,
        variance_noise,
    ):
        config = self.config
        output, predicted_variance = self._channels(model_output, sample)
        stock_state = config.predictor == "ddpm" or self.num_inference_steps is not None
        if (
            config.schedule == "vp"
            and stock_state
            and (config.predictor == "ddim" or variance_noise is None)
        ):
            return self._stock_step(
                model_output if config.predictor == "ddpm" else output,
                timestep,
                sample,
                generator,
                eta,
                use_clipped_model_output,
                variance_noise,
            )
        prev = self._previous(timestep)
        a, v = self.scales(timestep)
        a_p, v_p = self._prev_scales(prev)
        x0, eps = split_output(output, sample, a, v, config.prediction_type)
        x0 = self._clip(x0)
        # ᾱ′ − ᾱ (VP) or σ² − σ′² (VE)
        gap = a_p * a_p - a * a if config.schedule == "vp" else v * v - v_p * v_p
        denom = a_p * a_p * v * v
        posterior = v_p * v_p * gap / denom
        if config.predictor == "ddim":
            std = eta * math.sqrt(posterior)
            if use_clipped_model_output:
                eps = (sample - a * x0) / v
            prev_sample = a_p * x0 + math.sqrt(max(v_p * v_p - std * std, 0.0)) * eps
            draw = eta > 0
        else:
            prev_sample = (gap / (a_p * v * v)) * x0 + (v_p * v_p * a / (a_p * v * v)) * sample
            std = ancestral_std(
                self.variance_type, posterior, gap / (a_p * a_p), predicted_variance
            )
            draw = (int(timestep) > 0) if config.schedule == "vp" else prev > 0
        if draw:
            if variance_noise is not None and generator is not None:
                raise fail("pass either generator or variance_noise, not both")
            if variance_noise is None:
                variance_noise = randn_tensor(
                    output.shape, generator=generator, device=output.device, dtype=output.dtype
                )
            prev_sample = prev_sample + std * variance_noise
        return prev_sample, x0

    # -- conversions -------------------------------------------------------------------

    def to_ve(self, sample: Tensor, timestep) -> Tensor:
        """x_ve = x_t / a."""
        return sample / self.scales(timestep)[0]

    def score_from_output(self, model_output: Tensor, timestep, sample: Tensor) -> Tensor:
        """The VE score −ε̂/σ that a model output at (x_t, t) gives (no clipping)."""
        output, _ = self._channels(model_output, sample)
        a, v = self.scales(timestep)
        return score_from_output(output, sample, a, v, self.config.prediction_type)

    def output_from_score(self, score: Tensor, timestep, sample: Tensor) -> Tensor:
        """The model output (of ``prediction_type``) that a VE score at (x_t, t) means."""
        a, v = self.scales(timestep)
        return output_from_score(score, sample, a, v, self.config.prediction_type)

    # -- training-side helpers, as DDPMScheduler ---------------------------------------

    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """x_t = a x₀ + v ε (VP: √ᾱ_t x₀ + √(1 − ᾱ_t) ε; VE: x₀ + σ ε, timesteps being σ)."""
        if self.config.schedule == "ve":
            view = (-1,) + (1,) * (original_samples.ndim - 1)
            sigma = timesteps.to(original_samples.device, original_samples.dtype).reshape(view)
            return original_samples + sigma * noise
        ac_t = alphas_cumprod_at(self.alphas_cumprod, timesteps, original_samples)
        return ac_t**0.5 * original_samples + (1 - ac_t) ** 0.5 * noise

    def get_velocity(self, sample: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """v = √ᾱ_t ε − √(1 − ᾱ_t) x₀ (VP only)."""
        if self.config.schedule == "ve":
            raise fail("v-prediction targets exist for VP schedules only")
        ac_t = alphas_cumprod_at(self.alphas_cumprod, timesteps, sample)
        return ac_t**0.5 * noise - (1 - ac_t) ** 0.5 * sample

    def __len__(self) -> int:
        return self.config.num_train_timesteps


def issubclass_safe(obj: Any, cls: type) -> bool:
    return isinstance(obj, type) and issubclass(obj, cls)
