"""The swap move of parallel tempering: even–odd exchanges between neighbouring replicas.

Neighbouring replicas (k, k + 1) with k even on even steps and k odd on odd steps
(``"deo"``: deterministic alternation, the non-reversible scheme of Syed, Bouchard-Côté,
Deligiannidis & Doucet 2021; ``"seo"``: even or odd drawn with probability ½, the
reversible stochastic variant) exchange configurations, in every ensemble independently,
with probability

    α = min(1, exp((β_k − β_{k+1}) (ΔE(x_k) − ΔE(x_{k+1})))),    ΔE = E − E_ref,

read from the cache, ΔE = (E_k − E_ref(x)) / β_k; the cache moves with the configurations
and is re-tempered (:func:`~ebmflow_tempering.ensemble.retemper`), so a swap costs no
evaluation of E.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from ebmflow_tempering.ensemble import ReplicaCoordinates, retemper
from ebmflow_tempering.ladder import stats_dtype

#: accepted swap schemes of the sampler (``"none"``: no swap move).
SWAPS = ("deo", "seo", "none")


class EvenOddSwaps:
    """The swap move of one sampler, ``scheme`` ``"deo"`` or ``"seo"`` (module docstring),
    with the constants of the last ladder kept between steps (not part of any config)."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self._cache: tuple[Tensor, int, dict[int, SwapConstants | None]] | None = None

    def __call__(
        self,
        step: int,
        coords: ReplicaCoordinates,
        state: Any,
        ref: tuple[Tensor, Tensor] | None,
        generator: torch.Generator | None,
    ) -> Any:
        """Propose swaps between the pairs of step ``step``'s parity; move and re-temper the
        cache of accepted ones. ``state`` is the ensemble's
        :class:`~ebmflow_tempering.TemperingState` after the local move, ``coords`` the
        step's :class:`~ebmflow_tempering.ensemble.ReplicaCoordinates` (its ladder in the
        chains' dtype and per-row β), ``ref`` E_ref and its score at the chains (``None``
        without a reference). Returns the new state (chains and swap statistics).

        Written for few tensor operations, since on a cheap energy they, not E, set the
        cost of a step: the pairs (k, k + 1) of one parity are the consecutive replicas
        parity … parity + 2P − 1, viewed as (P, 2, B) without copying."""
        x, e, score = state.x, state.energy, state.score
        n_rep = coords.n_replicas
        n_per = x.shape[0] // n_rep
        if self.scheme == "deo":
            parity = step % 2
        else:
            parity = int(torch.randint(2, (1,), generator=generator, device=x.device))
        c = self._constants(coords.betas, parity, n_per)
        if c is None:  # no pair of this parity (R = 2, odd step)
            return state
        n_pairs = c.weights.shape[0]
        rows = slice(parity * n_per, (parity + 2 * n_pairs) * n_per)
        # ΔE = (E_k − E_ref) / β_k, so log α = (β_k − β_{k+1}) (ΔE_k − ΔE_{k+1}) is a
        # weighted sum over the pair axis: weights (β_k − β_{k+1}) (1/β_k, −1/β_{k+1})
        pair_e = e[rows] if ref is None else e[rows] - ref[0][rows]
        pair_e = pair_e.view(n_pairs, 2, n_per)
        log_alpha = torch.addcmul(pair_e[:, 0] * c.weights[:, 0], pair_e[:, 1], c.weights[:, 1])
        # Metropolis without the NaN reduction: E was checked finite by the step (and the
        # reference is closed form); a swap never proposes a new energy
        prob = log_alpha.clamp_(max=0.0).exp_()
        accept = (
            torch.rand(prob.shape, generator=generator, device=prob.device, dtype=prob.dtype) < prob
        )
        # src[i]: the row whose configuration row i takes (accepted pairs exchange theirs)
        shift = accept[:, None, :] * c.shifts  # (P, 2, B): +B for row k, −B for k + 1
        src = c.rows + torch.nn.functional.pad(shift.view(-1), c.padding)
        # the cache moves with the configurations, re-tempered by r = β_to / β_from
        beta_event = coords.beta_event
        r = beta_event / beta_event.index_select(0, src)
        x = x.index_select(0, src)
        if ref is not None:
            ref = (ref[0].index_select(0, src), ref[1].index_select(0, src))
        e, score = retemper(r, e.index_select(0, src), score.index_select(0, src), ref)
        # statistics: per-pair mean swap probability and attempts, round trips of walkers
        increments = torch.stack((prob.mean(dim=1), c.ones))  # (2, P), promoted to float64
        swap_stats = state.swap_stats.index_add(1, c.pairs, increments)
        # direction: 1 = left β = 1 last, −1 = has reached β_min since, 0 = neither yet
        # (a walker arriving at β = 1 with −1 completes a round trip: counted as −min(d, 0))
        direction = state.direction.index_select(0, src)
        cold, hot = direction[:n_per], direction[-n_per:]
        round_trips = state.round_trips - cold.clamp(max=0.0)
        cold.fill_(1.0)
        hot.abs_().neg_()  # 1 → −1; −1 and 0 stay
        return state.replace(
            x=x,
            energy=e,
            score=score,
            swap_stats=swap_stats,
            round_trips=round_trips,
            direction=direction,
        )

    def _constants(self, betas: Tensor, parity: int, n_per: int) -> SwapConstants | None:
        """Per ladder and parity (``None`` when it has no pair), kept until the ladder
        tensor or the number of chains changes."""
        cache = self._cache
        if cache is None or cache[0] is not betas or cache[1] != n_per:
            cache = self._cache = (betas, n_per, {})
        if parity not in cache[2]:
            cache[2][parity] = SwapConstants.build(betas, parity, n_per)
        return cache[2][parity]


class SwapConstants(NamedTuple):
    """What the swaps of one parity need besides the chains, for a ladder of R replicas
    and B chains per replica: P = ⌊(R − parity) / 2⌋ pairs (k, k + 1), k = parity + 2j."""

    weights: Tensor  # (P, 2, 1): (β_k − β_{k+1}) · (1/β_k, −1/β_{k+1})
    rows: Tensor  # (R·B,) long: 0 … R·B − 1
    shifts: Tensor  # (1, 2, 1) long: (B, −B), row offsets of an exchange
    padding: tuple[int, int]  # rows before and after the pairs' block
    pairs: Tensor  # (P,) long: the pairs' columns in swap_stats (k)
    ones: Tensor  # (P,) in the statistics' dtype: one attempt per pair

    @classmethod
    def build(cls, betas: Tensor, parity: int, n_per: int) -> SwapConstants | None:
        n_rep = betas.shape[0]
        n_pairs = (n_rep - parity) // 2
        if n_pairs == 0:
            return None
        lo, hi = (
            betas[parity : parity + 2 * n_pairs : 2],
            betas[parity + 1 : parity + 2 * n_pairs : 2],
        )
        weights = torch.stack((1.0 / lo, -1.0 / hi), dim=1) * (lo - hi)[:, None]
        pairs = torch.arange(parity, parity + 2 * n_pairs, 2, device=betas.device)
        after = n_rep - parity - 2 * n_pairs
        device = betas.device
        return cls(
            weights[:, :, None],
            torch.arange(n_rep * n_per, device=device),
            torch.tensor([n_per, -n_per], device=device).view(1, 2, 1),
            (parity * n_per, after * n_per),
            pairs,
            torch.ones(n_pairs, dtype=stats_dtype(device), device=device),
        )
