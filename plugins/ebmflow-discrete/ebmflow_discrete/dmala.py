"""Discrete Langevin: DMALA and DULA (Zhang, Liu & Liu 2022, "A Langevin-like Sampler for
Discrete Distributions").

With f = −E, its gradient s = ∇ₓf (cached in the state) and step size α, the proposal
changes all sites at once, independently given x:

    q(x′ | x) ∝ exp(½ s(x)ᵀ(x′ − x) − ‖x′ − x‖² / (2α)),

which factorises over sites:

- binary: bit i flips with probability σ(½ s_i(x)(1 − 2x_i) − 1/(2α));
- categorical: site n moves to category c with probability
  softmax_c(½ (s_{n,c} − ⟨x_n, s_n⟩) − [c ≠ current]/α)  (‖e_c − e_cur‖² = 2).

DMALA (``adjust=True``) accepts x′ with probability
min(1, exp(f(x′) − f(x)) q(x | x′) / q(x′ | x)); DULA (``adjust=False``) always moves
(biased for α > 0, cheaper by nothing: both evaluate the energy and its gradient once per
step, at x′).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

import ebmflow
from ebmflow_discrete.discrete_sampler import DiscreteSampler
from ebmflow_discrete.spaces import flat_sites, gumbel_like


class DiscreteLangevin(DiscreteSampler):
    """DMALA, or DULA with ``adjust=False`` (module docstring).

    Args:
        step_size: α > 0; larger α changes more sites per step.
        adjust: Metropolis–Hastings correction (DMALA) or none (DULA).
    """

    component = "dmala"

    def __init__(self, step_size: float = 0.2, adjust: bool = True) -> None:
        self.step_size = ebmflow.check_positive("dmala", "step_size", step_size)
        if not isinstance(adjust, bool):
            raise ebmflow.ConfigError(f"dmala: adjust must be true or false, got {adjust!r}")
        self.adjust = adjust

    def _binary_logits(self, x: Tensor, score: Tensor) -> Tensor:
        return (1.0 - 2.0 * x).mul_(score).mul_(0.5).sub_(0.5 / self.step_size)

    def _categorical_logits(self, x: Tensor, score: Tensor) -> Tensor:
        current = (x * score).sum(dim=-1, keepdim=True)
        return (score - current).mul_(0.5).sub_((1.0 - x) / self.step_size)

    def _logits(self, space: str, x: Tensor, score: Tensor) -> Tensor:
        if space == "binary":
            return self._binary_logits(x, score)
        return self._categorical_logits(x, score)

    @staticmethod
    def _log_q(space: str, logits: Tensor, target: Tensor) -> Tensor:
        """log q(target | x), (B,), from the proposal's ``logits`` at x: ``target`` are the
        flips (binary) or the one-hot categories (categorical)."""
        if space == "binary":  # log σ(l) where the bit flips, log σ(−l) where it stays
            return F.logsigmoid(torch.where(target, logits, -logits)).sum(1)
        return (torch.log_softmax(logits, dim=-1) * target).sum(dim=(1, 2))

    def step(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None = None,
    ) -> ebmflow.SamplerState:
        space, x, _, score = self.flat_inputs(energy, state)
        logits = self._logits(space, x, score)
        if space == "binary":
            u = torch.rand(logits.shape, generator=generator, device=x.device, dtype=x.dtype)
            forward = u < torch.sigmoid(logits)
            proposal = torch.where(forward, 1.0 - x, x)
            backward = forward
        else:
            category = torch.argmax(logits + gumbel_like(logits, generator), dim=-1)
            proposal = F.one_hot(category, x.shape[-1]).to(x.dtype)
            forward, backward = proposal, x
        x_new = proposal.view_as(state.x)
        e_new, s_new = energy.energy_and_score(x_new)
        assert e_new is not None  # check_compatible refused score-only energies
        if not self.adjust:
            ebmflow.check_finite(self.name, state.step + 1, e_new, x_new)
            return state.replace(
                x=x_new,
                energy=e_new,
                score=s_new,
                step=state.step + 1,
            )
        log_fwd = self._log_q(space, logits, forward)
        logits_back = self._logits(space, proposal, flat_sites(space, s_new))
        log_back = self._log_q(space, logits_back, backward)
        return self.metropolis_update(state, x_new, e_new, s_new, log_back, log_fwd, generator)
