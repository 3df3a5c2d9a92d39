"""Where a diffusers scheduler's samples live, and the model's score at one of its levels.

Each diffusers scheduler steps in one of three sample spaces; the corrector works in
ebmflow's variance-exploding coordinates x_ve = x₀ + σ ε, so it maps a sample x there and
back as x = c · x_ve:

``"vp"``  (DDPM, DDIM, DPM-Solver, UniPC, DEIS, PNDM, SA-Solver): x is x_t = √ᾱ x₀ + √(1 − ᾱ) ε,
    so c = √ᾱ = 1 / √(1 + σ²); σ comes from ᾱ_t of the timestep, or from the scheduler's own
    ``sigmas`` where it steps by index (they are σ = √((1 − ᾱ)/ᾱ) there).
``"ve"``  (Euler, Euler ancestral, Heun, LMS, KDPM2): x is x_ve itself (c = 1, σ from
    ``sigmas``); the model sees ``scale_model_input(x)`` = x / √(σ² + 1) = x_t.
``"edm"`` (EDM Euler, EDM DPM-Solver): x is x_ve (c = 1); the model sees
    ``scale_model_input(x)`` and its output is turned into x̂₀ by the scheduler's own
    ``precondition_outputs``.

The model is always called on ``scheduler.scale_model_input(x, t)``, as a pipeline calls it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow_diffusers.schedule import score_from_output

#: sample space of each diffusers scheduler class known to take a corrector.
SPACES = {
    "DDPMScheduler": "vp",
    "DDIMScheduler": "vp",
    "DPMSolverMultistepScheduler": "vp",
    "DPMSolverSinglestepScheduler": "vp",
    "UniPCMultistepScheduler": "vp",
    "DEISMultistepScheduler": "vp",
    "PNDMScheduler": "vp",
    "SASolverScheduler": "vp",
    "EulerDiscreteScheduler": "ve",
    "EulerAncestralDiscreteScheduler": "ve",
    "HeunDiscreteScheduler": "ve",
    "LMSDiscreteScheduler": "ve",
    "KDPM2DiscreteScheduler": "ve",
    "KDPM2AncestralDiscreteScheduler": "ve",
    "EDMEulerScheduler": "edm",
    "EDMDPMSolverMultistepScheduler": "edm",
}
#: prediction types the score conversion understands (VP-trained models).
PREDICTIONS = ("epsilon", "v_prediction", "sample")

Denoiser = Callable[[Tensor, Any], Tensor]


def space_of(scheduler_class: type) -> str | None:
    """The sample space of ``scheduler_class`` or of its nearest known base, else ``None``."""
    for klass in scheduler_class.__mro__:
        if klass.__name__ in SPACES:
            return SPACES[klass.__name__]
    return None


def level(scheduler: Any, timestep: Any, space: str) -> tuple[float, float]:
    """(σ, c) of the scheduler's current level: the VE noise level, and the scale with
    x = c · x_ve. Schedulers that step by index use ``sigmas[step_index]`` (the index is
    set from ``timestep`` first, as their own ``step`` sets it)."""
    if hasattr(scheduler, "sigmas") and hasattr(scheduler, "_init_step_index"):
        if scheduler.step_index is None:
            scheduler._init_step_index(timestep)
        sigma = float(scheduler.sigmas[scheduler.step_index])
    else:
        t = int(timestep)
        ac = float(scheduler.alphas_cumprod[t].double()) if t >= 0 else 1.0
        sigma = math.inf if ac <= 0 else math.sqrt(max(1.0 - ac, 0.0) / ac)
    scale = 1.0 / math.sqrt(1.0 + sigma * sigma) if space == "vp" else 1.0
    return sigma, scale


class LevelScore(ebmflow.Energy):
    """The score of a diffusers model at one level of a scheduler, in VE coordinates.

    s(x_ve) = −ε̂ / σ, ε̂ from the model's output at ``scale_model_input(c · x_ve, t)`` by the
    scheduler's ``prediction_type`` (EDM: s = (x̂₀ − x_ve) / σ² with the scheduler's
    preconditioning). Score-only; the σ a sampler passes must be this level's.

    Args:
        scheduler: the scheduler (its config and ``scale_model_input``).
        denoise: ``denoise(model_input, t) -> model output``.
        timestep: the level's timestep, as the pipeline passes it.
        sigma, scale: the level (see :func:`level`).
        space: ``"vp"``, ``"ve"`` or ``"edm"``.
    """

    has_energy = False
    noise_conditional = True

    def __init__(
        self,
        scheduler: Any,
        denoise: Denoiser,
        timestep: Any,
        sigma: float,
        scale: float,
        space: str,
    ) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.denoise = denoise
        self.space = space
        self._at = _Level(timestep, sigma, scale)

    @property
    def timestep(self) -> Any:
        return self._at.timestep

    @property
    def sigma(self) -> float:
        return self._at.sigma

    @property
    def scale(self) -> float:
        return self._at.scale

    def move_to(self, timestep: Any, sigma: float, scale: float) -> None:
        """Point this score at another level of the same scheduler and model (a scheduler
        keeps one and moves it from level to level instead of building a module per level)."""
        self._at = _Level(timestep, sigma, scale)

    def remember(self, x_ve: Tensor, output: Tensor) -> None:
        """Record the model's ``output`` at ``x_ve`` (the pipeline's call at its sample), so
        :meth:`output` there returns it instead of calling the model again."""
        self._at.remember(x_ve, output, None)

    def output(self, x_ve: Tensor) -> Tensor:
        """The model's raw output at x_ve (the sample c · x_ve, scaled for the model)."""
        at = self._at
        if not at.holds(x_ve):
            with torch.no_grad():
                model_input = self.scheduler.scale_model_input(x_ve * at.scale, at.timestep)
                at.remember(x_ve, self.denoise(model_input, at.timestep), None)
        return at.output

    def score_from_output(self, output: Tensor, x_ve: Tensor) -> Tensor:
        """The VE score a model output at x_ve gives (the first C channels of a
        learned-variance output)."""
        if output.shape[1] == 2 * x_ve.shape[1]:
            output = output[:, : x_ve.shape[1]]
        sigma = self.sigma
        if self.space == "edm":
            x0 = self.scheduler.precondition_outputs(x_ve, output, sigma)
            return (x0 - x_ve) / (sigma * sigma)
        a = 1.0 / math.sqrt(1.0 + sigma * sigma)
        kind = self.scheduler.config.prediction_type
        return score_from_output(output, x_ve * a, a, sigma * a, kind)

    def score(self, x: Tensor, sigma: Any = None) -> Tensor:
        output, at = self.output(x), self._at
        # the score handed out last time, unless its reader has written into it since
        if at.score is not None and at.score._version == at.score_version:
            return at.score
        score = self.score_from_output(output, x)
        at.remember(x, output, score)
        return score


class _Level:
    """One level of a :class:`LevelScore` and the model's last (position, output, score),
    kept in a plain object: a corrector reads the model at the pipeline's sample (already
    evaluated) and at its final positions (evaluated by its last step) again, and each of
    those reads costs a network call without this. Holding the position keeps its storage,
    so no other tensor can take its address."""

    __slots__ = ("key", "output", "scale", "score", "score_version", "sigma", "timestep", "x")

    def __init__(self, timestep: Any, sigma: float, scale: float) -> None:
        self.timestep, self.sigma, self.scale = timestep, sigma, scale
        self.x: Tensor | None = None
        self.key: tuple[Any, ...] = ()
        self.output: Tensor
        self.score: Tensor | None = None
        self.score_version = 0

    @staticmethod
    def _key(x: Tensor) -> tuple[Any, ...]:
        # the same storage, layout and version: x or a detached alias of it, unmodified
        return (x.data_ptr(), x.shape, x.stride(), x.dtype, x._version)

    def holds(self, x: Tensor) -> bool:
        return self.x is not None and self.key == self._key(x)

    def remember(self, x: Tensor, output: Tensor, score: Tensor | None) -> None:
        self.x, self.key, self.output = x, self._key(x), output
        self.score = score
        self.score_version = 0 if score is None else score._version
