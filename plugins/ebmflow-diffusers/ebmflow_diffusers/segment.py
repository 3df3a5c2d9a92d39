"""Energies for score-only models by integrating the score along a segment.

A score-only model (a diffusion ε-network) gives s(x, σ) = −∇ₓE(x, σ) but no E. For a
conservative field, the energy difference between two points is a line integral along the
segment x(u) = x₀ + u d, d = x₁ − x₀:

    E(x₁) − E(x₀) = −∫₀¹ ⟨s(x₀ + u d, σ), d⟩ du
                  ≈ −Σₖ wₖ ⟨s(x₀ + uₖ d, σ), d⟩,      uₖ = k / (n − 1), k = 0 … n − 1,

with the composite trapezoid rule (wₖ = h·(½, 1, …, 1, ½), h = 1/(n − 1), any n ≥ 2; error
O(h²)) or the composite Simpson rule (wₖ = h/3·(1, 4, 2, …, 4, 1), odd n ≥ 3; error O(h⁴)).
The end-point scores are the ones a sampler evaluates anyway, so the estimate costs n − 2
extra evaluations per segment: none for the two-point trapezoid, one for three-point Simpson.
The integrand is linear in u when the score is linear in x (a Gaussian), so both rules are
then exact up to rounding; for anything else the estimate carries the quadrature error (and,
for a learned network whose field is not exactly conservative, the path dependence), which
is the approximation the Metropolis test of MALA or HMC then makes.

Two ways to use it:

- :class:`PathEnergy` is an ordinary energy: E(x) = −∫ from a reference point r to x (so
  E(r) = 0). Any sampler works with it, at the cost of n − 1 evaluations per energy call and
  an error that grows with ‖x − r‖.
- :meth:`PathEnergy.anchored` gives, for one MALA or HMC step, an energy that integrates from
  the chain's current state (cached x, E, s) along the points the step evaluates: for MALA
  the proposal segment x → x′ itself, for HMC the leapfrog polyline. That is the estimate of
  E(x′) − E(x) the Metropolis test needs, with the shortest possible segments.
"""

from __future__ import annotations

import torch
from torch import Tensor

import ebmflow

RULES = ("trapezoid", "simpson")


def quadrature_weights(n_points: int, rule: str) -> Tensor:
    """Weights wₖ (float64) of the composite rule on n equally spaced nodes of [0, 1]."""
    if rule not in RULES:
        raise ebmflow.ConfigError(
            f"line integral: rule must be one of {', '.join(RULES)}, got {rule!r}"
        )
    if not isinstance(n_points, int) or isinstance(n_points, bool) or n_points < 2:
        raise ebmflow.ConfigError(
            f"line integral: n_points must be an integer ≥ 2, got {n_points!r}"
        )
    h = 1.0 / (n_points - 1)
    if rule == "trapezoid":
        w = torch.full((n_points,), h, dtype=torch.float64)
        w[0] = w[-1] = h / 2
        return w
    if n_points % 2 == 0:
        raise ebmflow.ConfigError(
            f"line integral: Simpson's rule needs an odd number of points ≥ 3, got {n_points}"
        )
    w = torch.full((n_points,), 2.0 * h / 3, dtype=torch.float64)
    w[1::2] = 4.0 * h / 3
    w[0] = w[-1] = h / 3
    return w


def segment_difference(
    model: ebmflow.Energy,
    x0: Tensor,
    x1: Tensor,
    sigma=None,
    *,
    n_points: int = 2,
    rule: str = "trapezoid",
    score0: Tensor | None = None,
    score1: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Estimate ΔE = E(x₁) − E(x₀) per chain, ``(B,)``, from scores on the segment.

    ``score0`` / ``score1``, when known, are used instead of evaluating the model at the
    end points. All the scores still needed are evaluated in one batched call of
    ``model.score``: the points stacked point-major, so row i of the call is chain i mod B
    (which is how ``ebmflow.condition`` with one label per chain gives each row its chain's
    label). Returns ``(ΔE, s(x₁))``.
    """
    weights = quadrature_weights(n_points, rule)
    d = x1 - x0
    batch = x0.shape[0]
    known = {0: score0, n_points - 1: score1}
    needed = [k for k in range(n_points) if known.get(k) is None]
    scores: dict[int, Tensor] = {k: s for k, s in known.items() if s is not None}
    if needed:
        points = torch.cat(
            [
                x0 + (k / (n_points - 1)) * d if 0 < k < n_points - 1 else (x0 if k == 0 else x1)
                for k in needed
            ]
        )
        sigma_t = ebmflow.broadcast_sigma(sigma, x0)
        sigma_all = None if sigma_t is None else sigma_t.repeat(len(needed))
        with torch.no_grad():  # an estimate for a Metropolis test: never differentiated
            evaluated = model.energy_and_score(points, sigma_all)[1]
        for i, k in enumerate(needed):
            scores[k] = evaluated[i * batch : (i + 1) * batch]
    flat_d = d.flatten(1)
    delta = torch.zeros(batch, dtype=x0.dtype, device=x0.device)
    for k in range(n_points):
        delta.add_(torch.linalg.vecdot(scores[k].flatten(1), flat_d), alpha=-float(weights[k]))
    return delta, scores[n_points - 1]


class PathEnergy(ebmflow.Energy):
    """The energy of a score-only model by line integration from a reference point:

        E(x, σ) = −∫₀¹ ⟨s(r + u (x − r), σ), x − r⟩ du,     E(r, σ) = 0,

    estimated with ``rule`` on ``n_points`` nodes (see the module docstring). The score is
    the model's own, evaluated once (it is the last node of the rule).

    Args:
        model: a score-only (or any) ebmflow energy.
        n_points: nodes of the rule (≥ 2; odd for Simpson).
        rule: ``"trapezoid"`` or ``"simpson"``.
        reference: r, shape ``event_shape`` (one point for all chains) or ``(N, *event)`` (one
            per chain; a batch of k·N chains uses row i mod N, as parallel tempering's
            replica-major batches need). Default: the origin.
    """

    has_energy = True

    def __init__(
        self,
        model: ebmflow.Energy,
        n_points: int = 5,
        rule: str = "simpson",
        reference: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, ebmflow.Energy):
            raise ebmflow.ComponentArgumentError(
                f"PathEnergy needs an ebmflow.Energy, got {type(model).__name__}"
            )
        quadrature_weights(n_points, rule)  # validates
        self.model = model
        self.n_points = n_points
        self.rule = rule
        self.event_shape = model.event_shape
        self.noise_conditional = model.noise_conditional
        self.reference = reference

    def _reference(self, x: Tensor) -> Tensor:
        r = self.reference
        if r is None:
            return torch.zeros_like(x)
        r = r.to(device=x.device, dtype=x.dtype)
        if r.shape == x.shape[1:]:
            return r.expand_as(x)
        if r.ndim == x.ndim and r.shape[1:] == x.shape[1:] and x.shape[0] % r.shape[0] == 0:
            return r.repeat(x.shape[0] // r.shape[0], *(1,) * (x.ndim - 1))
        raise ebmflow.ConfigError(
            f"PathEnergy: reference of shape {tuple(r.shape)} does not fit a batch of shape "
            f"{tuple(x.shape)}; give one point {tuple(x.shape[1:])} or (N, *event) with the "
            f"batch size a multiple of N"
        )

    def energy_and_score(self, x, sigma=None, *, create_graph=False):
        if create_graph:
            raise ebmflow.EnergyUnavailableError(
                "PathEnergy estimates energies for sampling; it is not differentiable in the "
                "model's parameters (train the score model itself, e.g. with multiscale-dsm)"
            )
        return segment_difference(
            self.model, self._reference(x), x, sigma, n_points=self.n_points, rule=self.rule
        )

    def forward(self, x: Tensor, sigma=None) -> Tensor:
        return self.energy_and_score(x, sigma)[0]

    def score(self, x: Tensor, sigma=None) -> Tensor:
        return self.model.score(x, sigma)

    def anchored(self, x: Tensor, energy: Tensor, score: Tensor | None) -> AnchoredPath:
        """An energy for one sampler step from the state (x, E, s): each evaluation
        integrates from the previous point evaluated (first: the anchor x). ``score=None``
        means the anchor's score is not known yet; the first evaluation must then be at x
        itself (a sampler's ``init``). With a score, an evaluation at x itself (the very
        tensor) returns (E, s) without calling the model."""
        return AnchoredPath(self, x, energy, score)


class AnchoredPath(ebmflow.Energy):
    """E along the polyline of the points a sampler step evaluates, from a cached state.

    The k-th call ``energy_and_score(x_k)`` returns E_k = E_{k−1} + ΔE(x_{k−1} → x_k) and
    s(x_k), with (x₀, E₀, s₀) the anchor state. Made by :meth:`PathEnergy.anchored`; one
    object serves one ``init`` or one ``step``.
    """

    has_energy = True

    def __init__(self, path: PathEnergy, x: Tensor, energy: Tensor, score: Tensor | None):
        super().__init__()
        self.path = path
        self.event_shape = path.event_shape
        self.noise_conditional = path.noise_conditional
        self.__dict__.update(_x=x, _e=energy, _s=score)

    def energy_and_score(self, x, sigma=None, *, create_graph=False):
        if create_graph:
            raise ebmflow.EnergyUnavailableError(
                "AnchoredPath estimates energies for sampling; it is not differentiable"
            )
        if x is self._x and self._s is not None:  # the anchor itself: nothing to integrate
            return self._e, self._s
        if self._s is None:
            if x is not self._x and not torch.equal(x, self._x):
                raise ebmflow.ConfigError(
                    "AnchoredPath: the anchor's score is unknown, so the first evaluation must "
                    "be at the anchor itself (as a sampler's init does)"
                )
            energy, score = self._e, self.path.model.energy_and_score(x, sigma)[1]
        else:
            delta, score = segment_difference(
                self.path.model,
                self._x,
                x,
                sigma,
                n_points=self.path.n_points,
                rule=self.path.rule,
                score0=self._s,
            )
            energy = self._e + delta
        self.__dict__.update(_x=x, _e=energy, _s=score)
        return energy, score

    def forward(self, x: Tensor, sigma=None) -> Tensor:
        return self.energy_and_score(x, sigma)[0]

    def score(self, x: Tensor, sigma=None) -> Tensor:
        return self.path.model.score(x, sigma)
