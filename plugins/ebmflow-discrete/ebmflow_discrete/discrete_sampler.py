"""What the discrete samplers share: starting chains on binary or one-hot states.

A :class:`DiscreteSampler` accepts only energies whose ``event_space`` is ``"binary"`` or
``"categorical"`` (``ebmflow.Sampler.check_compatible`` refuses the others, and the core's
continuous samplers refuse these energies), checks that the starts are states of that space,
and reports the energy evaluations each chain has cost as ``energy_evaluations`` in the
diagnostics of :meth:`~ebmflow.Sampler.run` (``state.step`` times the sampler's
:meth:`~DiscreteSampler.evaluations_per_step`), the unit in which samplers of discrete
spaces are compared (an evaluation with its gradient counts once). The gradient-informed
samplers (``gwg``, ``dmala``) share the start and the end of their step:
:meth:`~DiscreteSampler.flat_inputs` and :meth:`~DiscreteSampler.metropolis_update`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow_discrete.spaces import DISCRETE_SPACES, check_states, flat_sites


class DiscreteSampler(ebmflow.Sampler):
    """Base class of samplers over binary and one-hot categorical states.

    Subclasses set ``component`` (their registered name) and ``uses_score`` (whether
    steps read the cached score −∇ₓE; Gibbs does not, and keeps ``state.score = None``).
    """

    event_spaces: tuple[str, ...] = DISCRETE_SPACES
    needs_energy = True
    component = "discrete sampler"
    uses_score = True

    @property
    def name(self) -> str:
        return self.component

    def init(self, energy: ebmflow.Energy, x: Tensor, sigma: Any = None) -> ebmflow.SamplerState:
        self.check_compatible(energy, x)
        if sigma is not None or energy.noise_conditional:
            raise ebmflow.ConfigError(
                f"{self.name}: discrete energies are clean (sigma=None); got sigma={sigma!r} "
                f"for {type(energy).__name__}"
            )
        check_states(f"{self.name}: the starts for {type(energy).__name__}", energy.event_space, x)
        x = x.detach()
        if self.uses_score:
            e, s = energy.energy_and_score(x)
        else:
            with torch.no_grad():
                e, s = energy(x), None
        ebmflow.check_finite(self.name, 0, e, x)
        # Gibbs keeps no score: nothing it runs reads one (SamplerState documents a tensor)
        return ebmflow.SamplerState(x, e, s, None)

    def flat_inputs(
        self, energy: ebmflow.Energy, state: ebmflow.SamplerState
    ) -> tuple[str, Tensor, Tensor, Tensor]:
        """What a gradient-informed step starts from: the energy's event space, the state's
        positions and cached score as sites (:func:`~ebmflow_discrete.spaces.flat_sites`,
        views) and its cached energies. Raises :class:`~ebmflow.ConfigError` naming the
        sampler if the state has no energy or no score."""
        space = energy.event_space
        e, score = state.energy, state.score
        if e is None or score is None:
            raise ebmflow.ConfigError(f"{self.name}: the state has no energy or score")
        return space, flat_sites(space, state.x), e, flat_sites(space, score)

    def metropolis_update(
        self,
        state: ebmflow.SamplerState,
        x_new: Tensor,
        e_new: Tensor,
        s_new: Tensor,
        log_q_back: Tensor,
        log_q_forward: Tensor,
        generator: torch.Generator | None,
    ) -> ebmflow.SamplerState:
        """The next state after a Metropolis–Hastings test of the proposal ``x_new`` (with
        its energy and score) against ``state``: log α = E(x) − E(x′) + log q(x | x′) −
        log q(x′ | x), each chain keeping its current values where it rejects."""
        e = state.energy
        assert e is not None and state.score is not None  # flat_inputs checked both
        log_alpha = e - e_new + log_q_back - log_q_forward
        accept, prob = ebmflow.metropolis_accept(
            self.name, state.step + 1, log_alpha, e_new, generator
        )
        return state.replace(
            x=ebmflow.select(accept, x_new, state.x),
            energy=torch.where(accept, e_new, e),
            score=ebmflow.select(accept, s_new, state.score),
            step=state.step + 1,
            accept_prob=prob,
        )

    def evaluations_per_step(self, state: ebmflow.SamplerState) -> int:
        """Energy evaluations per chain that one step costs (one, unless overridden)."""
        return 1

    def diagnostics(self, state: ebmflow.SamplerState) -> dict[str, Any]:
        return {"energy_evaluations": state.step * self.evaluations_per_step(state)}
