"""Diffusion recovery likelihood (Gao, Song, Poole, Wu & Kingma 2021, "Learning Energy-Based
Models by Diffusion Recovery Likelihood").

A noise-conditional energy E_θ(x, σ) models the data smoothed at each level of a noise
schedule, p_σ = p_data ∗ N(0, σ²I) — the same convention as ``multiscale-dsm``, so a model
trained either way is sampled by ``annealed-langevin`` over the schedule. With levels
σ_0 < … < σ_{L−1} and a sample x_t = x + σ_t z at level t, its noisier version is
y = x_t + δ_t z′, δ_t² = σ_{t+1}² − σ_t² (the next level; the top level continues the
schedule's last ratio). The *recovery* density of x_t given y,

    p_θ(x_t | y) ∝ exp(−E_θ(x_t, σ_t) − ‖y − x_t‖² / (2δ_t²)),

is far easier to sample than p_θ itself (for small δ_t it is nearly Gaussian around y), and
its log-likelihood has the gradient

    ∇_θ log p_θ(x_t | y) = −∇_θ E_θ(x_t, σ_t) + E_{x̃∼p_θ(·|y)}[∇_θ E_θ(x̃, σ_t)].

The objective estimates the expectation with k steps of short-run Langevin on the
conditional and minimises

    L = mean_i λ_i [E_θ(x_t,i, σ_t,i) − E_θ(x̃_i, σ_t,i)],   λ_i = (δ_min / δ_t,i)^p,

with the chains x̃ held fixed (no gradient through them); the quadratic term does not depend
on θ and cancels. The chains start at x_t by default (``start = "data"``): x_t is an exact
draw of the data's own conditional, so at the optimum the chains are already in equilibrium,
and a chain that cannot move contributes no gradient. Gao et al. start them at y
(``start = "noisy"``); there a chain that stalls (a stiffening energy rejects its moves)
stays at y, where the loss pays for raising E(y) and lowering E(x_t) — steepening the
energy further, a feedback that diverges at large learning rates. With ``metropolis`` and
``target_acceptance``, each σ bin's step is also adapted during training (Robbins–Monro on
its log) toward that MALA acceptance rate, so the steps shrink as the energy sharpens.

By default σ is drawn per example from the schedule's continuous training
distribution (as ``multiscale-dsm`` does; karras' log-normal puts much of the batch near
σ_min, the level a density is evaluated at), and δ = σ √(r² − 1) for a fixed ratio
r = ``ratio`` of consecutive levels; with ``n_levels`` = L the levels are the schedule's L
discrete ones, one drawn uniformly per example. The Langevin step at level t is
η_t = ½ b² δ_t² (Gao et al.'s s = b·σ with the ULA convention x' = x − η∇U + √(2η) ε),
b = ``step_factor``: the conditional's width is about δ_t, so every level mixes in the same
number of steps. The weights λ do not change any level's optimum; they balance the levels'
gradients: x̃ lies within about δ_t of x_t, so level t's energy difference, and its
gradient, scale like δ_t², and without λ (p = 0, Gao et al.'s choice) the coarse levels
drown the fine one a density is evaluated at; p = ``weighting`` = 2 evens them out.

Metrics: ``loss``, ``e_data``, ``e_neg`` (mean energies), ``move`` (mean distance the chains
moved from their start, relative to δ_t: near 0 means the chains are stuck), and with
``metropolis`` the mean ``acceptance_rate``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import check_target_accept, per_row, row_dot


class DiffusionRecoveryLikelihood(ebmflow.Objective):
    """Diffusion recovery likelihood with short-run Langevin on the conditional.

    Args:
        noise_schedule: a registered noise-schedule name, a config dict (``{"name":
            "geometric", "sigma_max": 3.0, "sigma_min": 0.1}``) or a schedule object; its
            ``n_levels`` discrete levels are the levels σ_t (default: ``geometric``).
        n_levels: ``None`` (default): σ drawn per example from the schedule's continuous
            training distribution (``schedule.sample``, e.g. log-normal for ``karras``),
            with δ = σ √(ratio² − 1); or L ≥ 2 discrete levels ``schedule.sigmas(L)``.
        ratio: > 1, the next level's σ over this one's with continuous levels (default 1.5).
        k: Langevin steps on each conditional per training step, ≥ 1 (default 20).
        step_factor: b > 0, the Langevin step at level t is ½ b² δ_t² (default 0.5).
        weighting: p ≥ 0, each example's term weighted by (δ_min/δ_t)^p (default 2).
        metropolis: ``True``: MALA steps (a Metropolis–Hastings test per chain removes ULA's
            bias and rejects unstable moves; same cost per step); ``False`` (default): ULA.
        target_acceptance: ``None`` (default): fixed steps; a rate in (0, 1) (with
            ``metropolis``): each σ bin's step (one per discrete level, or 16 bins of
            log σ) is multiplied by a factor adapted toward this mean acceptance rate during
            training, e.g. 0.6.
        start: ``"data"`` (default): the chains start at x_t; ``"noisy"``: at y (Gao et al.).
    """

    owner = "drl"

    def __init__(
        self,
        noise_schedule: Any = "geometric",
        n_levels: int | None = None,
        ratio: float = 1.5,
        k: int = 20,
        step_factor: float = 0.5,
        weighting: float = 2.0,
        metropolis: bool = False,
        target_acceptance: float | None = None,
        start: str = "data",
    ) -> None:
        super().__init__()
        owner = self.owner
        self.schedule = _resolve_schedule(owner, noise_schedule)
        self.n_levels = (
            None
            if n_levels is None
            else ebmflow.check_positive_int(owner, "n_levels", n_levels, minimum=2)
        )
        ratio = ebmflow.check_positive(owner, "ratio", ratio)
        if ratio <= 1.0:
            raise ebmflow.ConfigError(f"{owner}: ratio must be a number > 1, got {ratio!r}")
        self.ratio = ratio
        self.k = ebmflow.check_positive_int(owner, "k", k)
        self.step_factor = ebmflow.check_positive(owner, "step_factor", step_factor)
        self.weighting = ebmflow.check_positive(owner, "weighting", weighting, allow_zero=True)
        if not isinstance(metropolis, bool):
            raise ebmflow.ConfigError(
                f"{owner}: metropolis must be true or false, got {metropolis!r}"
            )
        self.metropolis = metropolis
        if target_acceptance is not None and not metropolis:
            raise ebmflow.ConfigError(
                f"{owner}: target_acceptance needs metropolis = true (an acceptance rate to "
                f"steer by); got target_acceptance = {target_acceptance!r} with "
                "metropolis = false"
            )
        self.target_acceptance = (
            None
            if target_acceptance is None
            else check_target_accept(owner, target_acceptance, "target_acceptance")
        )
        if start not in ("data", "noisy"):
            raise ebmflow.ConfigError(
                f"{owner}: start must be 'data' (chains start at x_t) or 'noisy' (at y), "
                f"got {start!r}"
            )
        self.start = start
        self.last_acceptance: float | None = None
        self.levels: Tensor | None = None
        self.gaps: Tensor | None = None
        if self.n_levels is not None:
            sigmas = self.schedule.sigmas(self.n_levels).flip(0)  # increasing, float64
            gaps = (sigmas[1:].square() - sigmas[:-1].square()).sqrt()
            top = gaps[-1] * sigmas[-1] / sigmas[-2]
            #: the levels σ_0 < … < σ_{L−1} and the noise δ_t to the next one (float64, CPU)
            self.levels = sigmas
            self.gaps = torch.cat([gaps, top.reshape(1)])
        n_bins = self.n_levels if self.n_levels is not None else _STEP_BINS
        #: log of each σ bin's step multiplier, adapted toward ``target_acceptance`` (and
        #: saved with the Trainer's checkpoints); ``None`` without adaptation
        self.log_step_scale: Tensor | None
        self.register_buffer(
            "log_step_scale",
            None if self.target_acceptance is None else torch.zeros(n_bins),
        )

    def step_bin(self, sigma: Tensor) -> Tensor:
        """Each example's σ bin (``(B,)`` int64 on σ's device): its discrete level, or one of
        equal bins of log σ over [σ_min, σ_max]."""
        assert self.log_step_scale is not None
        log_sigma = sigma.detach().double().log()
        if self.levels is not None:
            levels = self.levels.log().to(log_sigma.device)
            return (log_sigma[:, None] - levels).abs().argmin(dim=1)
        n_bins = self.log_step_scale.shape[0]
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        position = (log_sigma - lo) / max(hi - lo, 1e-12)
        return (position * (n_bins - 1)).round().clamp(0, n_bins - 1).long()

    @property
    def delta_min(self) -> float:
        """The smallest gap δ (at σ_min), the unit of the weighting."""
        if self.gaps is None:
            return self.schedule.sigma_min * math.sqrt(self.ratio**2 - 1.0)
        return float(self.gaps.min())

    @property
    def sigma_min(self) -> float:
        """The smallest level, the one to evaluate a density at."""
        return self.schedule.sigma_min if self.levels is None else float(self.levels[0])

    @property
    def sigma_max(self) -> float:
        """The largest level, where annealed sampling starts."""
        return self.schedule.sigma_max if self.levels is None else float(self.levels[-1])

    def extra_repr(self) -> str:
        levels = "continuous" if self.n_levels is None else str(self.n_levels)
        return (
            f"levels=[{self.sigma_min:.4g} … {self.sigma_max:.4g}] ({levels}), "
            f"k={self.k}, step_factor={self.step_factor}"
        )

    def draw(
        self, batch: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Levels σ_t, gaps δ_t (``(B,)``), the noisy data x_t and their noisier versions y."""
        if self.levels is None or self.gaps is None or self.n_levels is None:
            sigma = self.schedule.sample(batch.shape[0], generator, batch.device, dtype=batch.dtype)
            delta = sigma * math.sqrt(self.ratio**2 - 1.0)
        else:
            device = generator.device if generator is not None else torch.device("cpu")
            index = torch.randint(
                self.n_levels, (batch.shape[0],), generator=generator, device=device
            ).cpu()
            sigma = self.levels[index].to(device=batch.device, dtype=batch.dtype)
            delta = self.gaps[index].to(device=batch.device, dtype=batch.dtype)
        x_t = batch + per_row(sigma, batch.shape[1:]) * ebmflow.gaussian_like(batch, generator)
        y = x_t + per_row(delta, batch.shape[1:]) * ebmflow.gaussian_like(batch, generator)
        return sigma, delta, x_t, y

    def recover(
        self,
        energy: ebmflow.Energy,
        y: Tensor,
        sigma: Tensor,
        delta: Tensor,
        generator: torch.Generator | None,
        start: Tensor | None = None,
    ) -> Tensor:
        """k Langevin steps on p_θ(x | y) from ``start`` (default: y), each chain with its
        own step ½ b² δ² (times its σ bin's adapted factor with ``target_acceptance``)
        (with ``metropolis``, MALA steps: one energy and score evaluation per step too)."""
        shape = y.shape[1:]
        inv_var = per_row(delta.square().reciprocal(), shape)
        step_size = 0.5 * self.step_factor**2 * delta.square()
        bins = None
        if self.log_step_scale is not None:
            bins = self.step_bin(sigma)
            step_size = step_size * self.log_step_scale[bins].exp().to(step_size.dtype)
        eta = per_row(step_size, shape)
        noise_scale = (2.0 * eta).sqrt()

        if not self.metropolis:
            self.last_acceptance = None
            x = y if start is None else start
            for step in range(self.k):
                e, s = energy.energy_and_score(x, sigma)
                ebmflow.check_finite(self.owner, step, e, x)
                # the conditional's score s_θ(x, σ) − (x − y)/δ², then the ULA move
                drift = torch.addcmul(s, x - y, inv_var, value=-1.0)
                x = torch.addcmul(x, eta, drift)
                x.addcmul_(noise_scale, ebmflow.gaussian_like(x, generator))
            ebmflow.check_finite(self.owner, self.k, None, x)
            return x.detach()
        x, acceptance = self._mala(
            energy, y, sigma, delta, inv_var, eta, noise_scale, generator, start
        )
        if bins is not None:
            self._adapt(bins, acceptance)
        return x

    @torch.no_grad()
    def _adapt(self, bins: Tensor, acceptance: Tensor) -> None:
        # Robbins–Monro on each bin's log step: a stiffening energy (rejections) shrinks the
        # step before the chains stall at y, where the loss would reward steepening further
        assert self.target_acceptance is not None and self.log_step_scale is not None
        n_bins = self.log_step_scale.shape[0]
        counts = torch.bincount(bins, minlength=n_bins).float()
        sums = torch.bincount(bins, weights=acceptance.float(), minlength=n_bins)
        mean = torch.where(counts > 0, sums / counts.clamp(min=1.0), self.target_acceptance)
        self.log_step_scale.add_(_ADAPT_RATE * (mean - self.target_acceptance))

    def _mala(
        self,
        energy: ebmflow.Energy,
        y: Tensor,
        sigma: Tensor,
        delta: Tensor,
        inv_var: Tensor,
        eta: Tensor,
        noise_scale: Tensor,
        generator: torch.Generator | None,
        start: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        half_precision = 0.5 * delta.square().reciprocal()
        eta_row = eta.flatten(1)[:, 0]

        def conditional(x: Tensor) -> tuple[Tensor, Tensor]:
            # U = E_θ(x, σ) + ‖x − y‖²/(2δ²) and its score s_θ(x, σ) − (x − y)/δ²
            e, s = energy.energy_and_score(x, sigma)
            offset = x - y
            u = e + half_precision * row_dot(offset, offset)
            return u, torch.addcmul(s, offset, inv_var, value=-1.0)

        x = y if start is None else start
        u, drift = conditional(x)
        accepted = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        for step in range(self.k):
            ebmflow.check_finite(self.owner, step, u, x)
            noise = ebmflow.gaussian_like(x, generator)
            proposal = x + eta * drift + noise_scale * noise
            u_new, drift_new = conditional(proposal)
            # log q(x | x′) − log q(x′ | x) for the Langevin proposal, per chain
            back = x - proposal - eta * drift_new
            log_q = 0.5 * row_dot(noise, noise) - row_dot(back, back) / (4.0 * eta_row)
            keep, prob = ebmflow.metropolis_accept(
                self.owner, step, u - u_new + log_q, u_new, generator
            )
            x = ebmflow.select(keep, proposal, x)
            u = torch.where(keep, u_new, u)
            drift = ebmflow.select(keep, drift_new, drift)
            accepted = accepted + prob
        ebmflow.check_finite(self.owner, self.k, None, x)
        acceptance = accepted / self.k
        self.last_acceptance = float(acceptance.mean())
        return x.detach(), acceptance

    def forward(
        self, energy: ebmflow.Energy, batch: Tensor, *, generator: torch.Generator | None = None
    ) -> ebmflow.ObjectiveOutput:
        if not energy.noise_conditional or not energy.has_energy:
            raise ebmflow.ConfigError(
                f"{self.owner}: {type(energy).__name__} must be a noise-conditional energy "
                "E(x, σ) with energy values (e.g. 'mlp' with noise_conditional = true); "
                f"noise_conditional = {energy.noise_conditional}, has_energy = "
                f"{energy.has_energy}"
            )
        data = batch.detach()
        sigma, delta, x_t, y = self.draw(data, generator)
        start = x_t if self.start == "data" else y
        x_neg = self.recover(energy, y, sigma, delta, generator, start=start)
        n = data.shape[0]
        e = energy(torch.cat([x_t, x_neg]), torch.cat([sigma, sigma]))
        e_data, e_neg = e[:n].mean(), e[n:].mean()
        if self.weighting > 0:
            weight = (self.delta_min / delta).pow(self.weighting)
            loss = (weight * (e[:n] - e[n:])).mean()
        else:
            loss = e_data - e_neg
        with torch.no_grad():
            move = ((x_neg - start).flatten(1).norm(dim=1) / delta).mean()
            values = torch.stack([loss, e_data, e_neg, move]).tolist()
        names = ["loss", "e_data", "e_neg", "move"]
        if self.last_acceptance is not None:
            names.append("acceptance_rate")
            values.append(self.last_acceptance)
        if not math.isfinite(values[0]):
            raise ebmflow.NonFiniteLossError(
                f"{self.owner}: the loss is not finite ({values[0]}; mean E(x_t) = "
                f"{values[1]:.4g}, mean E(x̃) = {values[2]:.4g}): the energy diverged. Lower "
                "the learning rate or step_factor"
            )
        return ebmflow.ObjectiveOutput(loss, dict(zip(names, values)))


#: σ bins of the adapted step with continuous levels, and the Robbins–Monro rate per
#: training step (a bin seen every step moves its step by e^{±0.05} at most)
_STEP_BINS = 16
_ADAPT_RATE = 0.05


def _resolve_schedule(owner: str, noise_schedule: Any) -> Any:
    """A noise-schedule object from a registered name, a config dict or an object."""
    if isinstance(noise_schedule, (str, dict)):
        return ebmflow.current_host().create("noise_schedule", noise_schedule)
    if callable(getattr(noise_schedule, "sigmas", None)):
        return noise_schedule
    raise ebmflow.ComponentArgumentError(
        f"{owner}: noise_schedule must be a registered noise-schedule name (e.g. 'geometric', "
        "'karras'), a config dict with a 'name' key, or a schedule object with sigmas(n); got "
        f"{type(noise_schedule).__name__} {noise_schedule!r}"
    )
