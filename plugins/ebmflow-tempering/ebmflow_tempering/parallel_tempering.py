"""Parallel tempering (replica exchange) with non-reversible even–odd swaps.

Swendsen & Wang 1986, "Replica Monte Carlo simulation of spin glasses"; Geyer 1991, "Markov
chain Monte Carlo maximum likelihood"; the deterministic even–odd (DEO) swap scheme and the
ladder tuning follow Syed, Bouchard-Côté, Deligiannidis & Doucet 2021, "Non-reversible
parallel tempering: a scalable highly parallel MCMC scheme" (JRSS B).

Targets. R replicas at inverse temperatures 1 = β_0 > β_1 > … > β_{R−1} = β_min > 0;
replica k targets π_k(x) ∝ exp(−E_k(x)) with

    E_k(x) = E_ref(x) + β_k ΔE(x),    ΔE = E − E_ref,

i.e. E_k = β_k E + (1 − β_k) E_ref. Without a reference (the default) E_ref = 0 and
E_k = β_k E, plain tempering; a reference (a Gaussian, say) gives the path from E_ref to E
that :func:`ebmflow_tempering.stepping_stone_log_z` integrates along. Replica 0 targets
exp(−E) itself.

The ensemble is one batch. The state holds R·B chains, replica-major: rows kB … kB + B − 1
are the B chains of replica k, and row b of every replica together form one PT ensemble (B
independent ensembles). ``state.energy`` and ``state.score`` cache E_k(x) and
s_k(x) = −∇ₓE_k(x) of each row's own target (the tempered values). One step is

1. Local move. The local sampler (any registered sampler; MALA by default) takes one step
   on all R·B rows together, on a *per-chain tempered energy* (:class:`TemperedEnsemble`)
   whose ``energy_and_score`` evaluates E (and E_ref) once on the whole batch and returns
   E_ref + β ⊙ ΔE and its score, β being the (R·B,) vector of row temperatures. So a step
   costs what the local sampler costs (one E+∇E evaluation for MALA or ULA, L for HMC) on
   R·B chains, in one batched call. With ``scale_step_size`` (the default without a
   reference) the local sampler runs in the coordinates y = c_k x, c_k = √β_k: its target
   there is exp(−β_k E(y / c_k)), with score s_y = c_k s(x), and its step size η in y is a
   step size η / β_k in x. MALA's proposal in x, for example, is
   x' = x − η ∇E(x) + √(2η / β_k) ξ: the drift is the same at every temperature and the
   noise grows like the width of π_k. Any kernel that leaves exp(−E_k(y / c_k)) invariant
   in y leaves π_k invariant in x, so this is exact for every sampler.
2. Swap. Neighbouring replicas (k, k + 1) with k even on even steps and k odd on odd steps
   (``swap="deo"``: deterministic alternation, the non-reversible scheme of Syed et al.;
   ``swap="seo"``: even or odd drawn with probability ½, the reversible stochastic variant)
   exchange configurations, in every ensemble independently, with probability

       α = min(1, exp((β_k − β_{k+1}) (ΔE(x_k) − ΔE(x_{k+1})))).

   ΔE comes from the cache, ΔE = (E_k − E_ref(x)) / β_k (E_ref is a closed-form Gaussian
   or absent: E itself is never evaluated again). The cache travels with the positions and
   is re-tempered: with r = β_to / β_from,

       E_to = r E_from + (1 − r) E_ref,    s_to = r s_from + (1 − r) s_ref,

   so a swap costs no evaluation of E.

``step`` is these two moves and nothing else: a fixed Markov kernel. The warm-up runs
between steps in ``adapt`` (which runs, and objectives through
:func:`ebmflow.extend.run_chains`, call by ``step_and_adapt``): the local sampler's own
warm-up (e.g. HMC's step size), then

3. Ladder adaptation (``adapt_steps`` > 0, Syed et al. 2021, Algorithm 4 in spirit). The
   warm-up is cut into rounds of doubling length ending at ``adapt_steps``. After each
   round the swap rejection rates r_k = 1 − ᾱ_k give the cumulative barrier
   Λ_k = Σ_{j<k} r_j, interpolated linearly in −log β; the new ladder puts the inner β_k
   where Λ = k Λ_{R−1} / (R − 1), i.e. toward equal rejection rates, with β_0 = 1 and
   β_min fixed. After ``adapt_steps`` steps the ladder is frozen (the chain is a valid
   MCMC kernel from then on) and the swap statistics restart.

Diagnostics (:meth:`ParallelTempering.diagnostics`): the ladder, the acceptance rate of
every pair (Rao–Blackwellised: the mean swap probability), and the round trips: a walker
completes one when it returns to β = 1 after visiting β_min (Syed et al. measure a PT
scheme by its round-trip rate).

The pieces have modules of their own: :mod:`ebmflow_tempering.ladder` (the geometric
ladder, its checks and its adaptation), :mod:`ebmflow_tempering.ensemble` (the per-row
temperatures, the local coordinates and the tempered energy) and
:mod:`ebmflow_tempering.swap` (the even–odd swap move); this module is the sampler that
combines them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import current_host
from ebmflow_tempering.ensemble import (
    ReplicaCoordinates,
    TemperedEnsemble,
    per_element,
    retemper,
)
from ebmflow_tempering.ladder import (
    adaptation_round_ends,
    check_ladder,
    equalised_ladder,
    geometric_ladder,
    stats_dtype,
)
from ebmflow_tempering.swap import SWAPS, EvenOddSwaps

NAME = "parallel-tempering"

# the ladder and the tempered energy were defined here before they had modules of their own
__all__ = ["ParallelTempering", "TemperedEnsemble", "TemperingState", "geometric_ladder"]


@dataclass(frozen=True)
class TemperingState(ebmflow.SamplerState):
    """The state of :class:`ParallelTempering`: R·B chains, replica-major (rows
    k·B … (k+1)·B − 1 are replica k), each with its tempered energy E_k and score s_k
    (``x``, ``energy``, ``score``), plus

    Attributes:
        betas: the ladder β (R,), float64 (float32 on MPS); a new tensor whenever the
            ladder adaptation moves it.
        swap_stats: (2, R − 1): per pair (k, k + 1), the summed swap probabilities and the
            number of attempts since the ladder last changed.
        round_trips: (B,) round trips β = 1 → β_min → β = 1 completed at each β = 1 slot.
        direction: (R·B,) each walker's direction: 1 = left β = 1 last, −1 = has reached
            β_min since, 0 = neither yet.
        local_extras: the local sampler's own state besides the chains it moves (its
            ``SamplerState.extras``, e.g. HMC's step size). Its chains are this state's
            ``x``, ``energy`` and ``score`` (in the coordinates y = c x with
            ``scale_step_size``), rebuilt from them at every step, so they have one source.
    """

    betas: Tensor = field(kw_only=True)
    swap_stats: Tensor = field(kw_only=True)
    round_trips: Tensor = field(kw_only=True)
    direction: Tensor = field(kw_only=True)
    local_extras: Mapping[str, Tensor] = field(default_factory=dict)

    def local_state(self, x: Tensor, score: Tensor) -> ebmflow.SamplerState:
        """The local sampler's state at ``x`` with tempered ``score`` (both in its
        coordinates) and this state's energies, step and ``local_extras``."""
        return ebmflow.SamplerState(
            x, self.energy, score, self.sigma, self.step, None, dict(self.local_extras)
        )


class ParallelTempering(ebmflow.Sampler):
    """Parallel tempering over a ladder of inverse temperatures β, any local sampler.

    ``run(energy, x0, n_steps)`` takes ``x0`` of shape (B, *event) like every sampler: each
    of the R replicas starts from a copy of it, so the state holds R·B chains (replica-major;
    :meth:`replicas` reshapes it to (R, B, *event)). ``samples`` are the B chains of the
    β = 1 replica, or all replicas (R, B, *event) with ``return_all=True``. See the module
    docstring for the update, the swap rule and the batched evaluation.

    Args:
        n_replicas: R ≥ 2 (default 8 without ``betas``).
        beta_min: the hottest β of the default geometric ladder β_k = β_min^(k/(R−1)), in
            (0, 1) (default 0.05).
        betas: an explicit ladder instead: R ≥ 2 numbers from 1 strictly decreasing to a
            value > 0 (``n_replicas`` and ``beta_min``, if given, must agree with it).
        local_sampler: the move inside each replica: a registered sampler name, a config
            dict (``{"name": "mala", "step_size": 0.05}``) or an ``ebmflow.Sampler``
            (default ``"mala"`` with its own defaults).
        swap: ``"deo"`` (deterministic even–odd, non-reversible; default), ``"seo"``
            (stochastic even–odd, reversible) or ``"none"`` (independent tempered chains).
        adapt_steps: steps of ladder adaptation toward equal swap rates at the start of a
            run (≥ 0; 0 keeps the ladder as given). The ladder is frozen afterwards.
        scale_step_size: run the local sampler in coordinates y = √β_k x, so that its step
            size η means η/β_k at replica k. Default: on without a reference, off with one
            (the scaling assumes E_k = β_k E).
        reference: an energy E_ref for the path E_k = β_k E + (1 − β_k) E_ref; it is
            evaluated on every step besides E, so it should be cheap (closed form). Default
            none: plain tempering.
        return_all: return every replica from ``run`` (samples (R, B, *event), trajectory
            (T, R, B, *event), per-chain acceptance (R, B)) instead of the β = 1 ones.
    """

    needs_energy = True

    def __init__(
        self,
        n_replicas: int | None = None,
        beta_min: float | None = None,
        betas: Sequence[float] | Tensor | None = None,
        local_sampler: str | Mapping[str, Any] | ebmflow.Sampler = "mala",
        swap: str = "deo",
        adapt_steps: int = 0,
        scale_step_size: bool | None = None,
        reference: ebmflow.Energy | None = None,
        return_all: bool = False,
    ) -> None:
        self.betas = check_ladder(NAME, n_replicas, beta_min, betas)
        self.n_replicas = self.betas.shape[0]
        self.local_sampler = _local_sampler(local_sampler)
        if swap not in SWAPS:
            raise ebmflow.ConfigError(
                f"{NAME}: swap must be one of {', '.join(map(repr, SWAPS))}, got {swap!r}"
            )
        self.swap = swap
        self.adapt_steps = ebmflow.check_positive_int(NAME, "adapt_steps", adapt_steps, minimum=0)
        if self.adapt_steps and swap == "none":
            raise ebmflow.ConfigError(
                f"{NAME}: adapt_steps={adapt_steps} tunes the ladder from swap rates, but "
                "swap='none' proposes no swaps; use swap='deo' or 'seo', or adapt_steps=0"
            )
        if reference is not None and not isinstance(reference, ebmflow.Energy):
            raise ebmflow.ComponentArgumentError(
                f"{NAME}: reference must be an ebmflow.Energy or None, got "
                f"{type(reference).__name__}"
            )
        if reference is not None and not reference.has_energy:
            raise ebmflow.ConfigError(
                f"{NAME}: the reference {type(reference).__name__} is score-only; the path "
                "E_k = β_k E + (1 − β_k) E_ref needs its energy values"
            )
        if scale_step_size is None:
            scale_step_size = reference is None
        if not isinstance(scale_step_size, bool):
            raise ebmflow.ConfigError(
                f"{NAME}: scale_step_size must be True, False or None, got {scale_step_size!r}"
            )
        if scale_step_size and reference is not None:
            raise ebmflow.ConfigError(
                f"{NAME}: scale_step_size=True assumes E_k = β_k E and cannot be used with a "
                "reference energy; pass scale_step_size=False (or leave it None)"
            )
        self.scale_step_size = scale_step_size
        self.reference = reference
        if not isinstance(return_all, bool):
            raise ebmflow.ConfigError(
                f"{NAME}: return_all must be True or False, got {return_all!r}"
            )
        self.return_all = return_all
        self._round_ends = adaptation_round_ends(self.adapt_steps)
        # reused between steps, not part of the config: the tempered view of the last
        # (energy, ladder, dtype, batch shape), and the swap move with the constants of the
        # last ladder
        self._tempered_cache: tuple[Any, Tensor, Any, TemperedEnsemble] | None = None
        self._swaps = None if swap == "none" else EvenOddSwaps(swap)

    @property
    def name(self) -> str:
        return NAME

    # -- state ---------------------------------------------------------------------------

    def init(self, energy: ebmflow.Energy, x: Tensor, sigma: Any = None) -> TemperingState:
        """Copy ``x`` (B, *event) to every replica and evaluate all R·B chains at once."""
        self.check_compatible(energy, x)
        self._check_reference(energy)
        n_rep, n_per = self.n_replicas, x.shape[0]
        x_all = x.detach().repeat(n_rep, *(1,) * (x.ndim - 1))
        sigma_t = ebmflow.broadcast_sigma(sigma, x)
        sigma_all = None if sigma_t is None else sigma_t.repeat(n_rep)
        stats = stats_dtype(x.device)
        betas = self.betas.to(device=x.device, dtype=stats)
        tempered = self._tempered(energy, betas, x_all)
        coords = tempered.coordinates
        y, _ = coords.to_local(x_all)
        local = self._local(self.local_sampler.init, tempered, y, sigma_all)
        x_all, score = coords.from_local(local.x, local.score)
        ebmflow.check_finite(self.name, 0, local.energy, x_all)
        return TemperingState(
            x_all,
            local.energy,
            score,
            sigma_all,
            0,
            None,
            betas=betas,
            swap_stats=torch.zeros(2, n_rep - 1, device=x.device, dtype=stats),
            # round trips and directions in float32 (exact to 2²⁴ trips per slot) because
            # float ops are the fastest at this size
            round_trips=torch.zeros(n_per, device=x.device, dtype=torch.float32),
            direction=torch.zeros(n_rep * n_per, device=x.device, dtype=torch.float32),
            local_extras=dict(local.extras),
        )

    def replicas(self, state: ebmflow.SamplerState) -> Tensor:
        """All replicas' positions, (R, B, *event); ``[0]`` is β = 1."""
        return state.x.view(self.n_replicas, -1, *state.x.shape[1:])

    def target_state(self, state: ebmflow.SamplerState) -> ebmflow.SamplerState:
        """The β = 1 replica's B chains (the first B rows), as a state of its own."""
        n_per = self._check_ensemble(state)

        def rows(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[:n_per]

        return ebmflow.SamplerState(
            state.x[:n_per],
            rows(state.energy),
            rows(state.score),
            rows(state.sigma),
            state.step,
            rows(state.accept_prob),
        )

    def delta_energy(self, state: ebmflow.SamplerState) -> Tensor:
        """ΔE = E − E_ref at every chain, (R, B), from the cache: (E_k − E_ref(x)) / β_k
        (E itself is not evaluated; E_ref is, when there is a reference)."""
        e = state.energy.view(self.n_replicas, -1)
        betas = state.betas.to(e.dtype)[:, None]
        if self.reference is None:
            return e / betas
        with torch.no_grad():
            e_ref = self.reference(state.x).view(self.n_replicas, -1)
        return (e - e_ref) / betas

    def _tempered(self, energy, betas: Tensor, x: Tensor) -> TemperedEnsemble:
        """The tempered view of ``energy`` for this ladder and batch. Built once per
        (energy, ladder tensor, dtype, batch shape) and reused by every step until the
        ladder changes (adaptation makes a new tensor), so a step pays no set-up."""
        key = (x.dtype, x.shape)
        cached = self._tempered_cache
        if cached is not None and cached[0] is energy and cached[1] is betas and cached[2] == key:
            return cached[3]
        tempered = TemperedEnsemble(
            energy,
            self.reference,
            betas.to(x.dtype),
            x.shape[0] // self.n_replicas,
            x.shape[1:],
            self.scale_step_size,
            NAME,
        )
        self._tempered_cache = (energy, betas, key, tempered)
        return tempered

    def _coordinates(self, state: TemperingState) -> ReplicaCoordinates:
        """The local sampler's coordinates of ``state``'s chains: the cached tempered
        view's when it is of this ladder and batch (as after a step), else new ones."""
        cached = self._tempered_cache
        if (
            cached is not None
            and cached[1] is state.betas
            and cached[2] == (state.x.dtype, state.x.shape)
        ):
            return cached[3].coordinates
        return ReplicaCoordinates(
            state.betas.to(state.x.dtype),
            state.x.shape[0] // self.n_replicas,
            state.x.shape[1:],
            self.scale_step_size,
            NAME,
        )

    def _local(self, fn: Callable[..., ebmflow.SamplerState], *args: Any):
        """Call the local sampler; its divergence errors are re-raised under this name."""
        try:
            return fn(*args)
        except ebmflow.SamplerDivergedError as exc:
            raise ebmflow.SamplerDivergedError(
                f"{self.name} (local sampler {self.local_sampler.name}): {exc}",
                step=exc.step,
                n_chains=exc.n_chains,
            ) from exc

    def _check_reference(self, energy: ebmflow.Energy) -> None:
        ref = self.reference
        if ref is None:
            return
        if (
            ref.event_shape is not None
            and energy.event_shape is not None
            and tuple(ref.event_shape) != tuple(energy.event_shape)
        ):
            raise ebmflow.ConfigError(
                f"{self.name}: the reference {type(ref).__name__} has event shape "
                f"{tuple(ref.event_shape)} but {type(energy).__name__} has "
                f"{tuple(energy.event_shape)}; they must agree"
            )

    def _check_ensemble(self, state: ebmflow.SamplerState) -> int:
        n = state.x.shape[0]
        typed = isinstance(state, TemperingState) and state.betas is not None
        if n % self.n_replicas or not typed:
            raise ebmflow.ConfigError(
                f"{self.name}: expected a state from ParallelTempering.init holding "
                f"{self.n_replicas} replicas × B chains; got {n} chains"
                + ("" if typed else f" in a {type(state).__name__} without a ladder")
            )
        return n // self.n_replicas

    # -- one transition ------------------------------------------------------------------

    def step(
        self,
        energy: ebmflow.Energy,
        state: TemperingState,
        generator: torch.Generator | None = None,
    ) -> TemperingState:
        self._check_ensemble(state)
        tempered = self._tempered(energy, state.betas, state.x)
        coords = tempered.coordinates
        y, s_y = coords.to_local(state.x, state.score)
        local = self._local(self.local_sampler.step, tempered, state.local_state(y, s_y), generator)
        x, score = coords.moved_from_local(local.x, local.score, state.x, state.score, y, s_y)
        e = local.energy
        ebmflow.check_finite(self.name, state.step, e, x)
        new = state.replace(
            x=x,
            energy=e,
            score=score,
            step=state.step + 1,
            accept_prob=local.accept_prob,
            local_extras=dict(local.extras),
        )
        if self._swaps is not None:
            ref = None if self.reference is None else self.reference.energy_and_score(x)
            new = self._swaps(state.step, coords, new, ref, generator)
        return new

    def adapt(self, state: TemperingState) -> TemperingState:
        """The warm-up after the step that produced ``state``: the local sampler's own
        (e.g. HMC's step size, on the local sampler's view of the chains), then, at the end
        of an adaptation round, the ladder (module docstring)."""
        if type(self.local_sampler).adapt is not ebmflow.Sampler.adapt:
            y, s_y = self._coordinates(state).to_local(state.x, state.score)
            local = self.local_sampler.adapt(
                state.local_state(y, s_y).replace(accept_prob=state.accept_prob)
            )
            state = state.replace(local_extras=dict(local.extras))
        if state.step in self._round_ends:
            state = self._adapt_ladder(state)
        return state

    def _adapt_ladder(self, state: TemperingState) -> TemperingState:
        """End of an adaptation round: move the ladder toward equal rejection rates,
        re-temper the cache, restart the statistics."""
        betas, e, score = state.betas, state.energy, state.score
        ref = None if self.reference is None else self.reference.energy_and_score(state.x)
        accepted, attempts = state.swap_stats
        if bool((attempts > 0).all()):
            new = equalised_ladder(betas, 1.0 - accepted / attempts)
            r = (new / betas).to(e.dtype).repeat_interleave(e.shape[0] // self.n_replicas)
            e, score = retemper(per_element(r, score.shape[1:]), e, score, ref)
            betas = new
        return state.replace(
            energy=e,
            score=score,
            betas=betas,
            swap_stats=torch.zeros_like(state.swap_stats),
            round_trips=torch.zeros_like(state.round_trips),
            direction=torch.zeros_like(state.direction),
        )

    # -- runs and diagnostics ------------------------------------------------------------

    def continue_run(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        n_steps: int,
        *,
        generator: torch.Generator | None = None,
        thin: int | None = None,
        progress: bool = False,
        callback: Callable[[ebmflow.SamplerState], Any] | None = None,
    ) -> ebmflow.SampleResult:
        """Like :meth:`ebmflow.Sampler.continue_run`; ``callback`` gets the whole ensemble's
        state. The result keeps the β = 1 replica (all of them with ``return_all``):
        ``samples``, ``trajectory``, ``acceptance_per_chain`` and ``acceptance_rate`` (the
        local sampler's, at β = 1); ``energy_trace`` is the mean E of the β = 1 chains.
        ``local_acceptance_per_replica`` (R,) has the local sampler's rate at every β."""
        n_per = self._check_ensemble(state)
        if thin is not None:
            thin = ebmflow.check_positive_int(self.name, "thin", thin)
        cold_trace = torch.empty(n_steps, device=state.x.device, dtype=torch.float32)
        kept: list[Tensor] = []
        done = 0

        def record(current: ebmflow.SamplerState) -> None:
            nonlocal done
            cold_trace[done] = current.energy[:n_per].mean()  # β_0 = 1: E_0 = E
            done += 1
            if thin is not None and done % thin == 0:
                # a copy of the β = 1 rows, so the other replicas' positions can be freed
                kept.append(
                    self.replicas(current) if self.return_all else current.x[:n_per].clone()
                )
            if callback is not None:
                callback(current)

        result = super().continue_run(
            energy, state, n_steps, generator=generator, progress=progress, callback=record
        )
        diagnostics = result.diagnostics
        diagnostics["energy_trace"] = cold_trace
        if "acceptance_per_chain" in diagnostics:
            per_chain = diagnostics["acceptance_per_chain"].view(self.n_replicas, n_per)
            diagnostics["local_acceptance_per_replica"] = per_chain.mean(dim=1)
            diagnostics["acceptance_per_chain"] = per_chain if self.return_all else per_chain[0]
            diagnostics["acceptance_rate"] = float(per_chain[0].mean())
        trajectory = torch.stack(kept) if kept else None
        all_replicas = self.replicas(result.state)
        samples = all_replicas if self.return_all else all_replicas[0]
        return ebmflow.SampleResult(samples, result.state, diagnostics, trajectory)

    def diagnostics(self, state: ebmflow.SamplerState) -> dict[str, Any]:
        """The ladder, per-pair swap acceptance and round trips since the ladder was last
        changed (or since the start), and the local sampler's own diagnostics as
        ``local_*``."""
        n_per = state.x.shape[0] // self.n_replicas
        accepted, attempts = state.swap_stats
        rates = torch.where(
            attempts > 0, accepted / attempts.clamp(min=1), torch.full_like(attempts, math.nan)
        )
        since = max((t for t in self._round_ends if t <= state.step), default=0)
        counted = state.step - since
        trips = int(state.round_trips.sum())
        out: dict[str, Any] = {
            "n_replicas": self.n_replicas,
            "betas": state.betas.tolist(),
            "swap": self.swap,
            "swap_acceptance": rates.tolist(),
            "round_trips": trips,
            "round_trip_rate": trips / (counted * n_per) if counted else math.nan,
            "local_sampler": self.local_sampler.name,
        }
        local = state.local_state(state.x, state.score)
        for key, value in self.local_sampler.diagnostics(local).items():
            out["local_" + key] = value
        return out


# -- argument checks -------------------------------------------------------------------------


def _local_sampler(local: Any) -> ebmflow.Sampler:
    if isinstance(local, (str, Mapping)):
        local = current_host().create("sampler", local)
    if not isinstance(local, ebmflow.Sampler):
        raise ebmflow.ComponentArgumentError(
            f"{NAME}: local_sampler must be a registered sampler name, a config dict with a "
            f"'name' key or an ebmflow.Sampler; got {type(local).__name__}"
        )
    if isinstance(local, ParallelTempering):
        raise ebmflow.ConfigError(
            f"{NAME}: local_sampler cannot itself be parallel-tempering; use a local move "
            "such as 'mala', 'langevin' or 'hmc'"
        )
    return local
