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
from ebmflow.extend import score_seed


def check_weight(owner: str, name: str, value: Any) -> float:
    return ebmflow.check_positive(owner, name, value, allow_zero=True)


class _GraphKeeper(ebmflow.Energy):
    """The energy as the sampler sees it, keeping the θ-graph of two evaluations.

    A sampler evaluates E and ∇ₓE at the chain starts and at every new position; a CD loss
    needs E_θ(x⁺) and E_θ(x⁻) with their graphs in θ. Computing ∇ₓE with
    ``retain_graph=True`` keeps an evaluation's graph, so the loss can back-propagate
    into θ through the first evaluation (``keep_first``: when the chains start at the data,
    so the first evaluation is E(x⁺)) and the last one (``last``, set by the caller for
    its last step: when the final positions are where it was made, for MH samplers when
    the last proposals were all accepted) instead of running the network on them again;
    the other evaluations free their graphs at once. With ``skip_last`` (a sampler that
    does not read the new energy and score, ``Sampler.step_reads_new_score`` false: ULA)
    the last step evaluates nothing; the loss then runs the network once on the final
    positions (with the data, for PCD). A CD-k step with ULA costs k forward+backward
    passes in x, one forward pass and one backward pass in θ, as a hand-written loop does.
    The gradients are those of plain evaluations; parameters' ``.grad`` is not touched
    while sampling (``torch.autograd.grad`` differentiates in x only).
    """

    def __init__(self, inner: ebmflow.Energy, keep_first: bool, skip_last: bool) -> None:
        super().__init__()
        self.inner = inner
        self.keep_first = keep_first
        self.skip_last = skip_last
        self.event_shape = inner.event_shape
        self.noise_conditional = inner.noise_conditional
        self.has_energy = inner.has_energy
        # (x, E_θ(x)) of the first and the last evaluation; a plain dict, so recording
        # costs no nn.Module attribute bookkeeping
        self.records: dict[str, tuple[Tensor, Tensor]] = {}
        # set by the caller for its last step: keep that evaluation's graph (the final
        # positions may be where it was made), or with skip_last evaluate nothing there
        self.last = False

    def forward(self, x: Tensor, sigma: Any = None) -> Tensor:
        return self.inner(x, sigma)

    def energy_and_score(
        self, x: Tensor, sigma: Any = None, *, create_graph: bool = False
    ) -> tuple[Tensor | None, Tensor]:
        if create_graph or not self.has_energy:
            return self.inner.energy_and_score(x, sigma, create_graph=create_graph)
        if self.last and self.skip_last:
            # the caller's last step with a sampler that reads neither this energy nor this
            # score: nothing is evaluated (the state's energy and score are left empty) and
            # the loss evaluates E_θ at the final positions, batched with the data
            return None, None
        records = self.records
        keep_first = self.keep_first and "first" not in records
        with torch.enable_grad():
            inp = x.detach().requires_grad_(True)
            energy = self.inner(inp, sigma)
            # seeding the backward pass with −1 per sample yields the score −∇ₓE directly;
            # only the graphs the loss may reuse outlive the gradient
            (score,) = torch.autograd.grad(energy, inp, score_seed(energy),
                                           retain_graph=keep_first or self.last)
        if keep_first:
            records["first"] = (x, energy)
        if self.last:
            records["last"] = (x, energy)
        return energy.detach(), score

    @staticmethod
    def _match(record: tuple[Tensor, Tensor] | None, x: Tensor) -> Tensor | None:
        if record is None:
            return None
        where, energy = record
        if where is x or (where.shape == x.shape and torch.equal(where, x)):
            return energy
        return None

    def first_energy(self, x: Tensor) -> Tensor | None:
        """E_θ(x) with its graph if the first evaluation was at ``x``, else ``None``."""
        return self._match(self.records.get("first"), x)

    def last_energy(self, x: Tensor) -> Tensor | None:
        """E_θ(x) with its graph if the last evaluation was at ``x``, else ``None``."""
        return self._match(self.records.get("last"), x)


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
            None if kl_step_size is None
            else ebmflow.check_positive(owner, "kl_step_size", kl_step_size)
        )

    def extra_repr(self) -> str:
        return f"sampler={self.sampler!r}, k={self.k}, alpha={self.alpha}, " \
               f"kl_weight={self.kl_weight}"

    # -- the steps a subclass may change ----------------------------------------------------

    def chain_starts(
        self, batch: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Any]:
        """Where the negative chains start (given the detached data batch), and what
        :meth:`chains_done` needs back."""
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
        x0, token = self.chain_starts(data, generator)
        track = self.kl_weight > 0
        # after the last ULA-type step nothing reads the energy or score at the final
        # positions (the KL term does), so they are not evaluated there: k x-gradients in
        # all, and the loss's forward pass on the negatives, as a hand loop takes
        skip_last = not track and not self.sampler.step_reads_new_score
        recorder = _GraphKeeper(energy, keep_first=x0 is data, skip_last=skip_last)
        # k transitions of the sampler's BlackJAX-style init/step (what Sampler.run does,
        # without the energy trace it keeps for diagnostics)
        state = self.sampler.init(recorder, x0)
        x_prev, accepted = x0, None
        for i in range(self.k):
            x_prev = state.x
            recorder.last = i == self.k - 1
            state = self.sampler.step_and_adapt(recorder, state, generator)
            prob = self.sampler.target_state(state).accept_prob
            if prob is not None:
                accepted = prob.detach() if accepted is None else accepted + prob.detach()
        # the chains at the target (parallel tempering's β = 1 replica, not the hot ones)
        state = self.sampler.target_state(state)
        x_neg = state.x.detach()
        self.chains_done(x_neg, token, generator)

        # E(x⁺) and E(x⁻) with their graphs in θ: reuse the sampler's evaluations at the
        # chain starts (when they are the data) and at the final positions where it made
        # them, and evaluate the network on the rest (one batched forward when both).
        e_data = recorder.first_energy(data)
        e_neg = recorder.last_energy(x_neg)
        if e_data is None and e_neg is None:
            energies = energy(torch.cat([batch, x_neg]))
            e_data, e_neg = energies[: batch.shape[0]], energies[batch.shape[0]:]
        elif e_data is None:
            e_data = energy(batch)
        elif e_neg is None:
            e_neg = energy(x_neg)
        del recorder  # frees the graphs kept for intermediate steps
        mean_data, mean_neg = e_data.mean(), e_neg.mean()
        loss = mean_data - mean_neg
        terms: dict[str, Tensor] = {"e_data": mean_data, "e_neg": mean_neg}
        if self.alpha > 0:
            l2 = e_data.square().mean() + e_neg.square().mean()
            loss = loss + self.alpha * l2
            terms["l2"] = l2
        if track:
            kl = self._kl_term(energy, x_prev, state, e_neg)
            loss = loss + self.kl_weight * kl
            terms["kl"] = kl

        if accepted is not None:
            terms["acceptance_rate"] = (accepted.mean() / self.k).to(loss.dtype)
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
        self, batch: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Any]:
        """The data batch, plus N(0, init_noise²) noise when ``init_noise`` > 0."""
        if self.init_noise > 0:
            return batch + self.init_noise * ebmflow.gaussian_like(batch, generator), None
        return batch, None
