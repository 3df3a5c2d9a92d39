"""Step-size warm-up, kept apart from the kernels it tunes (as BlackJAX separates adaptation
from its kernels).

A kernel's ``step`` reads its step size ε from the state (``state.extras["log_step_size"]``)
and never changes it, so ``step`` is one fixed Markov transition. A warm-up routine updates
that parameter *between* steps, from the acceptance of the step just taken; a run applies it
(:meth:`ebmflow.Sampler.step_and_adapt`) during its first ``n_steps`` steps only, and the chain
is a valid MCMC chain from then on.

:class:`StepSizeAdaptation` is the stochastic-approximation (Robbins–Monro) rule: after step
t (counted from 0),

    log ε ← log ε + (t + 1)^(−κ) · (ᾱₜ − δ)

with ᾱₜ the acceptance probability of step t averaged over the chains, δ the target
acceptance and κ = 0.6. Any Metropolis-adjusted kernel that keeps its step size in the state
under ``key`` can use it (HMC does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ebmflow.samplers.base import SamplerState


@dataclass(frozen=True)
class StepSizeAdaptation:
    """Warm-up of a kernel's step size toward ``target_accept`` (module docstring).

    Attributes:
        n_steps: the warm-up length: steps 0 … ``n_steps`` − 1 of a run are adapted after.
        target_accept: δ, the acceptance probability aimed for, in (0, 1).
        decay: κ, the exponent of the gain (t + 1)^(−κ).
        key: where the kernel keeps log ε in ``state.extras``.
    """

    n_steps: int
    target_accept: float
    decay: float = 0.6
    key: str = "log_step_size"

    def init(self, state: SamplerState, step_size: float) -> SamplerState:
        """``state`` with log ε = log ``step_size`` (float64, so that many small updates
        do not round away) under ``key``."""
        log_eps = torch.tensor(math.log(step_size), dtype=torch.float64)
        return state.replace(extras={**state.extras, self.key: log_eps})

    def update(self, state: SamplerState) -> SamplerState:
        """``state`` after one more warm-up update, from the acceptance of the step that
        produced it (step t = ``state.step`` − 1); unchanged once t ≥ ``n_steps``."""
        t = state.step - 1
        if t < 0 or t >= self.n_steps or state.accept_prob is None:
            return state
        gain = (t + 1) ** -self.decay
        log_eps = state.extras[self.key] + gain * (
            float(state.accept_prob.mean()) - self.target_accept
        )
        return state.replace(extras={**state.extras, self.key: log_eps})

    def step_size(self, state: SamplerState) -> float:
        """The step size ε that ``state`` holds under ``key``."""
        return math.exp(float(state.extras[self.key]))
