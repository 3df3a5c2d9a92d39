"""Contrastive divergence, CD-k (Hinton 2002, "Training Products of Experts by Minimizing
Contrastive Divergences").

The gradient of the log-likelihood of an energy-based model p_θ ∝ exp(−E_θ) is

    ∇_θ log p_θ(x) = −∇_θ E_θ(x) + E_{x′∼p_θ}[∇_θ E_θ(x′)].

CD-k replaces the model expectation by negative samples x⁻ = x_k: k steps of an MCMC
kernel (any registered sampler) started at the data x⁺ (plus optional noise of standard
deviation ``init_noise``). With the negatives held fixed (detached: no gradient flows
through the chain), the loss minimised is

    L = mean E_θ(x⁺) − mean E_θ(x⁻)                                              (CD)
      + α · (mean E_θ(x⁺)² + mean E_θ(x⁻)²)                                       (L2)
      + λ · mean E_θ̄(x_k)                                                          (KL)

whose θ-gradient is the negated CD estimate of the log-likelihood gradient, plus:

- (L2) the energy regulariser of Du & Mordatch 2019 ("Implicit Generation and
  Generalization in Energy-Based Models"), α = ``alpha``, which keeps the energies near
  zero so that they cannot drift without bound;
- (KL) the term of Du, Li, Tenenbaum & Mordatch 2021 ("Improved Contrastive Divergence
  Training of Energy-Based Models"), λ = ``kl_weight``: the gradient that the negatives
  carry through the *last* sampler step, with the energy's parameters frozen (θ̄) where
  the energy is evaluated at the result. Exactly: with x_{k−1} the chains before the last
  step and s_θ = −∇ₓE_θ, the last Langevin step is x_k = x_{k−1} + η s_θ(x_{k−1}) + √(2η) ξ;
  the term differentiates E_θ̄(x_k) through that step's drift only,

      ∇_θ (KL) = λ · mean_i ⟨∇ₓE_θ(x_k,i), η ∂s_θ(x_{k−1},i)/∂θ⟩,

  computed as λ · mean_i [E_θ(x_k,i) − ⟨s_θ(x_k,i), η (s_θ(x_{k−1},i) − sg s_θ(x_{k−1},i))⟩]
  (sg = stop-gradient), whose *value* is λ · mean E_θ(x⁻) exactly (the second term is zero)
  and whose gradient is the one above (s_θ(x_k) is the sampler's cached score, a
  constant). η = ``kl_step_size``, by default the sampler's ``step_size``. For ``langevin``
  this is the exact derivative of the last step; for other samplers (MALA, HMC) the last
  step is not a plain drift, and the term uses the ULA drift from x_{k−1} with that η as a
  surrogate of it. The paper's entropy term (nearest-neighbour estimate) is not included.

The chains run through :func:`ebmflow.extend.run_chains` (k calls of the sampler's
``step_and_adapt``, the chains at its target); with ULA and no KL term the last step does
not evaluate the energy at the negatives, which the loss evaluates batched with the data.

Both objectives report ``energy_gap`` (mean E(x⁺) − mean E(x⁻)), ``e_data``, ``e_neg``,
``l2`` and ``kl`` (the unweighted terms, when their weight is non-zero) and the sampler's
``acceptance_rate`` when it reports one. A non-finite loss raises
:class:`ebmflow.EbmflowError`; nothing is replaced by a constant.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import run_chains


def check_weight(owner: str, name: str, value: Any) -> float:
    return ebmflow.check_positive(owner, name, value, allow_zero=True)


class ContrastiveObjective(ebmflow.Objective):
    """The loss shared by ``cd`` and ``pcd`` (module docstring); subclasses say where the
    chains start (:meth:`chain_starts`) and what happens to them after (:meth:`chains_done`),
    and call :meth:`_setup` from their ``__init__``."""

    owner = "contrastive objective"

    def _setup(
        self, sampler: Any, k: int, alpha: float, kl_weight: float, kl_step_size: float | None
    ) -> None:
        owner = self.owner
        self.sampler = ebmflow.build_sampler(owner, sampler)
        self.k = ebmflow.check_positive_int(owner, "k", k)
        self.alpha = check_weight(owner, "alpha", alpha)
        self.kl_weight = check_weight(owner, "kl_weight", kl_weight)
        if self.kl_weight > 0 and (
            type(self.sampler).target_state is not ebmflow.Sampler.target_state
        ):
            raise ebmflow.ConfigError(
                f"{owner}: kl_weight={kl_weight!r} differentiates through the last step of "
                f"one chain per sample, but {self.sampler.name!r} runs an ensemble (its "
                "state holds more chains than the batch); use kl_weight=0 with it, or a "
                "sampler such as 'langevin' or 'mala'"
            )
        if kl_step_size is None:
            kl_step_size = getattr(self.sampler, "step_size", None)
            if kl_step_size is None and self.kl_weight > 0:
                raise ebmflow.ConfigError(
                    f"{owner}: kl_weight={kl_weight!r} needs kl_step_size (the η of the "
                    f"last step's drift), and sampler {self.sampler.name!r} has no "
                    "step_size to take it from; pass kl_step_size, a number > 0"
                )
        self.kl_step_size = (
            None
            if kl_step_size is None
            else ebmflow.check_positive(owner, "kl_step_size", kl_step_size)
        )

    def extra_repr(self) -> str:
        return (
            f"sampler={self.sampler!r}, k={self.k}, alpha={self.alpha}, kl_weight={self.kl_weight}"
        )

    # -- the steps a subclass may change ----------------------------------------------------

    def chain_starts(
        self, batch: Tensor, generator: torch.Generator | None, energy: Any = None
    ) -> tuple[Tensor, Any]:
        """Where the negative chains start (given the detached data batch and the energy
        being trained), and what :meth:`chains_done` needs back."""
        raise NotImplementedError

    def chains_done(self, x: Tensor, token: Any, generator: torch.Generator | None) -> None:
        """Called with the negatives after the chains ran (PCD writes them back)."""

    # -- the loss ---------------------------------------------------------------------------

    def forward(
        self, energy: ebmflow.Energy, batch: Tensor, *, generator: torch.Generator | None = None
    ) -> ebmflow.ObjectiveOutput:
        if energy.noise_conditional:
            raise ebmflow.ConfigError(
                f"{self.owner}: {type(energy).__name__} is noise-conditional; contrastive "
                "divergence trains a clean energy E(x) (for E(x, σ) use a denoising score "
                "matching objective such as 'dsm' or 'multiscale-dsm')"
            )
        data = batch.detach()
        x0, token = self.chain_starts(data, generator, energy)
        track = self.kl_weight > 0
        # the loss evaluates E(x⁻) itself; only the KL term reads the score there
        chains = run_chains(
            self.sampler, energy, x0, self.k, generator=generator, evaluate_last=track
        )
        x_neg = chains.x.detach()
        self.chains_done(x_neg, token, generator)

        # E(x⁺) and E(x⁻) with their graphs in θ, from one batched forward pass
        energies = energy(torch.cat([batch, x_neg]))
        e_data, e_neg = energies[: batch.shape[0]], energies[batch.shape[0] :]
        mean_data, mean_neg = e_data.mean(), e_neg.mean()
        loss = mean_data - mean_neg
        terms: dict[str, Tensor] = {"e_data": mean_data, "e_neg": mean_neg}
        if self.alpha > 0:
            l2 = e_data.square().mean() + e_neg.square().mean()
            loss = loss + self.alpha * l2
            terms["l2"] = l2
        if track:
            kl = self._kl_term(energy, chains.previous, chains.state, e_neg)
            loss = loss + self.kl_weight * kl
            terms["kl"] = kl

        if chains.acceptance is not None:
            terms["acceptance_rate"] = chains.acceptance.to(loss.dtype)
        values = torch.stack([loss.detach(), *(t.detach() for t in terms.values())]).tolist()
        if not math.isfinite(values[0]):
            shown = ", ".join(f"{k} = {v:.4g}" for k, v in zip(terms, values[1:]))
            raise ebmflow.NonFiniteLossError(
                f"{self.owner}: the loss is not finite ({values[0]}; {shown}): the energy "
                "diverged. Lower the learning rate or the sampler's step size, or raise "
                f"alpha (now {self.alpha}) to keep energies bounded"
            )
        metrics = dict(zip(terms, values[1:]))
        metrics["energy_gap"] = metrics["e_data"] - metrics["e_neg"]
        return ebmflow.ObjectiveOutput(loss, metrics)

    def _kl_term(
        self,
        energy: ebmflow.Energy,
        x_prev: Tensor,
        last: ebmflow.SamplerState,
        e_neg: Tensor,
    ) -> Tensor:
        """mean_i [E(x_k,i) − ⟨s(x_k,i), η (s_θ(x_{k−1},i) − sg s_θ(x_{k−1},i))⟩]: value
        mean E(x⁻), gradient through the last step's drift (module docstring)."""
        _, s_prev = energy.energy_and_score(x_prev.detach(), last.sigma, create_graph=True)
        delta = (s_prev - s_prev.detach()).mul(self.kl_step_size)
        s_last = last.score.detach().to(delta.dtype)
        inner = torch.linalg.vecdot(s_last.flatten(1), delta.flatten(1))
        return (e_neg.detach() - inner).mean()


class ContrastiveDivergence(ContrastiveObjective):
    """CD-k: negatives from k sampler steps started at the data batch.

    Args:
        sampler: any registered sampler, as an ``ebmflow.Sampler``, a name or a config dict
            (default: ``langevin`` with its default step size).
        k: sampler steps per training step, ≥ 1.
        init_noise: standard deviation of Gaussian noise added to the data to start the
            chains, ≥ 0.
        alpha: weight α ≥ 0 of the energy regulariser α · (mean E(x⁺)² + mean E(x⁻)²).
        kl_weight: weight λ ≥ 0 of the KL term through the last sampler step.
        kl_step_size: η of the KL term; default: the sampler's ``step_size`` (required
            when λ > 0 and the sampler has none).
    """

    owner = "cd"

    def __init__(
        self,
        sampler: Any = None,
        k: int = 1,
        init_noise: float = 0.0,
        alpha: float = 0.0,
        kl_weight: float = 0.0,
        kl_step_size: float | None = None,
    ) -> None:
        super().__init__()
        self._setup(sampler, k, alpha, kl_weight, kl_step_size)
        self.init_noise = check_weight(self.owner, "init_noise", init_noise)

    def chain_starts(
        self, batch: Tensor, generator: torch.Generator | None, energy: Any = None
    ) -> tuple[Tensor, Any]:
        """The data batch, plus N(0, init_noise²) noise when ``init_noise`` > 0."""
        if self.init_noise > 0:
            return batch + self.init_noise * ebmflow.gaussian_like(batch, generator), None
        return batch, None
