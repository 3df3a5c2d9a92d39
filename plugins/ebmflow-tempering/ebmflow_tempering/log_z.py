"""log Z by stepping-stone sampling over a parallel-tempering ladder (Xie, Lewis, Fan, Kuo &
Chen 2011, "Improving marginal likelihood estimation for Bayesian phylogenetic model
selection"), with thermodynamic integration (Gelman & Meng 1998, "Simulating normalizing
constants") from the same samples.

Path. From a normalised Gaussian reference E_ref = −log N(μ, diag(s²)) (so Z_ref = 1) to the
target E:

    E_β(x) = β E(x) + (1 − β) E_ref(x) = E_ref(x) + β ΔE(x),   ΔE = E − E_ref,

over 0 = β_R < β_{R−1} = β_min < … < β_1 < β_0 = 1. Replicas 0 … R − 1 of the
``parallel-tempering`` sampler (with ``reference=E_ref``) sample π_{β_0} … π_{β_{R−1}}; the
reference β_R = 0 is sampled exactly. Since Z_{β'} / Z_β = E_{π_β}[exp(−(β' − β) ΔE)],

    log Ẑ = log r̂_R + Σ_{k=1}^{R−1} log r̂_k,
    r̂_k = mean over samples of π_{β_k} of exp(−(β_{k−1} − β_k) ΔE)     (k < R),
    r̂_R = mean over exact reference draws of exp(−β_min ΔE),

(each stone is unbiased for its ratio; log Ẑ is biased low by about stderr²/2), and

    log Ẑ_TI = −∫₀¹ E_{π_β}[ΔE] dβ   (trapezoid rule over the same ladder),

whose discretisation error the standard error below does not include.

Standard error. The B chains of each replica are B independent PT ensembles; a chain's time
average over the kept steps is one draw per ensemble, so correlation along a chain and
between replicas of one ensemble are both accounted for: by the delta method,
var(log Ẑ) ≈ var_b(Σ_k w̄_{k,b} / r̂_k) / B + var_n(w_n) / (N r̂_R²), with w̄_{k,b} chain
b's average weight at stone k and w_n the reference draws' weights. It does not see a ladder
that never mixed: check ``swap_acceptance`` (every pair well above 0).

Cost. One energy+score evaluation of the R·B chains per step (and the closed-form
reference), plus one energy evaluation of the N reference draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import base_tensor, evaluation_dtype_device, resolve_event_shape
from ebmflow_tempering.parallel_tempering import ParallelTempering

OWNER = "stepping_stone_log_z"


@dataclass(frozen=True)
class SteppingStoneResult:
    """What :func:`stepping_stone_log_z` returns.

    Attributes:
        log_z: the stepping-stone estimate log Ẑ.
        stderr: its delta-method standard error (see the module docstring).
        log_z_ti: thermodynamic integration (trapezoid rule) over the same samples.
        stderr_ti: the Monte Carlo part of the TI error (not the discretisation error).
        log_ratios: log r̂ of every stone, from the reference up: [log Z_{β_min}/Z_ref, …,
            log Z_1/Z_{β_1}].
        betas: the ladder the replicas used, from 1 down to β_min (after adaptation).
        swap_acceptance: the swap acceptance rate of every neighbour pair since the ladder
            was frozen (β = 1 side first).
        acceptance_rate: the local sampler's mean acceptance over all replicas and steps
            (``None`` for samplers without an accept step).
        n_chains: B, PT ensembles. n_replicas: R. n_steps, burn_in: PT steps in all and
            discarded. n_base_samples: N exact draws of the reference.
        sampler: the local sampler's name.
        samples: the final positions of the β = 1 chains, (B, *event).
    """

    log_z: float
    stderr: float
    log_z_ti: float
    stderr_ti: float
    log_ratios: list[float]
    betas: list[float]
    swap_acceptance: list[float]
    acceptance_rate: float | None
    n_chains: int
    n_replicas: int
    n_steps: int
    burn_in: int
    n_base_samples: int
    sampler: str
    samples: Tensor = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (NaN and ±∞ become ``None``; the samples are left out)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float):
                return value if math.isfinite(value) else None
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        return {
            "method": "stepping-stone",
            **{
                key: clean(getattr(self, key))
                for key in (
                    "log_z",
                    "stderr",
                    "log_z_ti",
                    "stderr_ti",
                    "log_ratios",
                    "betas",
                    "swap_acceptance",
                    "acceptance_rate",
                    "n_chains",
                    "n_replicas",
                    "n_steps",
                    "burn_in",
                    "n_base_samples",
                    "sampler",
                )
            },
        }


class GaussianReference(ebmflow.Energy):
    """The normalised reference E_ref(x) = ½ Σ ((x − μ)/s)² + Σ log s + (D/2) log 2π, i.e.
    −log N(x; μ, diag(s²)) over the event dimensions (any event shape), so Z_ref = 1.
    Closed-form score −(x − μ)/s²; exact :meth:`sample`."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.event_shape = tuple(mean.shape)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.log_norm = float(std.double().log().sum()) + 0.5 * math.log(2 * math.pi) * (
            mean.numel()
        )

    def forward(self, x: Tensor, sigma=None) -> Tensor:
        return self.energy_and_score(x)[0]

    def energy_and_score(self, x, sigma=None, *, create_graph=False):
        z = (x - self.mean) / self.std
        energy = 0.5 * z.flatten(1).pow(2).sum(dim=1) + self.log_norm
        return energy, -z / self.std

    def score(self, x, sigma=None):
        return -(x - self.mean) / self.std.square()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(
            (n, *self.event_shape),
            generator=generator,
            device=self.mean.device,
            dtype=self.mean.dtype,
        )
        return self.mean + self.std * eps


def stepping_stone_log_z(
    energy: ebmflow.Energy,
    *,
    dim: int | None = None,
    event_shape: Sequence[int] | None = None,
    n_chains: int = 256,
    n_replicas: int = 16,
    beta_min: float = 1e-3,
    betas: Sequence[float] | Tensor | None = None,
    n_steps: int = 1000,
    burn_in: int | None = None,
    local_sampler: str | Mapping[str, Any] | ebmflow.Sampler = "mala",
    swap: str = "deo",
    adapt_steps: int = 0,
    base_mean: float | Tensor = 0.0,
    base_std: float | Tensor = 1.0,
    n_base_samples: int | None = None,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SteppingStoneResult:
    """log Z of ``energy`` by stepping-stone sampling along a parallel-tempering ladder from
    the Gaussian reference N(``base_mean``, ``base_std``²) (see the module docstring).

    Args:
        energy: an ``ebmflow.Energy`` with energy values.
        dim, event_shape: the shape of one sample (``dim=d`` means ``(d,)``); default the
            energy's ``event_shape``.
        n_chains: B ≥ 2 independent PT ensembles.
        n_replicas, beta_min, betas: the ladder from 1 down to β_min > 0 (geometric by
            default, R = 16, β_min = 10⁻³), as for ``parallel-tempering``; the reference
            β = 0 is added below it and sampled exactly.
        n_steps: PT steps in all; burn_in: steps discarded first (default
            max(adapt_steps, n_steps // 4); at least ``adapt_steps``, less than ``n_steps``).
        local_sampler, swap, adapt_steps: passed to ``parallel-tempering``. Tune the local
            sampler's step size for β = 1: with a reference it is not rescaled per replica.
        base_mean, base_std: μ and s of the reference (numbers or tensors broadcastable to
            the event shape); it should cover the target.
        n_base_samples: N exact reference draws for the last stone (default 16 B).
        sigma: noise level for noise-conditional energies (the reference is clean).
        generator: the only source of randomness; the global RNG is never touched (without
            one, a fresh nondeterministically seeded generator is used).
        dtype, device: where to run; default the energy's parameters', else float64 on CPU.
    """
    if not isinstance(energy, ebmflow.Energy):
        raise ebmflow.ComponentArgumentError(
            f"{OWNER}: expected an ebmflow.Energy, got {type(energy).__name__}"
        )
    if not energy.has_energy:
        raise ebmflow.ConfigError(
            f"{OWNER} needs energy values, but {type(energy).__name__} is score-only "
            "(has_energy = False); give the model an energy parameterisation first"
        )
    shape = resolve_event_shape(OWNER, energy, dim, event_shape)
    n_chains = ebmflow.check_positive_int(OWNER, "n_chains", n_chains, minimum=2)
    n_steps = ebmflow.check_positive_int(OWNER, "n_steps", n_steps)
    adapt_steps = ebmflow.check_positive_int(OWNER, "adapt_steps", adapt_steps, minimum=0)
    if burn_in is None:
        burn_in = max(adapt_steps, n_steps // 4)
    burn_in = ebmflow.check_positive_int(OWNER, "burn_in", burn_in, minimum=0)
    if not adapt_steps <= burn_in < n_steps:
        raise ebmflow.ConfigError(
            f"{OWNER}: burn_in must be at least adapt_steps ({adapt_steps}) and less than "
            f"n_steps ({n_steps}), so that the kept steps use a frozen ladder; got {burn_in}"
        )
    n_base = (
        16 * n_chains
        if n_base_samples is None
        else ebmflow.check_positive_int(OWNER, "n_base_samples", n_base_samples, minimum=2)
    )
    dtype, device = evaluation_dtype_device(energy, dtype, device)
    if generator is None:
        generator = torch.Generator(device=device)
        generator.seed()
    elif not isinstance(generator, torch.Generator):
        raise ebmflow.ComponentArgumentError(
            f"{OWNER}: generator must be a torch.Generator, got {generator!r}"
        )
    reference = GaussianReference(
        base_tensor(OWNER, "base_mean", base_mean, shape, dtype, device),
        base_tensor(OWNER, "base_std", base_std, shape, dtype, device),
    )
    explicit = betas is not None  # an explicit ladder decides the replicas
    sampler = ParallelTempering(
        n_replicas=None if explicit else n_replicas,
        beta_min=None if explicit else beta_min,
        betas=betas,
        local_sampler=local_sampler,
        swap=swap,
        adapt_steps=adapt_steps,
        reference=reference,
    )
    n_rep = sampler.n_replicas

    state = sampler.init(energy, reference.sample(n_chains, generator), sigma)
    for _ in range(burn_in):
        state = sampler.step_and_adapt(energy, state, generator)
    ladder = state.betas.to(torch.float64)
    gaps = (ladder[:-1] - ladder[1:])[:, None]  # β_{k−1} − β_k for the stones k = 1 … R−1
    log_max = torch.full((n_rep - 1, n_chains), -math.inf, dtype=torch.float64, device=device)
    log_sum = torch.zeros((n_rep - 1, n_chains), dtype=torch.float64, device=device)
    delta_sum = torch.zeros((n_rep, n_chains), dtype=torch.float64, device=device)
    accept_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_kept = n_steps - burn_in
    for _ in range(n_kept):
        state = sampler.step_and_adapt(energy, state, generator)
        if state.accept_prob is not None:
            accept_sum += state.accept_prob.mean()
        delta = sampler.delta_energy(state).to(torch.float64)  # ΔE, (R, B)
        delta_sum += delta
        a = -gaps * delta[1:]  # log-weights of the stones, streamed log-sum-exp per chain
        new_max = torch.maximum(log_max, a)
        log_sum = log_sum * (log_max - new_max).exp() + (a - new_max).exp()
        log_max = new_max

    # stones k = 1 … R−1 from the replicas: chain b's average weight w̄_{k,b}
    log_w = log_max + log_sum.log() - math.log(n_kept)
    log_r = torch.logsumexp(log_w, dim=1) - math.log(n_chains)
    units = (log_w - log_r[:, None]).exp().sum(dim=0)
    var_pt = float(units.var()) / n_chains
    # the last stone, from the reference (β = 0) to β_min, with exact reference draws
    z = reference.sample(n_base, generator)
    with torch.no_grad():
        delta_base = (energy(z, sigma) - reference(z)).to(torch.float64)
    a0 = -float(ladder[-1]) * delta_base
    log_r0 = float(torch.logsumexp(a0, dim=0)) - math.log(n_base)
    var_0 = float((a0 - log_r0).exp().var()) / n_base
    log_ratios = [log_r0, *reversed(log_r.tolist())]

    # thermodynamic integration, trapezoid over 0 = b_0 < b_1 = β_min < … < b_R = 1
    grid = torch.cat([ladder.new_zeros(1), ladder.flip(0)])
    trapezoid = torch.zeros_like(grid)
    steps = grid[1:] - grid[:-1]
    trapezoid[:-1] += steps / 2
    trapezoid[1:] += steps / 2
    chain_means = (delta_sum / n_kept).flip(0)  # (R, B), β from β_min up to 1
    ti_units = (trapezoid[1:, None] * chain_means).sum(dim=0)
    log_z_ti = -(float(trapezoid[0]) * float(delta_base.mean()) + float(ti_units.mean()))
    var_ti = (
        float(ti_units.var()) / n_chains
        + float(trapezoid[0]) ** 2 * float(delta_base.var()) / n_base
    )

    diagnostics = sampler.diagnostics(state)
    return SteppingStoneResult(
        log_z=sum(log_ratios),
        stderr=math.sqrt(var_pt + var_0),
        log_z_ti=log_z_ti,
        stderr_ti=math.sqrt(var_ti),
        log_ratios=log_ratios,
        betas=ladder.tolist(),
        swap_acceptance=diagnostics["swap_acceptance"],
        acceptance_rate=(float(accept_sum) / n_kept if state.accept_prob is not None else None),
        n_chains=n_chains,
        n_replicas=n_rep,
        n_steps=n_steps,
        burn_in=burn_in,
        n_base_samples=n_base,
        sampler=sampler.local_sampler.name,
        samples=sampler.replicas(state)[0],
    )
