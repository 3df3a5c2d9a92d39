"""Persistent contrastive divergence (Tieleman 2008, "Training Restricted Boltzmann Machines
using Approximations to the Likelihood Gradient").

Like CD-k (see :mod:`ebmflow_cd.cd` for the loss, the L2 regulariser and the KL term), but
the negative chains persist across training steps instead of restarting at the data: they
live in an :class:`ebmflow.ReplayBuffer` of ``capacity`` samples, as in IGEBM (Du &
Mordatch 2019) and JEM (Grathwohl et al. 2020). Each training step with a batch of B data
points

1. draws B chain starts from the buffer — each a stored sample, or with probability
   ρ = ``reinit_prob`` (and always for a slot not yet written) a fresh sample of the initial
   distribution p₀: uniform on [init_low, init_high]^d or N(0, init_std² I). With
   ``init_candidates`` = M > 1 a fresh start is one of M draws of p₀ picked with
   probability ∝ exp(−E(x)) (sampling-importance-resampling). Chains rarely cross between
   well-separated modes, so without it the buffer shares its chains among the modes by the
   volume of their basins under p₀ (a wide outer ring draws more than its share), and the
   model then learns weights that make up for that share. Resampled restarts share them by
   the model's mass instead;
2. runs k steps of the sampler from them; the results are the negatives x⁻;
3. writes x⁻ back: into the slots they were drawn from (``write_back="slots"``, persistent
   chains as in JEM) or appended as a stream under the buffer's ``replacement`` policy
   (``write_back="push"``, IGEBM's FIFO buffer, or reservoir sampling).

The buffer is a registered submodule (``objective.buffer``), so its samples and counters
are in ``objective.state_dict()`` and in ``ebmflow.save(objective, ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow_cd.cd import ContrastiveObjective

#: accepted values of ``init`` (the replay buffer's p₀; the last two for discrete energies).
INITS = ("uniform", "gaussian", "bernoulli", "one-hot")
#: accepted values of ``write_back``.
WRITE_BACKS = ("slots", "push")


class PersistentContrastiveDivergence(ContrastiveObjective):
    """PCD: negatives from k sampler steps continuing chains kept in a replay buffer.

    Args:
        sampler: any registered sampler, as an ``ebmflow.Sampler``, a name or a config dict
            (default: ``langevin`` with its default step size).
        k: sampler steps per training step, ≥ 1.
        event_shape: shape of one sample (the buffer's shape), e.g. ``[2]`` or ``[1, 8, 8]``.
        capacity: buffer slots, ≥ 1.
        reinit_prob: ρ ∈ [0, 1], the probability of restarting a chain from p₀.
        init: p₀, ``"uniform"`` on [init_low, init_high]^d or ``"gaussian"``
            N(0, init_std² I); for binary or one-hot energies (discrete samplers)
            ``"bernoulli"`` or ``"one-hot"``.
        init_low, init_high: the uniform box.
        init_std: the Gaussian's standard deviation.
        replacement: ``"fifo"`` or ``"reservoir"``, the buffer's policy for
            ``write_back="push"``.
        write_back: ``"slots"`` (chains go back where they came from) or ``"push"``.
        alpha: weight α ≥ 0 of the energy regulariser α · (mean E(x⁺)² + mean E(x⁻)²).
        kl_weight: weight λ ≥ 0 of the KL term through the last sampler step.
        kl_step_size: η of the KL term; default: the sampler's ``step_size``.
        init_candidates: M ≥ 1 draws of p₀ per restarted chain, one picked with probability
            ∝ exp(−E) (1: a plain draw of p₀). Costs M energy evaluations (no gradient) per
            restart.
    """

    owner = "pcd"

    def __init__(
        self,
        sampler: Any = None,
        k: int = 20,
        event_shape: int | Sequence[int] = (2,),
        capacity: int = 10000,
        reinit_prob: float = 0.05,
        init: str = "uniform",
        init_low: float = -1.0,
        init_high: float = 1.0,
        init_std: float = 1.0,
        replacement: str = "fifo",
        write_back: str = "slots",
        alpha: float = 0.0,
        kl_weight: float = 0.0,
        kl_step_size: float | None = None,
        init_candidates: int = 1,
    ) -> None:
        super().__init__()
        self.init_candidates = ebmflow.check_positive_int("pcd", "init_candidates", init_candidates)
        self._setup(sampler, k, alpha, kl_weight, kl_step_size)
        if write_back not in WRITE_BACKS:
            raise ebmflow.ConfigError(
                f"pcd: unknown write_back {write_back!r}; accepted: "
                f"{', '.join(map(repr, WRITE_BACKS))}"
            )
        self.write_back = write_back
        if isinstance(init, str) and init not in INITS:
            raise ebmflow.ConfigError(
                f"pcd: unknown init {init!r}; accepted: {', '.join(map(repr, INITS))}"
            )
        try:
            self.buffer = ebmflow.ReplayBuffer(
                capacity,
                event_shape,
                reinit_prob=reinit_prob,
                replacement=replacement,
                init=init,
                init_low=init_low,
                init_high=init_high,
                init_std=init_std,
            )
        except ValueError as exc:
            raise ebmflow.ConfigError(str(exc).replace("ReplayBuffer:", "pcd:", 1)) from None

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, write_back={self.write_back!r}, "
            f"init_candidates={self.init_candidates}"
        )

    def chain_starts(
        self, batch: Tensor, generator: torch.Generator | None, energy: Any = None
    ) -> tuple[Tensor, Any]:
        if tuple(batch.shape[1:]) != self.buffer.event_shape:
            raise ebmflow.ConfigError(
                f"pcd: the batch has event shape {tuple(batch.shape[1:])} but the replay "
                f"buffer holds {self.buffer.event_shape}; set event_shape="
                f"{list(batch.shape[1:])}"
            )
        x0, indices = self.buffer.sample(
            batch.shape[0],
            generator,
            log_weight=None
            if energy is None
            else lambda x: -energy(x.to(device=batch.device, dtype=batch.dtype)),
            candidates=self.init_candidates,
        )
        return x0.to(device=batch.device, dtype=batch.dtype), indices

    def chains_done(self, x: Tensor, token: Any, generator: torch.Generator | None) -> None:
        if self.write_back == "slots":
            self.buffer.update(token, x)
        else:
            self.buffer.push(x, generator)
