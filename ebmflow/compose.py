"""Compositions of energies: products of experts, scaling and tempering, mixtures,
conditioning and classifier-free guidance. Each returns a new :class:`~ebmflow.Energy`.

Scores are composed from the parts' scores (each part computes its own energy and score,
so closed-form parts cost no autograd pass), never by differentiating the composite.

- ``Sum([E₁, …, Eₖ])``: E = Σ Eᵢ, the product of experts p ∝ Π pᵢ; s = Σ sᵢ.
- ``Scaled(E, c)``: E' = c·E; ``E / T`` is tempering p ∝ exp(−E/T); ``e1 - c * e2`` is the
  negation of compositional diffusion. s' = c·s.
- ``mixture([E₁, …], w)``: E = −log Σ wᵢ exp(−Eᵢ); s = Σ πᵢ sᵢ with πᵢ = softmax(log wᵢ − Eᵢ).
- ``condition(E, y)``: E(x | y) with the label fixed.
- ``guidance(E_cond, E_uncond, w)``: classifier-free guidance E_u + w(E_c − E_u).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from ebmflow.energy import Energy, Sigma, check_event_shapes
from ebmflow.errors import ComponentArgumentError, ConfigError, EnergyUnavailableError


class _Composite(Energy):
    def __init__(self, parts: Sequence[Energy], what: str) -> None:
        super().__init__()
        parts = list(parts)
        for part in parts:
            if not isinstance(part, Energy):
                raise ComponentArgumentError(
                    f"cannot build {what} from a {type(part).__name__}; expected ebmflow.Energy"
                )
        self.parts = nn.ModuleList(parts)
        self.event_shape = check_event_shapes(parts, what)
        self.noise_conditional = parts[0].noise_conditional
        self.event_space = parts[0].event_space
        self.has_energy = all(part.has_energy for part in parts)

    def _energies(self) -> Sequence[Energy]:
        """The parts (``nn.ModuleList`` holds them, typed as plain modules)."""
        return cast("Sequence[Energy]", self.parts)


class Sum(_Composite):
    """Product of experts: E(x) = Σᵢ Eᵢ(x), s(x) = Σᵢ sᵢ(x)."""

    def __init__(self, parts: Sequence[Energy]) -> None:
        flat: list[Energy] = []
        for part in parts:  # (a + b) + c is one Sum of three parts
            flat.extend(part._energies() if isinstance(part, Sum) else [part])
        if len(flat) < 1:
            raise ConfigError("a Sum needs at least one energy")
        super().__init__(flat, "a sum")

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        if not self.has_energy:
            super().forward(x, sigma)
        return sum(part(x, sigma) for part in self.parts)

    def energy_and_score(
        self, x: Tensor, sigma: Sigma = None, *, create_graph: bool = False
    ) -> tuple[Tensor | None, Tensor]:
        energy: Tensor | None = None
        score: Tensor | None = None
        for part in self._energies():
            e, s = part.energy_and_score(x, sigma, create_graph=create_graph)
            score = s if score is None else score + s
            if e is not None:
                energy = e if energy is None else energy + e
        assert score is not None  # a Sum has at least one part
        return (energy if self.has_energy else None), score

    def score(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return self.energy_and_score(x, sigma)[1]


class Scaled(_Composite):
    """E'(x) = c·E(x); c = 1/T tempers, c < 0 negates."""

    scale: float

    def __init__(self, energy: Energy, scale: float) -> None:
        if not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ConfigError(f"an energy can be scaled by a finite number, got {scale!r}")
        if isinstance(energy, Scaled):  # c·(a·E) is one Scaled, not two
            scale = scale * energy.scale
            energy = energy._energies()[0]
        super().__init__([energy], "a scaled energy")
        self.scale = float(scale)

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return self.scale * self.parts[0](x, sigma)

    def energy_and_score(
        self, x: Tensor, sigma: Sigma = None, *, create_graph: bool = False
    ) -> tuple[Tensor | None, Tensor]:
        e, s = self._energies()[0].energy_and_score(x, sigma, create_graph=create_graph)
        return (None if e is None else self.scale * e), self.scale * s

    def score(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return self.scale * self._energies()[0].score(x, sigma)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class Mixture(_Composite):
    """E(x) = −log Σᵢ wᵢ exp(−Eᵢ(x)); s(x) = Σᵢ πᵢ(x) sᵢ(x), πᵢ = softmax(log wᵢ − Eᵢ)."""

    log_weights: Tensor

    def __init__(self, energies: Sequence[Energy], weights: Sequence[float] | None = None):
        energies = list(energies)
        if len(energies) < 2:
            raise ConfigError(f"a mixture needs at least two energies, got {len(energies)}")
        super().__init__(energies, "a mixture")
        if not self.has_energy:
            raise EnergyUnavailableError(
                "a mixture weighs its parts by exp(−Eᵢ) and needs energies; parts "
                f"{[type(p).__name__ for p in energies if not p.has_energy]} are score-only"
            )
        try:
            w = (
                torch.ones(len(energies), dtype=torch.float64)
                if weights is None
                else (torch.as_tensor(weights, dtype=torch.float64))
            )
        except (TypeError, ValueError, RuntimeError):
            w = torch.full((0,), math.nan)
        if (
            w.shape != (len(energies),)
            or not bool(torch.all(w > 0))
            or not bool(torch.isfinite(w).all())
        ):
            raise ConfigError(
                f"mixture weights must be {len(energies)} positive finite numbers, got {weights!r}"
            )
        self.register_buffer("log_weights", (w / w.sum()).log().to(torch.get_default_dtype()))

    def _log_terms(self, energies: list[Tensor]) -> Tensor:
        stacked = torch.stack(energies, dim=-1)  # (B, K)
        return self.log_weights.to(stacked) - stacked

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return -torch.logsumexp(self._log_terms([p(x, sigma) for p in self.parts]), dim=-1)

    def energy_and_score(
        self, x: Tensor, sigma: Sigma = None, *, create_graph: bool = False
    ) -> tuple[Tensor | None, Tensor]:
        pairs = [p.energy_and_score(x, sigma, create_graph=create_graph) for p in self._energies()]
        # every part has an energy: __init__ refuses score-only parts
        log_terms = self._log_terms([cast(Tensor, e) for e, _ in pairs])
        weights = torch.softmax(log_terms, dim=-1)  # (B, K) responsibilities
        view = (x.shape[0],) + (1,) * (x.ndim - 1)
        # a mixture has at least two parts, so the sum is a tensor, never its start value 0
        score = cast(Tensor, sum(weights[:, i].reshape(view) * s for i, (_, s) in enumerate(pairs)))
        return -torch.logsumexp(log_terms, dim=-1), score

    def score(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return self.energy_and_score(x, sigma)[1]


def mixture(energies: Sequence[Energy], weights: Sequence[float] | None = None) -> Mixture:
    """The mixture Σᵢ wᵢ pᵢ of normalised-in-shape energies (weights default to uniform).

    Weights apply to the unnormalised densities exp(−Eᵢ); for a mixture of normalised
    densities, the parts' energies must include their log-normalisers (``gmm`` does).
    """
    return Mixture(energies, weights)


class Conditioned(Energy):
    """E(x | y) with ``y`` fixed: calls ``energy(x, sigma, y=y)``.

    ``y`` is one condition for every sample, or one per sample (N of them for a batch of
    k·N samples: row i gets condition i mod N). A condition is a label by
    default; an energy whose conditions are tensors (embeddings ``(L, D)``) says how many
    dimensions one has with an attribute ``condition_ndim``."""

    energy: Energy
    y: Tensor

    def __init__(self, energy: Energy, y: int | Tensor) -> None:
        super().__init__()
        if not isinstance(energy, Energy):
            raise ComponentArgumentError(
                f"condition() needs an ebmflow.Energy, got {type(energy).__name__}"
            )
        if not _takes_labels(energy):
            method = "forward" if energy.has_energy else "score"
            raise ComponentArgumentError(
                f"condition(): {type(energy).__name__}.{method} takes no label argument y=; "
                f"condition() fixes the label of a conditional energy E(x, σ, y) (e.g. "
                f"ebmflow-jem's classifier energies)"
            )
        self.energy = energy
        self.event_shape = energy.event_shape
        self.noise_conditional = energy.noise_conditional
        self.event_space = energy.event_space
        self.has_energy = energy.has_energy
        self.register_buffer("y", torch.as_tensor(y), persistent=False)

    def _labels(self, x: Tensor) -> Tensor:
        y = self.y.to(x.device)
        # one sample's condition has condition_ndim dimensions: 0 for a label, 2 for a
        # sequence of embeddings; one condition (with or without a batch axis of 1) is
        # shared by every sample
        ndim = getattr(self.energy, "condition_ndim", 0)
        if y.ndim == ndim or (y.ndim == ndim + 1 and y.shape[0] == 1 and x.shape[0] != 1):
            one = y.reshape(1, *y.shape[y.ndim - ndim :])
            return one.expand(x.shape[0], *one.shape[1:])
        if x.shape[0] % y.shape[0] != 0:
            raise ConfigError(
                f"condition(): {y.shape[0]} labels for a batch of {x.shape[0]} samples; give "
                f"one label, one per sample, or one per chain of a batch of k·N chains"
            )
        # k·N rows are k stacked copies of N chains (several points of each chain evaluated
        # in one call, or replica-major tempering batches): row i has chain i mod N's label
        return y.repeat(x.shape[0] // y.shape[0], *(1,) * (y.ndim - 1))

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return self.energy(x, sigma, y=self._labels(x))

    def score(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        if self.has_energy:
            return super().score(x, sigma)
        # a conditional score-only model's score takes y= beyond the base signature
        # (__init__ checked that it does)
        score: Callable[..., Tensor] = self.energy.score
        return score(x, sigma, y=self._labels(x))


def _takes_labels(energy: Energy) -> bool:
    """Whether ``energy``'s forward (score, for a score-only model) accepts ``y=``."""
    method = energy.forward if energy.has_energy else energy.score
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return True
    return any(p.name == "y" or p.kind is p.VAR_KEYWORD for p in parameters)


def condition(energy: Energy, y: int | Tensor) -> Conditioned:
    """Fix the label of a conditional energy (one that accepts ``y=`` in forward/score)."""
    return Conditioned(energy, y)


def guidance(conditional: Energy, unconditional: Energy, scale: float) -> Sum:
    """Classifier-free guidance: E = E_u + w·(E_c − E_u), i.e. s = s_u + w(s_c − s_u)."""
    return Sum([Scaled(unconditional, 1.0 - scale), Scaled(conditional, scale)])
