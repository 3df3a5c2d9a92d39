"""The corrector side of :class:`~ebmflow_diffusers.EBMScheduler`: the step-size rules, the
ULA step a stock pipeline's loop makes between predictor steps, and :meth:`correct`, which
runs any registered sampler at one level (see the scheduler's module docstring)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

import ebmflow
from ebmflow_diffusers import corrector as _corrector
from ebmflow_diffusers.schedule import score_from_output, split_output
from ebmflow_diffusers.scheduler_arguments import fail


class SchedulerCorrector:
    """Methods of EBMScheduler that run its corrector; they read the scheduler's config,
    ``scales`` and ``_channels``."""

    config: Any
    betas: Tensor
    _ac: Tensor
    _level_step_size: float | None

    def scales(self, timestep: Any) -> tuple[float, float]:
        raise NotImplementedError

    def _channels(self, model_output: Tensor, sample: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def _variance_increment(self, timestep: int | float | Tensor) -> float:
        """σ_t² − σ_{t−1}² over one *training* step (the ``beta`` step-size rule)."""
        if self.config.schedule == "ve":
            c = self.config
            q2 = (c.sigma_max / c.sigma_min) ** (2.0 / max(c.num_train_timesteps - 1, 1))
            return float(timestep) ** 2 * (1.0 - 1.0 / q2)
        t = int(timestep)  # 1/ᾱ_t − 1/ᾱ_{t−1} = β_t/ᾱ_t, without the cancellation
        return float(self.betas[t]) / float(self._ac[t])

    def _ula_step(self, model_output, timestep, sample, generator, first):
        """x_ve ← x_ve + η s + noise_scale·z with the langevin corrector's η and noise (and
        its ``clip``, in VE coordinates like the corrector's own step)."""
        output, _ = self._channels(model_output, sample)
        a, v = self.scales(timestep)
        x0, _ = split_output(output, sample, a, v, self.config.prediction_type)
        if a == 0:  # σ = ∞: nothing to correct
            return sample, x0
        score = score_from_output(output, sample, a, v, self.config.prediction_type)
        if first or self._level_step_size is None:
            self._level_step_size = self.level_step_size(timestep, score)
        ula = self.make_corrector(self._level_step_size)
        z = randn_tensor(
            sample.shape, generator=generator, device=sample.device, dtype=sample.dtype
        )
        x_ve = sample / a + ula.step_size * score + ula.noise_scale * z
        if ula.clip is not None:
            x_ve = x_ve.clamp(*ula.clip)
        return x_ve * a, x0

    # -- the corrector -----------------------------------------------------------------

    def make_corrector(self, step_size: float) -> ebmflow.Sampler:
        """The corrector sampler with step size η (built through the ebmflow registry)."""
        return _corrector.build_sampler(
            self.config.corrector, self.config.corrector_args or {}, step_size
        )

    def level_step_size(self, timestep, score: Tensor | None = None) -> float:
        """η at ``timestep`` by the step-size rule (``score``: the VE score at the level's
        starting point, needed by the snr rule)."""
        if self.config.step_size_rule == "beta":
            return self.config.step_size_scale * self._variance_increment(timestep)
        if score is None:
            raise fail("the snr step-size rule needs the score at the start of the level")
        return _corrector.snr_step_size(score, self.config.snr)

    def correct(
        self,
        energy: ebmflow.Energy,
        sample: Tensor,
        timestep: int | float | Tensor,
        generator: torch.Generator | None = None,
    ) -> _corrector.CorrectorResult:
        """``corrector_steps`` steps of the corrector at ``timestep``'s level.

        Args:
            energy: a noise-conditional ebmflow energy in VE coordinates (a converted model,
                a composition of them, an energy parameterisation ...).
            sample: x_t in the scheduler's coordinates.

        Returns:
            A :class:`~ebmflow_diffusers.corrector.CorrectorResult` whose ``x`` is back in the
            scheduler's coordinates.
        """
        a, v = self.scales(timestep)
        if a == 0 or not self.config.corrector_steps:
            return _corrector.CorrectorResult(sample, None, 0.0)
        sigma = v / a
        x_ve = sample / a
        score = None
        if self.config.step_size_rule == "snr":
            score = energy.score(x_ve, sigma)
        eta = self.level_step_size(timestep, score)
        sampler = self.make_corrector(eta)
        x_new, rate = _corrector.run_corrector(
            sampler,
            energy,
            x_ve,
            sigma,
            self.config.corrector_steps,
            generator,
            n_points=self.config.energy_points,
            rule=self.config.energy_rule,
            score=score,
        )
        return _corrector.CorrectorResult(x_new * a, rate, eta)
