"""The corrector of predictor–corrector sampling: any registered ebmflow sampler, run for a
few steps at one noise level of a noise-conditional energy in VE coordinates.

Step-size rules (η is the sampler's step size in VE coordinates, one value per level):

``"snr"``
    the signal-to-noise rule of Song et al. 2021 ("Score-Based Generative Modeling through
    Stochastic Differential Equations", Algorithm 4, as diffusers' ScoreSdeVeScheduler
    applies it): η = 2 (r ‖z‖ / ‖s‖)², with ‖z‖² = d (the dimension, the expected squared
    norm of the injected noise) and ‖s‖ the batch mean of the per-sample score norms at the
    start of the level; r is ``snr``. Costs one score evaluation per level.
``"beta"``
    proportional to the forward process's variance increment: η = c (σ_t² − σ_{t−1}²),
    t − 1 the previous *training* timestep. For VP schedules this is c β_t / ᾱ_t, i.e. a step
    c β_t in the VP coordinates x_t = √ᾱ_t x_ve; for VE schedules c σ² (1 − q⁻²), q the ratio
    of neighbouring training levels. c is ``step_size_scale``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow_diffusers.segment import PathEnergy

STEP_SIZE_RULES = ("snr", "beta")


@dataclass
class CorrectorResult:
    """What one level's correction returns.

    Attributes:
        x: corrected positions in VE coordinates.
        acceptance_rate: mean Metropolis acceptance probability over the steps and chains
            (``None`` for samplers without a Metropolis test).
        step_size: the step size η the rule gave this level.
    """

    x: Tensor
    acceptance_rate: float | None
    step_size: float


def snr_step_size(score: Tensor, snr: float) -> float:
    """η = 2 (r √d / mean_b ‖s_b‖)² (see the module docstring)."""
    d = score[0].numel()
    norm = float(score.flatten(1).norm(dim=1).mean())
    if not math.isfinite(norm) or norm == 0.0:
        raise ebmflow.SamplerDivergedError(
            f"corrector: the score norm at the start of the level is {norm}; the snr step-size "
            f"rule needs a finite, non-zero score",
            step=0,
            n_chains=score.shape[0],
        )
    return 2.0 * (snr * math.sqrt(d) / norm) ** 2


def sampler_factory(name: str, host: ebmflow.PluginHost | None = None) -> Any:
    """The factory of the registered sampler ``name`` (raises the registry's error, listing
    what exists, for an unknown name)."""
    host = ebmflow.current_host() if host is None else host
    return host.get("sampler", name).load()


@functools.lru_cache(maxsize=64)
def cached_signature(function: Any) -> inspect.Signature:
    """``inspect.signature(function)``, read once: correctors build their sampler and
    schedulers bind their step arguments at every level, and neither signature changes."""
    return inspect.signature(function)


def build_sampler(
    name: str,
    args: Mapping[str, Any],
    step_size: float,
    host: ebmflow.PluginHost | None = None,
) -> ebmflow.Sampler:
    """The registered sampler ``name`` with step size η: passed as ``step_size`` (for HMC the
    leapfrog step ε = √(2η), which moves a chain as far as a Langevin step of size η: one
    leapfrog step is MALA with η = ε²/2), or, for a sampler that has none but wraps a
    ``local_sampler`` (parallel tempering), given to that."""
    host = ebmflow.current_host() if host is None else host
    kwargs = _with_step_size(name, sampler_factory(name, host), args, step_size)
    return host.create("sampler", name, **kwargs)


def _with_step_size(name: str, factory: Any, args: Mapping[str, Any], step_size: float) -> dict:
    params = cached_signature(factory).parameters
    kwargs = dict(args)
    if isinstance(factory, type) and issubclass(factory, ebmflow.HMC):
        kwargs["step_size"] = math.sqrt(2.0 * step_size)  # leapfrog ε with ε²/2 = η
    elif "step_size" in params:
        kwargs["step_size"] = step_size
    elif "local_sampler" in params:
        local = kwargs.get("local_sampler", "mala")
        if isinstance(local, str):
            local = {"name": local}
        elif isinstance(local, Mapping):
            local = dict(local)
        else:
            raise ebmflow.ConfigError(
                f"corrector {name!r}: give local_sampler as a registered name or a config dict "
                f"so that its step size can follow the step-size rule, got "
                f"{type(local).__name__}"
            )
        local["step_size"] = step_size
        kwargs["local_sampler"] = local
    else:
        raise ebmflow.ConfigError(
            f"corrector {name!r} has neither a step_size nor a local_sampler argument, so the "
            f"step-size rule cannot set its step; accepted correctors take step_size "
            f"(langevin, mala, hmc) or local_sampler (parallel-tempering)"
        )
    return kwargs


class SamplerMaker:
    """Builds the corrector ``name`` (with ``args``) at one step size after another, as a
    scheduler does at every level. The first build goes through the registry
    (:func:`build_sampler`), which checks the arguments and builds nested components; later
    ones, where every argument is a plain value, call the same factory directly, since only
    the step size differs."""

    def __init__(self, name: str, args: Mapping[str, Any]) -> None:
        self.name, self.args = name, dict(args)
        self.factory = sampler_factory(name)  # an unknown name fails here, listing the known
        self._plain = not any(isinstance(v, (Mapping, list, tuple)) for v in self.args.values())
        self._checked = False

    def __call__(self, step_size: float) -> ebmflow.Sampler:
        if self._checked and self._plain:
            return self.factory(**_with_step_size(self.name, self.factory, self.args, step_size))
        sampler = build_sampler(self.name, self.args, step_size)
        self._checked = True
        return sampler


def run_corrector(
    sampler: ebmflow.Sampler,
    energy: ebmflow.Energy,
    x: Tensor,
    sigma: float,
    n_steps: int,
    generator: torch.Generator | None,
    *,
    n_points: int = 2,
    rule: str = "trapezoid",
    score: Tensor | None = None,
) -> tuple[Tensor, float | None]:
    """Run ``n_steps`` of ``sampler`` on ``energy`` at noise level σ from ``x`` (VE);
    ``score``: the score at ``x`` where the caller has it already (the snr step-size rule
    evaluates it), so that the chains start without evaluating the model there again.

    A sampler with a Metropolis test on a score-only energy gets segment-integral energies
    (:mod:`ebmflow_diffusers.segment`): MALA and HMC, which compare only the current and the
    final energy of a step, integrate from the current state along the points the step
    evaluates; other samplers (parallel tempering) get a :class:`PathEnergy` whose reference
    is each chain's starting point at this level. Returns (positions, acceptance rate).
    """
    if not (sampler.needs_energy and not energy.has_energy):
        if type(sampler).continue_run is not ebmflow.Sampler.continue_run:
            result = sampler.run(energy, x, n_steps, sigma=sigma, generator=generator)
            return result.samples, result.diagnostics.get("acceptance_rate")
        # Sampler.run's own loop, less the energy trace and diagnostics it builds for a
        # caller that reads them: a corrector pays that at every level for a step or two
        start = energy if score is None or energy.has_energy else _KnownScore(energy, x, score)
        state = sampler.init(start, x, sigma)
        state, rate = _steps(sampler, lambda current: energy, state, n_steps, generator)
        return state.x, rate
    path = PathEnergy(energy, n_points=n_points, rule=rule)
    if isinstance(sampler, (ebmflow.MALA, ebmflow.HMC)):
        zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        state = sampler.init(path.anchored(x, zeros, score), x, sigma)
        state, rate = _steps(
            sampler,
            lambda current: path.anchored(current.x, current.energy, current.score),
            state,
            n_steps,
            generator,
        )
        return state.x, rate
    path = PathEnergy(energy, n_points=n_points, rule=rule, reference=x)
    result = sampler.run(path, x, n_steps, sigma=sigma, generator=generator)
    return result.samples, result.diagnostics.get("acceptance_rate")


def _steps(
    sampler: ebmflow.Sampler,
    energy_at: Callable[[ebmflow.SamplerState], ebmflow.Energy],
    state: ebmflow.SamplerState,
    n_steps: int,
    generator: torch.Generator | None,
) -> tuple[ebmflow.SamplerState, float | None]:
    """``n_steps`` steps from ``state``, each on ``energy_at(state)``; returns the last state
    and the mean acceptance probability over steps and chains (``None`` without a test)."""
    accept: Tensor | None = None
    for _ in range(n_steps):
        state = sampler.step_and_adapt(energy_at(state), state, generator)
        if state.accept_prob is not None:
            prob = state.accept_prob.double()
            accept = prob if accept is None else accept + prob
    return state, (None if accept is None else float(accept.mean()) / n_steps)


class _KnownScore(ebmflow.Energy):
    """A score-only ``energy`` whose score at the tensor ``x`` is known: a sampler's ``init``
    there reads it instead of calling the model; anywhere else it asks ``energy``."""

    has_energy = False

    def __init__(self, energy: ebmflow.Energy, x: Tensor, score: Tensor) -> None:
        super().__init__()
        self.energy = energy
        self.event_shape = energy.event_shape
        self.noise_conditional = energy.noise_conditional
        self.__dict__.update(_x=x, _score=score)  # not registered: plain tensors

    def energy_and_score(self, x, sigma=None, *, create_graph=False):
        if x is self._x and not create_graph:
            return None, self._score
        return self.energy.energy_and_score(x, sigma, create_graph=create_graph)

    def score(self, x: Tensor, sigma=None) -> Tensor:
        return self.energy_and_score(x, sigma)[1]
