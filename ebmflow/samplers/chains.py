"""k sampler steps from a start, as objectives that draw negative samples run them.

Contrastive divergence (``cd``, ``pcd``) and JEM draw their negatives the same way: start
chains at x₀ (the data, or replay-buffer samples), take k steps of any sampler, and keep the
chains at the target. :func:`run_chains` is that loop, once for all of them: it calls
:meth:`~ebmflow.Sampler.step_and_adapt`, so a sampler's warm-up (HMC's step size) works
inside an objective as in a run, and it takes the chains from
:meth:`~ebmflow.Sampler.target_state`, so ensemble samplers (parallel tempering) give their
β = 1 chains.

The chains run with the energy's parameters frozen (:mod:`ebmflow.samplers.frozen`): the
loss that follows differentiates the energy at the chains' ends in θ, the chains
themselves only in x.

One saving keeps an objective's iteration as cheap as a hand-written loop: with
``evaluate_last=False`` the caller says it does not read the energy and score at the final
positions (it evaluates the network there itself, batched with the data). With the core ULA
sampler (:class:`~ebmflow.samplers.langevin.Langevin` exactly, whose step reads only the
score at the current position and caches the new one for the next step) the last step then
moves the chains (:meth:`~ebmflow.samplers.langevin.Langevin.propose`) without evaluating
anything there: k gradient evaluations in x for k steps instead of k + 1, which for CD-k
with small k is a large share of an iteration. The chains are the same as with the full
step. Other samplers read the new energy and score in their own step (a Metropolis test
does), so they always evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ebmflow.energy import Energy, Sigma
from ebmflow.samplers.base import Sampler, SamplerState, check_finite
from ebmflow.samplers.frozen import frozen_parameters
from ebmflow.samplers.langevin import Langevin
from ebmflow.validation import check_positive_int


@dataclass(frozen=True)
class Chains:
    """What :func:`run_chains` returns.

    Attributes:
        state: the final state at the target (``sampler.target_state``), one chain per
            start; its ``energy`` and ``score`` are ``None`` when the last step skipped
            evaluating them (``evaluate_last=False`` with ULA).
        previous: the target chains' positions before the last step, x_{k−1} (CD's KL term
            differentiates through the last step from there).
        acceptance: the acceptance probability of the target chains, averaged over the k
            steps and the chains (a 0-d tensor); ``None`` when the sampler reports none.
    """

    state: SamplerState
    previous: Tensor
    acceptance: Tensor | None = None

    @property
    def x(self) -> Tensor:
        """The final positions at the target, ``(B, *event_shape)``."""
        return self.state.x


def run_chains(
    sampler: Sampler,
    energy: Energy,
    x0: Tensor,
    n_steps: int,
    *,
    sigma: Sigma = None,
    generator: torch.Generator | None = None,
    evaluate_last: bool = True,
) -> Chains:
    """``n_steps`` steps of ``sampler`` on ``energy`` from ``x0`` (module docstring).

    Args:
        sampler: any :class:`~ebmflow.Sampler`; each step is ``sampler.step_and_adapt``.
        x0: the starts, ``(B, *event_shape)``; the result has one chain per start.
        n_steps: k ≥ 1.
        sigma: noise level for noise-conditional energies.
        generator: the only source of randomness.
        evaluate_last: whether the result's state must hold the energy and score at the
            final positions; ``False`` lets ULA skip evaluating them.
    """
    n_steps = check_positive_int(sampler.name, "n_steps", n_steps)
    # the parameters' gradients come from the loss on the chains' ends, never from the
    # chains themselves (see ebmflow.samplers.frozen)
    with frozen_parameters(energy):
        state = sampler.init(energy, x0, sigma)
        # the last step moves without evaluating only for the core ULA itself: a subclass may
        # read the new score in its step or warm-up
        ula = sampler if not evaluate_last and type(sampler) is Langevin else None
        accepted = None
        target = sampler.target_state(state)
        for i in range(n_steps):
            previous = target.x
            if ula is not None and i == n_steps - 1:
                state = sampler.adapt(_move_only(ula, state, generator))
            else:
                state = sampler.step_and_adapt(energy, state, generator)
            target = sampler.target_state(state)
            if target.accept_prob is not None:
                prob = target.accept_prob.detach()
                accepted = prob if accepted is None else accepted + prob
    acceptance = None if accepted is None else accepted.mean() / n_steps
    return Chains(target, previous, acceptance)


def _move_only(sampler: Langevin, state: SamplerState, generator: Any) -> SamplerState:
    """ULA's step without the evaluation at the new positions (nothing reads it)."""
    x = sampler.propose(state, generator)
    check_finite(sampler.name, state.step, None, x)
    # the one state whose score is empty, as Chains.state documents: nothing reads it
    return SamplerState(x, None, None, state.sigma, state.step + 1)  # type: ignore[arg-type]
