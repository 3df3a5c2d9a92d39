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
from collections.abc import Mapping
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
    factory = sampler_factory(name, host)
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
    return host.create("sampler", name, **kwargs)


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
) -> tuple[Tensor, float | None]:
    """Run ``n_steps`` of ``sampler`` on ``energy`` at noise level σ from ``x`` (VE).

    A sampler with a Metropolis test on a score-only energy gets segment-integral energies
    (:mod:`ebmflow_diffusers.segment`): MALA and HMC, which compare only the current and the
    final energy of a step, integrate from the current state along the points the step
    evaluates; other samplers (parallel tempering) get a :class:`PathEnergy` whose reference
    is each chain's starting point at this level. Returns (positions, acceptance rate).
    """
    if not (sampler.needs_energy and not energy.has_energy):
        result = sampler.run(energy, x, n_steps, sigma=sigma, generator=generator)
        return result.samples, result.diagnostics.get("acceptance_rate")
    path = PathEnergy(energy, n_points=n_points, rule=rule)
    if isinstance(sampler, (ebmflow.MALA, ebmflow.HMC)):
        zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        state = sampler.init(path.anchored(x, zeros, None), x, sigma)
        accept = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for _ in range(n_steps):
            state = sampler.step_and_adapt(
                path.anchored(state.x, state.energy, state.score), state, generator
            )
            accept += state.accept_prob
        rate = float(accept.mean()) / n_steps if n_steps else None
        return state.x, rate
    path = PathEnergy(energy, n_points=n_points, rule=rule, reference=x)
    result = sampler.run(path, x, n_steps, sigma=sigma, generator=generator)
    return result.samples, result.diagnostics.get("acceptance_rate")
