"""The JEM objective (Grathwohl et al. 2020, "Your Classifier is Secretly an Energy Based
Model"): train a classifier f as the joint model log p(x, y) = f(x)[y] − log Z.

log p(x, y) = log p(y|x) + log p(x) is maximised term by term. For a data batch (xᵢ, yᵢ),
i = 1…B, perturbed by data noise x⁺ = x + σ_d ε (σ_d = ``data_noise``, JEM's 0.03):

- p(y|x), the classifier: the cross-entropy CE = −mean_i log softmax(f(x⁺ᵢ))[yᵢ];
- p(x) ∝ exp(−E(x)), E(x) = −logsumexp_y f(x)[y]: the contrastive estimate of
  −∇_θ log p(x), with negatives x⁻ from k steps of SGLD (any registered sampler) continuing
  chains kept in a replay buffer, as in persistent CD (Tieleman 2008):

      G = mean E(x⁺) − mean E(x⁻)   (x⁻ detached: no gradient flows through the chains)

The loss is

    L = w_c · CE + w_g · G + α · (mean E(x⁺)² + mean E(x⁻)²)

with w_c = ``clf_weight``, w_g = ``gen_weight`` and the optional energy regulariser α
(Du & Mordatch 2019; 0 in JEM). JEM draws the p(y|x) and p(x) batches separately; here one
batch serves both terms (the same expectation, one forward pass). ``mode="conditional"``
keeps only the CE term (a plain classifier trained with the same data noise: the baseline
JEM is compared with) and ``mode="generative"`` only G (and α), which needs no labels.

Negatives (``mode`` ``"joint"`` and ``"generative"``), per training step:

1. draw B chain starts from the replay buffer of C = ``capacity`` samples: a stored chain,
   or with probability ρ = ``reinit_prob`` (and always for an unwritten slot) a fresh draw
   of U[init_low, init_high]^d (:class:`ebmflow.ReplayBuffer`);
2. run k = ``k`` sampler steps on E(x). The default sampler is JEM's SGLD,

       x' = x + η ∇ₓ log p(x) + s ε = x − η ∇ₓE(x) + s ε,   ε ~ N(0, I),

   with step η = 1 and noise s = 0.01 (``langevin`` with ``step_size=1``,
   ``noise_scale=0.01``), which is not the √(2η) of an exact Langevin discretisation: the
   chains target a sharpened p(x)^(2η/s²) and act as a noisy optimiser, as in the paper;
3. write the chains back into the slots they came from.

The chains run through :func:`ebmflow.extend.run_chains`; with ULA (the default) the last
step evaluates nothing at the final positions: k gradient evaluations in x per training
step, as in a hand-written JEM loop, and one forward pass of the classifier on x⁺ and x⁻
together for the loss.

JEM's defaults: η = 1, s = 0.01, k = 20, C = 10 000, ρ = 0.05, p₀ = U[−1, 1]^d (data
scaled to [−1, 1]), σ_d = 0.03. The buffer is the submodule ``objective.buffer``, so its
chains are in ``state_dict()``, ``ebmflow.save(objective, ...)`` and Trainer checkpoints.

The objective has ``needs_labels = True`` (except in ``"generative"`` mode): the Trainer
passes ``batch = (x, y)``. Metrics: ``ce`` and ``accuracy`` (of the batch, on x⁺) when the
CE term is on; ``e_data``, ``e_neg``, ``energy_gap`` = mean E(x⁺) − mean E(x⁻), ``l2``
(when α > 0) and the sampler's ``acceptance_rate`` (Metropolis samplers) when G is on. A
non-finite loss, or one larger than ``max_loss`` in size, raises
:class:`ebmflow.EbmflowError`; nothing is replaced by a constant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import run_chains

#: accepted values of ``mode``: what the loss trains.
MODES = {
    "joint": "p(y|x) by cross-entropy and p(x) by SGLD negatives (JEM)",
    "conditional": "p(y|x) only: cross-entropy (a plain classifier, the baseline)",
    "generative": "p(x) only: the SGLD contrastive term (no labels needed)",
}

#: JEM's SGLD: step η = 1 and noise standard deviation 0.01 (not √(2η)).
DEFAULT_SAMPLER = {"name": "langevin", "step_size": 1.0, "noise_scale": 0.01}

_OWNER = "jem"


class JEM(ebmflow.Objective):
    """JEM: cross-entropy + SGLD contrastive divergence on a classifier energy.

    Args:
        sampler: the sampler of the negatives: an ``ebmflow.Sampler``, a registered name or
            a config dict; default JEM's SGLD, ``langevin`` with ``step_size=1.0`` and
            ``noise_scale=0.01``. In a run file it is the ``[sampler]`` table.
        k: sampler steps per training step (JEM: 20).
        event_shape: shape of one input, e.g. ``[1, 8, 8]`` (the buffer's shape); required
            unless ``mode="conditional"``.
        capacity: replay-buffer slots C (JEM: 10 000).
        reinit_prob: ρ, the probability of restarting a chain from p₀ (JEM: 0.05).
        init_low, init_high: p₀ = U[init_low, init_high]^d (JEM: [−1, 1], the data's range).
        data_noise: σ_d, standard deviation of Gaussian noise added to the data batch
            (JEM: 0.03); 0 for none.
        mode: ``"joint"`` (default), ``"conditional"`` (CE only) or ``"generative"``
            (p(x) only).
        clf_weight: w_c ≥ 0, the weight of the cross-entropy.
        gen_weight: w_g ≥ 0, the weight of the p(x) term.
        alpha: α ≥ 0, weight of the energy regulariser mean E(x⁺)² + mean E(x⁻)².
        max_loss: raise :class:`ebmflow.EbmflowError` when |L| exceeds this (JEM's
            divergence shows as finite energies running off to ±10⁸ and beyond, not as
            NaN; the reference code stops at 10⁸ too); ``None`` to never stop.
    """

    needs_labels = True

    def __init__(
        self,
        sampler: Any = None,
        k: int = 20,
        event_shape: Sequence[int] | None = None,
        capacity: int = 10000,
        reinit_prob: float = 0.05,
        init_low: float = -1.0,
        init_high: float = 1.0,
        data_noise: float = 0.03,
        mode: str = "joint",
        clf_weight: float = 1.0,
        gen_weight: float = 1.0,
        alpha: float = 0.0,
        max_loss: float | None = 1e8,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            accepted = "; ".join(f"{k!r}: {v}" for k, v in MODES.items())
            raise ebmflow.ConfigError(f"{_OWNER}: unknown mode {mode!r}; accepted: {accepted}")
        self.mode = mode
        self.needs_labels = mode != "generative"
        self.sampler = ebmflow.build_sampler(_OWNER, sampler, DEFAULT_SAMPLER)
        self.k = ebmflow.check_positive_int(_OWNER, "k", k)
        self.data_noise = ebmflow.check_positive(_OWNER, "data_noise", data_noise, allow_zero=True)
        self.clf_weight = ebmflow.check_positive(_OWNER, "clf_weight", clf_weight, allow_zero=True)
        self.gen_weight = ebmflow.check_positive(_OWNER, "gen_weight", gen_weight, allow_zero=True)
        self.alpha = ebmflow.check_positive(_OWNER, "alpha", alpha, allow_zero=True)
        self.max_loss = (
            None if max_loss is None else ebmflow.check_positive(_OWNER, "max_loss", max_loss)
        )
        self.buffer: ebmflow.ReplayBuffer | None = None
        if mode != "conditional":
            if event_shape is None:
                raise ebmflow.ConfigError(
                    f"{_OWNER}: mode={mode!r} keeps a replay buffer of negatives and needs "
                    "event_shape, the shape of one input, e.g. [1, 8, 8] for 8x8 digits"
                )
            try:
                self.buffer = ebmflow.ReplayBuffer(
                    capacity,
                    event_shape,
                    reinit_prob=reinit_prob,
                    init="uniform",
                    init_low=init_low,
                    init_high=init_high,
                )
            except ValueError as exc:
                raise ebmflow.ConfigError(
                    str(exc).replace("ReplayBuffer:", f"{_OWNER}:", 1)
                ) from None

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode!r}, sampler={self.sampler!r}, k={self.k}, "
            f"data_noise={self.data_noise}, alpha={self.alpha}"
        )

    # -- the loss ---------------------------------------------------------------------------

    def _split(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            x, y = batch
        elif isinstance(batch, Tensor) and not self.needs_labels:
            x, y = batch, None
        else:
            raise ebmflow.ConfigError(
                f"{_OWNER}: mode={self.mode!r} trains p(y|x) and needs labelled batches "
                f"(x, y); got {type(batch).__name__}. The Trainer passes (x, y) from a "
                "dataset with sample_with_labels (e.g. 'digits') or from data=(x, y)"
            )
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
            raise ebmflow.ConfigError(
                f"{_OWNER}: x must be a floating-point tensor (B, *event_shape)"
            )
        if y is not None and (
            not isinstance(y, Tensor) or y.shape != (x.shape[0],) or y.is_floating_point()
        ):
            got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, Tensor) else type(y).__name__
            raise ebmflow.ConfigError(
                f"{_OWNER}: y must be integer labels of shape ({x.shape[0]},), got {got}"
            )
        return x, y

    def _check_energy(self, energy: ebmflow.Energy, x: Tensor) -> None:
        if not callable(getattr(energy, "logits", None)):
            raise ebmflow.ConfigError(
                f"{_OWNER}: {type(energy).__name__} is not a classifier energy (it has no "
                "logits(x)); wrap the classifier network in ebmflow_jem.ClassifierEnergy or "
                "use the energies 'classifier-convnet' / 'classifier-mlp'"
            )
        if energy.noise_conditional:
            raise ebmflow.ConfigError(
                f"{_OWNER}: {type(energy).__name__} is noise-conditional; JEM trains a clean "
                "classifier energy"
            )
        if self.buffer is not None and tuple(x.shape[1:]) != self.buffer.event_shape:
            raise ebmflow.ConfigError(
                f"{_OWNER}: the batch has event shape {tuple(x.shape[1:])} but the replay "
                f"buffer holds {self.buffer.event_shape}; set event_shape="
                f"{list(x.shape[1:])}"
            )

    def negatives(
        self,
        energy: ebmflow.Energy,
        n: int,
        generator: torch.Generator | None = None,
        *,
        like: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``n`` negatives x⁻ (detached) from k sampler steps continuing buffer chains, which
        are written back; and the mean acceptance probability (``None`` for ULA)."""
        if self.buffer is None:
            raise ebmflow.ConfigError(f"{_OWNER}: mode='conditional' keeps no replay buffer")
        x0, slots = self.buffer.sample(n, generator)
        if like is not None:
            x0 = x0.to(device=like.device, dtype=like.dtype)
        # the loss runs the classifier on x⁻ with the data, so the last step need not
        # evaluate the energy there (ULA then skips it)
        chains = run_chains(
            self.sampler, energy, x0, self.k, generator=generator, evaluate_last=False
        )
        x_neg = chains.x.detach()
        self.buffer.update(slots, x_neg)
        return x_neg, chains.acceptance

    def forward(
        self, energy: ebmflow.Energy, batch: Any, *, generator: torch.Generator | None = None
    ) -> ebmflow.ObjectiveOutput:
        x, y = self._split(batch)
        self._check_energy(energy, x)
        x_pos = x.detach()
        if self.data_noise > 0:
            x_pos = x_pos + self.data_noise * ebmflow.gaussian_like(x_pos, generator)
        generative = self.mode != "conditional"
        classify = self.mode != "generative"
        acceptance = None
        b = x_pos.shape[0]
        if generative:
            x_neg, acceptance = self.negatives(energy, b, generator, like=x_pos)
            logits = energy.logits(torch.cat([x_pos, x_neg]))  # one forward for both
            logits_pos, logits_neg = logits[:b], logits[b:]
        else:
            logits_pos = energy.logits(x_pos)
        terms: dict[str, Tensor] = {}
        loss = logits_pos.new_zeros(())
        if classify and y is not None:  # _split demands labels whenever the mode classifies
            ce = torch.nn.functional.cross_entropy(logits_pos, y)
            loss = loss + self.clf_weight * ce
            terms["ce"] = ce
            terms["accuracy"] = (logits_pos.detach().argmax(-1) == y).to(ce.dtype).mean()
        if generative:
            e_pos = -torch.logsumexp(logits_pos, dim=-1)
            e_neg = -torch.logsumexp(logits_neg, dim=-1)
            mean_pos, mean_neg = e_pos.mean(), e_neg.mean()
            loss = loss + self.gen_weight * (mean_pos - mean_neg)
            terms["e_data"], terms["e_neg"] = mean_pos, mean_neg
            if self.alpha > 0:
                l2 = e_pos.square().mean() + e_neg.square().mean()
                loss = loss + self.alpha * l2
                terms["l2"] = l2
            if acceptance is not None:
                terms["acceptance_rate"] = acceptance.to(loss.dtype)
        values = torch.stack([loss.detach(), *(t.detach() for t in terms.values())]).tolist()
        if not math.isfinite(values[0]) or (
            self.max_loss is not None and abs(values[0]) > self.max_loss
        ):
            shown = ", ".join(f"{k} = {v:.4g}" for k, v in zip(terms, values[1:]))
            what = (
                "is not finite"
                if not math.isfinite(values[0])
                else f"exceeds max_loss = {self.max_loss:g} in size"
            )
            error = (
                ebmflow.NonFiniteLossError if not math.isfinite(values[0]) else ebmflow.EbmflowError
            )
            raise error(
                f"{_OWNER}: the loss {what} ({values[0]:.6g}; {shown}): the classifier "
                "energy diverged. Restart from an earlier checkpoint with a lower learning "
                f"rate or sampler step size, or set alpha > 0 (now {self.alpha}) to keep "
                "energies bounded"
            )
        metrics = dict(zip(terms, values[1:]))
        if generative:
            metrics["energy_gap"] = metrics["e_data"] - metrics["e_neg"]
        return ebmflow.ObjectiveOutput(loss, metrics)
