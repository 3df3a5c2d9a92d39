"""What the discrete samplers share: starting chains on binary or one-hot states.

A :class:`DiscreteSampler` accepts only energies whose ``event_space`` is ``"binary"`` or
``"categorical"`` (``ebmflow.Sampler.check_compatible`` refuses the others, and the core's
continuous samplers refuse these energies), checks that the starts are states of that space,
and reports the energy evaluations each chain has cost as ``energy_evaluations`` in the
diagnostics of :meth:`~ebmflow.Sampler.run` (``state.step`` times the sampler's
:meth:`~DiscreteSampler.evaluations_per_step`), the unit in which samplers of discrete
spaces are compared (an evaluation with its gradient counts once).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow_discrete.spaces import DISCRETE_SPACES, check_states


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

    def evaluations_per_step(self, state: ebmflow.SamplerState) -> int:
        """Energy evaluations per chain that one step costs (one, unless overridden)."""
        return 1

    def diagnostics(self, state: ebmflow.SamplerState) -> dict[str, Any]:
        return {"energy_evaluations": state.step * self.evaluations_per_step(state)}
