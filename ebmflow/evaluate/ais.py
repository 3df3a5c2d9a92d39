"""log Z by annealed importance sampling (Neal 2001, "Annealed importance sampling").

Path of energies from a Gaussian base E₀ to the target E₁ = ``energy``:

    E_β(x) = (1 − β) E₀(x) + β E₁(x),    0 = β_0 < β_1 < … < β_K = 1
    E₀(x) = ½ Σ_d ((x_d − μ_d) / s_d)²,   log Z₀ = Σ_d log(√(2π) s_d)

Each of N chains starts at x ~ N(μ, s²) with log w = 0; for k = 1 … K

    log w ← log w + (β_k − β_{k−1}) (E₀(x) − E₁(x))        (= E_{β_{k−1}}(x) − E_{β_k}(x))
    x ← T_k(x)    ``steps_per_temp`` transitions of the sampler on E_{β_k} (none at k = K)

and then

    log Ẑ = log Z₀ + logsumexp_n(log w_n) − log N,
    stderr ≈ sd_n(w_n) / (√N · mean_n(w_n))           (delta method on Ẑ = mean_n w_n)
    ESS = (Σ_n w_n)² / Σ_n w_n².

Ẑ is unbiased for Z whatever the mixing of the transitions, so log Ẑ is biased low by about
stderr²/2 (Jensen); a small ESS (relative to N) means the stderr itself is unreliable — use
more temperatures or a base closer to the target.

Cost: the sampler's state caches E_β and s_β = −∇E_β at the current x, and E₀ is closed
form, so nothing is evaluated twice. With r = β_k / β_{k−1} the weight update and the move of
the cached state to the next temperature need no evaluation of E₁:

    E_{β_k}(x) = r E_{β_{k−1}}(x) + (1 − r) E₀(x),   s_{β_k}(x) = r s_{β_{k−1}}(x) + (1 − r) s₀(x)

so a run costs one energy+score evaluation at the start plus the sampler's own cost (one per
MALA or ULA step, L per HMC step) for (K − 1)·``steps_per_temp`` transitions. This relies on
the Sampler contract that ``state.energy`` and ``state.score`` are E and −∇E of the target
at ``state.x`` (true of every built-in sampler).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ebmflow.compose import Scaled, Sum
from ebmflow.energy import Energy, Sigma
from ebmflow.errors import ComponentArgumentError, ConfigError
from ebmflow.evaluate.arguments import (
    base_tensor,
    check_has_energy,
    evaluation_dtype_device,
    resolve_event_shape,
)
from ebmflow.evaluate.quadrature import json_float
from ebmflow.samplers.base import Sampler, SamplerState
from ebmflow.validation import check_positive_int

SCHEDULES = ("sigmoid", "geometric", "linear")
#: the first nonzero β of the geometric schedule.
GEOMETRIC_BETA_MIN = 1e-3
#: δ of the sigmoid schedule (Grosse, Ghahramani & Adams 2015).
SIGMOID_DELTA = 4.0


@dataclass(frozen=True)
class AISResult:
    """What :func:`ais_log_z` returns.

    Attributes:
        log_z: log Ẑ = log Z₀ + logsumexp(log w) − log N.
        stderr: delta-method standard error of ``log_z`` (NaN for one chain).
        ess: effective sample size of the final weights, (Σ w)² / Σ w², in [1, N].
        n_chains: N.
        n_temps: K, the number of annealing steps.
        log_z_base: log Z₀ of the Gaussian base.
        acceptance_rate: mean Metropolis acceptance over all transitions (``None`` for
            samplers without an accept step, or with no transitions).
        sampler: the sampler's name.
        schedule: the schedule's name (``"custom"`` for explicit βs).
        log_weights: the N log-weights, float64.
        samples: the chains' final positions ``(N, *event_shape)``; with ``log_weights``
            they are importance samples of exp(−E₁)/Z.
    """

    log_z: float
    stderr: float
    ess: float
    n_chains: int
    n_temps: int
    log_z_base: float
    acceptance_rate: float | None
    sampler: str
    schedule: str
    log_weights: Tensor = field(repr=False)
    samples: Tensor = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the tensors are left out)."""
        return {
            "log_z": json_float(self.log_z),
            "stderr": json_float(self.stderr),
            "ess": json_float(self.ess),
            "n_chains": self.n_chains,
            "n_temps": self.n_temps,
            "log_z_base": json_float(self.log_z_base),
            "acceptance_rate": json_float(self.acceptance_rate),
            "sampler": self.sampler,
            "schedule": self.schedule,
        }


class _GaussianBase(Energy):
    """E₀(x) = ½ Σ ((x − μ)/s)², s₀(x) = −(x − μ)/s², in closed form (no autograd)."""

    def __init__(
        self, mean: Tensor, std: Tensor, event_shape: tuple[int, ...], noise_conditional: bool
    ) -> None:
        super().__init__()
        self.mean, self.std = mean, std  # plain tensors: not parameters of the path
        self.event_shape = event_shape
        self.noise_conditional = noise_conditional

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return 0.5 * ((x - self.mean) / self.std).flatten(1).pow(2).sum(dim=1)

    def energy_and_score(
        self, x: Tensor, sigma: Sigma = None, *, create_graph: bool = False
    ) -> tuple[Tensor, Tensor]:
        z = (x - self.mean) / self.std
        return 0.5 * z.flatten(1).pow(2).sum(dim=1), -z / self.std

    def score(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return -(x - self.mean) / self.std**2


def _schedule(schedule: Any, n_temps: int) -> tuple[Tensor, str]:
    """β_0 = 0 < β_1 < … < β_K = 1 as float64 ``(K + 1,)``, and the schedule's name.

    - ``linear``: β_k = k / K.
    - ``geometric``: β_1 … β_K log-spaced from ``GEOMETRIC_BETA_MIN`` to 1.
    - ``sigmoid`` (Grosse, Ghahramani & Adams 2015, "Sandwiching the marginal likelihood
      using bidirectional Monte Carlo"): β̃_k = sigmoid(δ (2k/K − 1)),
      β_k = (β̃_k − β̃_0) / (β̃_K − β̃_0), δ = ``SIGMOID_DELTA``.
    - an explicit increasing sequence from 0 to 1 (``n_temps`` is then its length − 1).
    """
    k = torch.arange(n_temps + 1, dtype=torch.float64)
    if isinstance(schedule, str):
        if schedule == "linear":
            return k / n_temps, schedule
        if schedule == "geometric":
            betas = torch.zeros(n_temps + 1, dtype=torch.float64)
            betas[1:] = torch.logspace(
                math.log10(GEOMETRIC_BETA_MIN), 0.0, n_temps, dtype=torch.float64
            )
            betas[-1] = 1.0
            return betas, schedule
        if schedule == "sigmoid":
            s = torch.sigmoid(SIGMOID_DELTA * (2.0 * k / n_temps - 1.0))
            return (s - s[0]) / (s[-1] - s[0]), schedule
    elif isinstance(schedule, (Sequence, Tensor)) and not isinstance(schedule, (str, bytes)):
        betas = torch.as_tensor(schedule, dtype=torch.float64).flatten()
        if (
            betas.numel() >= 2
            and bool(torch.isfinite(betas).all())
            and float(betas[0]) == 0.0
            and float(betas[-1]) == 1.0
            and bool((betas[1:] > betas[:-1]).all())
        ):
            return betas, "custom"
    raise ConfigError(
        f"ais_log_z: schedule must be one of {', '.join(repr(s) for s in SCHEDULES)} or a "
        f"strictly increasing sequence of β from 0 to 1; got {schedule!r}"
    )


def _resolve_sampler(sampler: Any) -> Sampler:
    if isinstance(sampler, Sampler):
        return sampler
    if isinstance(sampler, (str, Mapping)):
        from ebmflow.registry import current_host

        built = current_host().create("sampler", sampler)
        if isinstance(built, Sampler):
            return built
        raise ComponentArgumentError(
            f"ais_log_z: sampler {sampler!r} built a {type(built).__name__}, not an ebmflow.Sampler"
        )
    raise ComponentArgumentError(
        "ais_log_z: sampler must be a registered sampler name, a config dict with a 'name' "
        f"key, or an ebmflow.Sampler; got {type(sampler).__name__}"
    )


def _path(base: Energy, energy: Energy, beta: float) -> Energy:
    """E_β = (1 − β) E₀ + β E₁ as an ebmflow composition."""
    return Sum([Scaled(base, 1.0 - beta), Scaled(energy, beta)])


def _energy(state: SamplerState) -> Tensor:
    """The energy a state on the path caches: never ``None``, since every intermediate
    energy sums parts that have energies (``check_has_energy``)."""
    assert state.energy is not None
    return state.energy


def ais_log_z(
    energy: Energy,
    *,
    dim: int | None = None,
    event_shape: Sequence[int] | None = None,
    n_chains: int = 1024,
    n_temps: int = 200,
    sampler: str | Mapping[str, Any] | Sampler = "mala",
    steps_per_temp: int = 1,
    base_std: float | Tensor = 1.0,
    base_mean: float | Tensor = 0.0,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    schedule: str | Sequence[float] | Tensor = "sigmoid",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> AISResult:
    """log Z of ``energy`` by annealed importance sampling from a Gaussian base.

    See the module docstring for the algorithm; the base N(μ, s²) should cover the target
    (a base narrower than the target gives high-variance weights).

    Args:
        energy: an :class:`~ebmflow.Energy` with energy values.
        dim, event_shape: the shape of one sample (``dim=d`` means ``(d,)``); default the
            energy's ``event_shape``.
        n_chains: N ≥ 1 independent AIS chains (≥ 2 for a standard error).
        n_temps: K ≥ 1 annealing steps.
        sampler: the transition kernel: a registered sampler name, a config dict
            (``{"name": "hmc", "step_size": 0.1}``) or a :class:`~ebmflow.Sampler`.
        steps_per_temp: sampler steps at each intermediate temperature (≥ 0; 0 is plain
            annealed importance weighting without moves).
        base_std, base_mean: s and μ of the base (numbers or tensors broadcastable to the
            event shape).
        sigma: noise level for noise-conditional energies.
        generator: the only source of randomness (the global RNG is never touched); without
            one a fresh, nondeterministically seeded generator is used.
        schedule: ``"sigmoid"`` (default), ``"geometric"``, ``"linear"`` or explicit βs.
        dtype, device: where to run; default the energy's parameters', else float64 on the
            CPU.
        progress: show a tqdm progress bar over the temperatures.
    """
    owner = "ais_log_z"
    check_has_energy(owner, energy)
    shape = resolve_event_shape(owner, energy, dim, event_shape)
    n_chains = check_positive_int(owner, "n_chains", n_chains)
    n_temps = check_positive_int(owner, "n_temps", n_temps)
    steps_per_temp = check_positive_int(owner, "steps_per_temp", steps_per_temp, minimum=0)
    betas, schedule_name = _schedule(schedule, n_temps)
    n_temps = betas.numel() - 1
    kernel = _resolve_sampler(sampler)
    dtype, device = evaluation_dtype_device(energy, dtype, device)
    if generator is None:
        generator = torch.Generator(device=device)
        generator.seed()
    elif not isinstance(generator, torch.Generator):
        raise ComponentArgumentError(
            f"{owner}: generator must be a torch.Generator, got {generator!r}"
        )
    elif generator.device.type != device.type:
        raise ConfigError(
            f"{owner}: generator is on {generator.device} but the chains run on {device}"
        )
    mean = base_tensor(owner, "base_mean", base_mean, shape, dtype, device)
    std = base_tensor(owner, "base_std", base_std, shape, dtype, device)
    base = _GaussianBase(mean, std, shape, energy.noise_conditional)
    log_z_base = float(std.to(torch.float64).log().sum()) + 0.5 * math.log(2 * math.pi) * (
        math.prod(shape)
    )

    x = mean + std * torch.randn(
        (n_chains, *shape), generator=generator, device=device, dtype=dtype
    )
    e0 = base(x).to(torch.float64)
    state = kernel.init(_path(base, energy, float(betas[1])), x, sigma)
    log_w = e0 - _energy(state).to(torch.float64)  # (β_1 − β_0)(E₀ − E₁) = E₀ − E_{β_1}
    accept_sum, n_accept = 0.0, 0
    temperatures: Any = range(1, n_temps)
    if progress:
        from tqdm import tqdm

        temperatures = tqdm(temperatures, desc="AIS", unit="temp", dynamic_ncols=True)
    for k in temperatures:
        path = _path(base, energy, float(betas[k]))
        for _ in range(steps_per_temp):
            state = kernel.step_and_adapt(path, state, generator)
            if state.accept_prob is not None:
                accept_sum += float(state.accept_prob.mean())
                n_accept += 1
        # move the cached E_{β_k}, s_{β_k} to β_{k+1}: E' = r E + (1 − r) E₀, r = β_{k+1}/β_k
        r = float(betas[k + 1] / betas[k])
        e0, s0 = base.energy_and_score(state.x)
        cached = _energy(state)
        e_k = cached.to(torch.float64)
        e_next = r * e_k + (1.0 - r) * e0.to(torch.float64)
        log_w = log_w + (e_k - e_next)
        if k + 1 < n_temps:
            state = state.replace(
                energy=e_next.to(cached.dtype),
                score=r * state.score + (1.0 - r) * s0,
            )
    if bool(torch.isnan(log_w).any()) or not bool(torch.isfinite(log_w.max())):
        raise ConfigError(
            f"{owner}: the importance weights are unusable ({int(torch.isnan(log_w).sum())} "
            f"NaN, largest log-weight {float(log_w.max())}); check that the energy is finite "
            "where the base N(base_mean, base_std²) puts its samples"
        )
    log_mean_w = float(torch.logsumexp(log_w, dim=0)) - math.log(n_chains)
    w = (log_w - log_w.max()).exp()
    stderr = float(w.std() / (w.mean() * math.sqrt(n_chains))) if n_chains > 1 else math.nan
    ess = float(w.sum() ** 2 / w.pow(2).sum())
    return AISResult(
        log_z=log_z_base + log_mean_w,
        stderr=stderr,
        ess=ess,
        n_chains=n_chains,
        n_temps=n_temps,
        log_z_base=log_z_base,
        acceptance_rate=accept_sum / n_accept if n_accept else None,
        sampler=kernel.name,
        schedule=schedule_name,
        log_weights=log_w,
        samples=state.x,
    )
