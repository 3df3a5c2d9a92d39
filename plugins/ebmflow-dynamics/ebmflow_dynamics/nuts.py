"""The No-U-Turn Sampler (Hoffman & Gelman 2014) with multinomial sampling (Betancourt 2017,
"A Conceptual Introduction to Hamiltonian Monte Carlo"), as Stan and BlackJAX run it,
batched over chains: each chain builds its own tree.

One step from x with momentum p₀ ~ N(0, M), H = E(x) + ½ pᵀM⁻¹p:

    for depth j = 0, 1, …, max_tree_depth − 1 (while the chain runs):
        v ~ ±1;  build a subtree of 2ʲ leapfrog steps of size v·ε from the trajectory's end
        in direction v (:mod:`ebmflow_dynamics.trajectory`), with its own multinomial
        proposal x_sub and weight W_sub = Σ_leaves exp(H₀ − H)
        if it turned or diverged inside: stop (the subtree is rejected)
        else: take x_sub with probability min(1, W_sub / W) (biased progressive sampling),
              W ← W + W_sub; stop if the whole trajectory makes a U-turn
    the new state is the proposal

A leaf *diverges* when H − H₀ > ``max_energy_error`` (1000, as Stan) or is NaN. The
acceptance statistic of a step (``state.accept_prob``, what the warm-up's dual averaging
reads) is Stan's: the mean of min(1, exp(H₀ − H)) over the leaves built.

The warm-up is the shared :class:`ebmflow.Warmup` (dual averaging of ε and, by default,
Stan's windowed diagonal mass matrix), applied between steps; ``step`` is a fixed kernel
that reads ε and M⁻¹ from the state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import ebmflow
from ebmflow.extend import (
    Warmup,
    check_finite,
    check_positive,
    check_positive_int,
    check_target_accept,
    row_dot,
)
from ebmflow_dynamics.trajectory import Counters, build_subtree, is_turning, rows

NAME = "nuts"
EVALUATE = ("active", "all")


class NUTS(ebmflow.Sampler):
    """No-U-Turn sampler, one tree per chain (module docstring).

    Args:
        step_size: leapfrog ε > 0 (the starting value when adapting).
        max_tree_depth: at most 2^max_tree_depth − 1 leapfrog steps per transition (1-30).
        adapt_steps: warm-up steps (0: none): dual averaging of ε toward ``target_accept``.
        target_accept: the mean acceptance statistic the warm-up aims for, in (0, 1).
        adapt_mass: during the warm-up also estimate a diagonal mass matrix (Stan's
            windows; warm-ups of 20 steps or more).
        search_step_size: before the warm-up, double or halve the starting step size until
            one leapfrog step's acceptance crosses ½ (Stan's initial search; ``False``
            starts dual averaging from ``step_size`` itself).
        max_energy_error: a leaf whose H − H₀ exceeds this diverges (> 0).
        evaluate: ``"active"`` evaluates only the chains still building their trees (the
            cost of a step is the total number of leapfrog steps); ``"all"`` evaluates
            every chain at every leaf, for energies that hold one value per chain (e.g.
            ``ebmflow.condition(e, labels)`` with a label per chain).
    """

    needs_energy = True

    def __init__(
        self,
        step_size: float = 0.1,
        max_tree_depth: int = 10,
        adapt_steps: int = 0,
        target_accept: float = 0.8,
        adapt_mass: bool = True,
        max_energy_error: float = 1000.0,
        evaluate: str = "active",
        search_step_size: bool = True,
    ) -> None:
        self.step_size = check_positive(NAME, "step_size", step_size)
        self.max_tree_depth = check_positive_int(NAME, "max_tree_depth", max_tree_depth)
        if self.max_tree_depth > 30:
            raise ebmflow.ConfigError(
                f"{NAME}: max_tree_depth must be an integer from 1 to 30 (2^depth − 1 "
                f"leapfrog steps per transition), got {max_tree_depth!r}"
            )
        self.adapt_steps = check_positive_int(NAME, "adapt_steps", adapt_steps, minimum=0)
        self.target_accept = check_target_accept(NAME, target_accept)
        if not isinstance(adapt_mass, bool):
            raise ebmflow.ConfigError(
                f"{NAME}: adapt_mass must be True or False, got {adapt_mass!r}"
            )
        self.adapt_mass = adapt_mass
        self.max_energy_error = check_positive(NAME, "max_energy_error", max_energy_error)
        if evaluate not in EVALUATE:
            raise ebmflow.ConfigError(
                f"{NAME}: evaluate must be one of {', '.join(map(repr, EVALUATE))}, got "
                f"{evaluate!r}"
            )
        self.evaluate = evaluate
        if not isinstance(search_step_size, bool):
            raise ebmflow.ConfigError(
                f"{NAME}: search_step_size must be True or False, got {search_step_size!r}"
            )
        self.search_step_size = search_step_size
        self.adaptation = Warmup(
            self.adapt_steps,
            self.target_accept,
            self.adapt_mass,
            search_step_size=self.search_step_size,
        )

    @property
    def name(self) -> str:
        return NAME

    def check_compatible(self, energy: ebmflow.Energy, x: Tensor) -> None:
        if isinstance(energy, ebmflow.Energy) and not energy.has_energy:
            raise ebmflow.ConfigError(
                f"{NAME} weighs every point of a trajectory by exp(−H), H = E + ½ pᵀM⁻¹p, so "
                f"it needs energy values, but {type(energy).__name__} is score-only "
                "(has_energy=False); use a score-only sampler ('underdamped-langevin', "
                "'uha', 'langevin'), or give the model an energy"
            )
        super().check_compatible(energy, x)

    def init(self, energy, x, sigma=None) -> ebmflow.SamplerState:
        state = self.adaptation.init(super().init(energy, x, sigma), self.step_size, energy)
        zeros = torch.zeros(x.shape[0], device=x.device, dtype=torch.float64)
        totals = {"divergences": zeros, "leapfrog_steps": zeros.clone()}
        return state.replace(extras={**state.extras, **totals})

    def step(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None = None,
    ) -> ebmflow.SamplerState:
        if state.energy is None:
            raise ebmflow.ConfigError(f"{NAME}: the state holds no energies (score-only model)")
        eps = self.adaptation.step_size(state)
        inv_mass = self.adaptation.inverse_mass(state)
        if inv_mass is not None:
            inv_mass = inv_mass.flatten()
        x0 = state.x.flatten(1)
        b, dim = x0.shape
        evaluate = self._evaluator(energy, state)
        p0 = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        if inv_mass is not None:
            p0 = p0 / inv_mass.sqrt()
        h0 = state.energy + 0.5 * row_dot(p0, p0 if inv_mass is None else inv_mass * p0)
        ends = (x0, p0, state.score.flatten(1))
        left = [t.clone() for t in ends]  # x, p, score at each end, updated in place
        right = [t.clone() for t in ends]
        rho = p0.clone()
        log_w = torch.zeros_like(h0)
        prop = [x0.clone(), state.energy.clone(), left[2].clone()]
        zeros = torch.zeros(b, device=x0.device, dtype=x0.dtype)
        counters = Counters(
            zeros, zeros.clone(), torch.zeros(b, dtype=torch.bool, device=x0.device)
        )
        depth = torch.zeros(b, dtype=torch.int64, device=x0.device)
        running = torch.arange(b, device=x0.device)
        for j in range(self.max_tree_depth):
            n = running.shape[0]
            forward = torch.rand(n, generator=generator, device=x0.device) < 0.5
            fwd = rows(forward, dim)
            start = [torch.where(fwd, b[running], a[running]) for a, b in zip(left, right)]
            step = torch.where(forward, eps, -eps).to(x0.dtype)
            depth[running] = j + 1
            sub = build_subtree(
                evaluate,
                running,
                start[0],
                start[1],
                start[2],
                step,
                h0[running],
                2**j,
                inv_mass,
                self.max_energy_error,
                counters,
                generator,
            )
            chains = sub.chains
            if chains.shape[0] == 0:
                break
            # biased progressive sampling: the new subtree's proposal with min(1, W_sub/W)
            old = log_w[chains]
            u = torch.rand(chains.shape[0], generator=generator, device=x0.device)
            take = u.log().to(old.dtype) < sub.log_weight - old
            taken = chains[take]
            prop[0][taken] = sub.prop_x[take]
            prop[1][taken] = sub.prop_energy[take]
            prop[2][taken] = sub.prop_score[take]
            log_w[chains] = torch.logaddexp(old, sub.log_weight)
            rho[chains] += sub.rho
            # the subtree's last leaf is the trajectory's new end in its direction
            went_forward = forward[torch.searchsorted(running, chains)]
            for end, new in ((right, went_forward), (left, ~went_forward)):
                moved = chains[new]
                end[0][moved], end[1][moved], end[2][moved] = (
                    sub.x[new],
                    sub.p[new],
                    sub.score[new],
                )
            turned = is_turning(left[1][chains], right[1][chains], rho[chains], inv_mass)
            running = chains[~turned]
            if running.shape[0] == 0:
                break
        x_new = prop[0].view(state.x.shape)
        check_finite(self.name, state.step, prop[1], x_new)
        _check_weights(log_w, state.step)
        accept = counters.accept / counters.n_leapfrog.clamp(min=1.0)
        extras = {
            **state.extras,
            "tree_depth": depth,
            "n_leapfrog": counters.n_leapfrog,
            "diverging": counters.diverged,
            "divergences": state.extras["divergences"] + counters.diverged,
            "leapfrog_steps": state.extras["leapfrog_steps"] + counters.n_leapfrog,
        }
        return ebmflow.SamplerState(
            x_new,
            prop[1],
            prop[2].view(state.x.shape),
            state.sigma,
            state.step + 1,
            accept,
            extras,
        )

    def _evaluator(self, energy: ebmflow.Energy, state: ebmflow.SamplerState) -> Any:
        """The energy and score at positions (n, D) of the chains ``chains``."""
        event = state.x.shape[1:]
        sigma, b = state.sigma, state.x.shape[0]
        everywhere = self.evaluate == "all"
        canvas = state.x.flatten(1)

        def evaluate(x: Tensor, chains: Tensor) -> tuple[Tensor, Tensor]:
            if everywhere and chains.shape[0] < b:
                full = canvas.clone()
                full[chains] = x
                e, s = energy.energy_and_score(full.view(b, *event), sigma)
                return _energy(e)[chains], s.flatten(1)[chains]
            sig = None if sigma is None else sigma[chains]
            e, s = energy.energy_and_score(x.view(x.shape[0], *event), sig)
            return _energy(e), s.flatten(1)

        return evaluate

    def adapt(self, state: ebmflow.SamplerState) -> ebmflow.SamplerState:
        """The warm-up after the step that produced ``state`` (module docstring)."""
        return self.adaptation.update(state)

    def diagnostics(self, state: ebmflow.SamplerState) -> dict[str, Any]:
        """Step size, mass matrix, and per-chain totals since ``init``: divergent
        transitions and leapfrog steps; the last step's tree depths."""
        extras = state.extras
        out: dict[str, Any] = {
            "step_size": self.adaptation.step_size(state),
            "divergences": int(extras["divergences"].sum()),
            "divergences_per_chain": extras["divergences"],
            "leapfrog_steps": int(extras["leapfrog_steps"].sum()),
        }
        if "tree_depth" in extras:
            out["tree_depth"] = extras["tree_depth"]
            out["mean_tree_depth"] = float(extras["tree_depth"].double().mean())
        inv_mass = self.adaptation.inverse_mass(state)
        if inv_mass is not None:
            out["inverse_mass"] = inv_mass
        return out


def _energy(e: Tensor | None) -> Tensor:
    if e is None:
        raise ebmflow.ConfigError(
            f"{NAME} needs energy values, but the energy returned none (score-only model)"
        )
    return e


def _check_weights(log_w: Tensor, step: int) -> None:
    """A trajectory weight of +∞ comes from an energy of −∞ on it: a broken energy, which
    would take all the weight, not a divergent leaf."""
    n_bad = int(torch.isposinf(log_w).sum())
    if n_bad:
        raise ebmflow.SamplerDivergedError(
            f"{NAME} diverged at step {step}: an energy of −∞ on the trajectories of {n_bad} "
            f"of {log_w.shape[0]} chains",
            step=step,
            n_chains=n_bad,
        )
