"""Deterministic samplers on the probability-flow ODE dx/dσ = −σ s(x, σ)
(:mod:`ebmflow_ode.flow`), over a noise schedule σ₀ > σ₁ > … > σ_L, one level per step:

- ``ode-euler``: x ← x + (σᵢ₊₁ − σᵢ) dᵢ,  dᵢ = −σᵢ s(x, σᵢ)  (one evaluation per step);
- ``ode-heun``: EDM's second-order step (Karras et al. 2022, Algorithm 1): the Euler point
  x̃ = x + (σᵢ₊₁ − σᵢ) dᵢ, then x ← x + (σᵢ₊₁ − σᵢ)(dᵢ + d̃)/2 with d̃ = −σᵢ₊₁ s(x̃, σᵢ₊₁)
  (two evaluations per step);
- ``ode``: each level to the next by an adaptive torchdiffeq solver (dopri5 by default) in
  log-σ time, dx/du = −σ² s, with ``rtol``/``atol`` and a step budget ``max_steps``.

Start from x ~ N(0, σ₀² I) (``sampler.init_scale`` is σ₀; ``ebmflow sample`` uses it when no
``--init-scale`` is given). With ``denoise=True`` the samples get the final step to σ = 0,
x + σ_L² s(x, σ_L), which is both Euler's last step in EDM and Tweedie's denoiser.

Each sampler is also a predictor beside the stochastic ones: ``corrector`` (any registered
sampler, e.g. ``"langevin"`` or ``{"name": "mala", "step_size": 0.01}``) runs
``corrector_steps`` steps at σᵢ before each ODE step, as in predictor–corrector sampling
(Song et al. 2021).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import build_sampler, check_finite, check_positive_int
from ebmflow_ode.flow import (
    ADAPTIVE_METHODS,
    check_solver,
    check_tolerance,
    resolve_sigmas,
    solve,
)


class ProbabilityFlowSampler(ebmflow.Sampler):
    """Base of the ODE samplers: the schedule, the denoising step and the corrector; a
    subclass gives :meth:`move`, the ODE step from σᵢ to σᵢ₊₁.

    Args:
        noise_schedule: a registered schedule (name or config dict), an object with
            ``sigmas(n)``, or an explicit decreasing sequence of σ (VE coordinates).
        n_levels: levels L + 1 drawn from the schedule (ignored for a sequence); the run
            takes L steps.
        denoise: finish with x + σ_L² s(x, σ_L) (the step to σ = 0).
        corrector: a sampler run at each level before the ODE step (``None``: none).
        corrector_steps: its steps per level.
    """

    #: the sampler draws its own noise levels (``ebmflow sample`` takes no ``--sigma``).
    sets_noise_level = True
    sampler_name = "ode"

    def __init__(
        self,
        noise_schedule: Any = "karras",
        n_levels: int = 18,
        denoise: bool = True,
        corrector: Any = None,
        corrector_steps: int = 0,
    ) -> None:
        owner = self.sampler_name
        n_levels = check_positive_int(owner, "n_levels", n_levels, minimum=2)
        self.sigmas = resolve_sigmas(owner, noise_schedule, n_levels)
        self.n_levels = len(self.sigmas)
        if not isinstance(denoise, bool):
            raise ebmflow.ConfigError(f"{owner}: denoise must be True or False, got {denoise!r}")
        self.denoise = denoise
        self.corrector_steps = check_positive_int(
            owner, "corrector_steps", corrector_steps, minimum=0
        )
        self.corrector = None if corrector is None else build_sampler(owner, corrector)
        if self.corrector is None and self.corrector_steps:
            raise ebmflow.ConfigError(
                f"{owner}: corrector_steps={corrector_steps} needs a corrector sampler "
                "(e.g. corrector='langevin'), got corrector=None"
            )

    @property
    def name(self) -> str:
        return self.sampler_name

    @property
    def total_steps(self) -> int:
        return self.n_levels - 1

    @property
    def init_scale(self) -> float:
        """σ₀: the standard deviation of the N(0, σ₀² I) start."""
        return self.sigmas[0]

    def init(self, energy: ebmflow.Energy, x: Tensor, sigma=None) -> ebmflow.SamplerState:
        if sigma is not None:
            raise ebmflow.ConfigError(
                f"{self.name} sets the noise level itself from its schedule; do not pass "
                f"sigma (got {sigma!r})"
            )
        if not energy.noise_conditional:
            raise ebmflow.ConfigError(
                f"{self.name} needs a noise-conditional energy or score model (E(x, σ)); "
                f"{type(energy).__name__} has noise_conditional=False"
            )
        return super().init(energy, x, self.sigmas[0])

    def step(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None = None,
    ) -> ebmflow.SamplerState:
        i = state.step
        if i >= self.total_steps:
            raise ebmflow.ConfigError(
                f"{self.name}: the schedule of {self.n_levels} noise levels ends after "
                f"{self.total_steps} steps; step {i + 1} was asked for"
            )
        hi, lo = self.sigmas[i], self.sigmas[i + 1]
        if self.corrector is not None and self.corrector_steps:
            corrected = self.corrector.run(
                energy, state.x, self.corrector_steps, sigma=hi, generator=generator
            ).state
            state = state.replace(x=corrected.x, energy=corrected.energy, score=corrected.score)
        x, extras = self.move(energy, state, hi, lo)
        sigma = ebmflow.broadcast_sigma(lo, x)
        e, s = energy.energy_and_score(x, sigma)
        check_finite(self.name, i, e, x)
        return ebmflow.SamplerState(x, e, s, sigma, i + 1, extras=extras)

    def move(
        self, energy: ebmflow.Energy, state: ebmflow.SamplerState, hi: float, lo: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """x at σ = ``lo`` from ``state`` (x and its score at σ = ``hi``), and the extras."""
        raise NotImplementedError

    def run(self, energy, x0, n_steps=None, **kwargs) -> ebmflow.SampleResult:
        """Run the whole schedule by default (``n_levels − 1`` steps)."""
        return super().run(energy, x0, self.total_steps if n_steps is None else n_steps, **kwargs)

    def continue_run(self, energy, state, n_steps, **kwargs) -> ebmflow.SampleResult:
        result = super().continue_run(energy, state, n_steps, **kwargs)
        if self.denoise and result.state.step >= self.total_steps:
            result.samples = result.state.x + self.sigmas[-1] ** 2 * result.state.score
        return result

    def diagnostics(self, state: ebmflow.SamplerState) -> dict[str, Any]:
        return {"sigmas": self.sigmas}


class EulerODE(ProbabilityFlowSampler):
    """``ode-euler``: Euler steps on dx/dσ = −σ s (module docstring); one evaluation per step."""

    sampler_name = "ode-euler"

    def __init__(
        self,
        noise_schedule: Any = "karras",
        n_levels: int = 50,
        denoise: bool = True,
        corrector: Any = None,
        corrector_steps: int = 0,
    ) -> None:
        super().__init__(noise_schedule, n_levels, denoise, corrector, corrector_steps)

    def move(self, energy, state, hi, lo):
        return torch.add(state.x, state.score, alpha=(lo - hi) * -hi), {}


class HeunODE(ProbabilityFlowSampler):
    """``ode-heun``: EDM's second-order step (module docstring); two evaluations per step."""

    sampler_name = "ode-heun"

    def move(self, energy, state, hi, lo):
        h = lo - hi
        x_euler = torch.add(state.x, state.score, alpha=-h * hi)
        score_euler = energy.energy_and_score(x_euler, ebmflow.broadcast_sigma(lo, x_euler))[1]
        x = state.x + (0.5 * h) * (-hi * state.score - lo * score_euler)
        return x, {}


class AdaptiveODE(ProbabilityFlowSampler):
    """``ode``: each level to the next by a torchdiffeq solver in log-σ time.

    Args:
        solver: a torchdiffeq method; adaptive ones (``"dopri5"``, ``"bosh3"``, …) use
            ``rtol``/``atol``, fixed-step ones (``"euler"``, ``"rk4"``, …) take ``n_steps``
            equal steps in log σ per level.
        rtol, atol: the adaptive solver's tolerances.
        max_steps: the adaptive solver's step budget per level; past it the run stops with
            :class:`~ebmflow_ode.ODEConvergenceError`.
        n_steps: steps per level of a fixed-step method.
        n_levels: default 2: σ_max straight to σ_min in one solve.

    ``state.extras["n_evaluations"]`` counts the drift evaluations of the last level.
    """

    sampler_name = "ode"

    def __init__(
        self,
        noise_schedule: Any = "karras",
        n_levels: int = 2,
        solver: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        max_steps: int = 10_000,
        n_steps: int = 100,
        denoise: bool = True,
        corrector: Any = None,
        corrector_steps: int = 0,
    ) -> None:
        super().__init__(noise_schedule, n_levels, denoise, corrector, corrector_steps)
        self.solver = check_solver(self.sampler_name, solver)
        self.rtol = check_tolerance(self.sampler_name, "rtol", rtol)
        self.atol = check_tolerance(self.sampler_name, "atol", atol)
        self.max_steps = check_positive_int(self.sampler_name, "max_steps", max_steps)
        self.n_steps = check_positive_int(self.sampler_name, "n_steps", n_steps)

    def move(self, energy, state, hi, lo):
        count = [0]

        def velocity(u: Tensor, x: Tensor) -> Tensor:
            count[0] += 1
            sigma = math.exp(float(u))
            score = energy.energy_and_score(x, ebmflow.broadcast_sigma(sigma, x))[1]
            return score.mul(-sigma * sigma)

        x = solve(
            self.name,
            velocity,
            state.x,
            math.log(hi),
            math.log(lo),
            method=self.solver,
            rtol=self.rtol,
            atol=self.atol,
            max_steps=self.max_steps,
            n_steps=self.n_steps,
        )
        return x, {"n_evaluations": torch.tensor(count[0])}

    def diagnostics(self, state):
        adaptive = self.solver in ADAPTIVE_METHODS
        return {**super().diagnostics(state), "solver": self.solver, "adaptive": adaptive}
