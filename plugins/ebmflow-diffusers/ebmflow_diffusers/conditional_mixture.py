"""ClassConditionalGMM: an exact class-conditional denoiser, as a noise-conditional energy.

Each class y has its own Gaussian mixture p(x | y) = Σ_{k ∈ y} w_k N(μ_k, Σ_k), and the
classes have prior weights π_y, so p(x) = Σ_y π_y p(x | y). Under the forward process of VE
coordinates (x + σ z) every density stays a Gaussian mixture, with Σ_k + σ²I in place of
Σ_k, so the noisy conditional and unconditional energies and scores are closed form at every
noise level:

    E(x, σ, y)    = −log p_σ(x | y),          s(x, σ, y) = ∇ₓ log p_σ(x | y),
    E(x, σ)       = −log Σ_y π_y p_σ(x | y),  (``y=None``: the unconditional model).

This is what a perfectly trained class-conditional diffusion model (with classifier-free
dropout, so that it also knows the unconditional score) would output. It makes
compositions measurable against exact answers: ``ebmflow.condition(model, y)`` fixes a
label, ``a + b`` is a product of two conditionals, ``a - w * b`` a negation and
``ebmflow.guidance(condition(model, y), model, w)`` classifier-free guidance, each with a
target whose moments :mod:`ebmflow_diffusers.exact_composition` computes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

import ebmflow

Sigma = float | Tensor | None


class ClassConditionalGMM(ebmflow.Energy):
    """The exact noisy energy of class-conditional Gaussian-mixture data (module docstring).

    Args:
        means: μ, a K×d nested list: the K mixture components of all classes together.
        labels: K integers in 0 … C − 1, the class of each component (every class in
            0 … C − 1 needs at least one component).
        stds: a number or K numbers: component k has Σ_k = stds[k]² I.
        weights: K positive numbers, each component's weight within its class (normalised
            per class); uniform by default.
        class_weights: C positive numbers, the class priors π (normalised); uniform by default.
        score_only: behave like a converted ε-network: ``has_energy = False``, only scores
            (so that MALA and HMC must integrate the score for their energy differences).

    ``forward``, ``score`` and ``energy_and_score`` take ``y`` (an int, or one label per
    sample, shape ``(B,)``) and, like ``gmm``, treat ``sigma=None`` as the clean density.
    """

    noise_conditional = True
    log_class_weights: Tensor

    def __init__(
        self,
        means: list[list[float]],
        labels: list[int],
        stds: float | list[float] = 1.0,
        weights: list[float] | None = None,
        class_weights: list[float] | None = None,
        score_only: bool = False,
    ) -> None:
        super().__init__()
        owner = "ClassConditionalGMM"
        if not isinstance(means, Sequence) or not means:
            raise ebmflow.ConfigError(f"{owner}: means must be a K×d nested list, got {means!r}")
        k = len(means)
        if (
            not isinstance(labels, Sequence)
            or len(labels) != k
            or any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in labels)
        ):
            raise ebmflow.ConfigError(
                f"{owner}: labels must be {k} integers ≥ 0 (the class of each of the {k} "
                f"components), got {labels!r}"
            )
        n_classes = max(labels) + 1
        missing = sorted(set(range(n_classes)) - set(labels))
        if missing:
            raise ebmflow.ConfigError(
                f"{owner}: classes {missing} have no component; labels must cover 0 … "
                f"{n_classes - 1}, got {labels!r}"
            )
        per_std = [float(stds)] * k if isinstance(stds, (int, float)) else stds
        if not isinstance(per_std, Sequence) or len(per_std) != k:
            raise ebmflow.ConfigError(
                f"{owner}: stds must be a number or {k} numbers (one per component), got {stds!r}"
            )
        per_weight = [1.0] * k if weights is None else weights
        if not isinstance(per_weight, Sequence) or len(per_weight) != k:
            raise ebmflow.ConfigError(
                f"{owner}: weights must be {k} positive numbers (one per component), got "
                f"{weights!r}"
            )
        priors = [1.0] * n_classes if class_weights is None else class_weights
        if (
            not isinstance(priors, Sequence)
            or len(priors) != n_classes
            or not all(isinstance(p, (int, float)) and p > 0 for p in priors)
        ):
            raise ebmflow.ConfigError(
                f"{owner}: class_weights must be {n_classes} positive numbers (one per class), "
                f"got {class_weights!r}"
            )
        if not isinstance(score_only, bool):
            raise ebmflow.ConfigError(
                f"{owner}: score_only must be True or False, got {score_only!r}"
            )
        self.has_energy = not score_only
        self.n_classes = n_classes
        self.classes = nn.ModuleList(
            ebmflow.GMMEnergy(
                means=[means[i] for i in range(k) if labels[i] == c],
                stds=[per_std[i] for i in range(k) if labels[i] == c],
                weights=[per_weight[i] for i in range(k) if labels[i] == c],
                noise_conditional=True,
            )
            for c in range(n_classes)
        )
        self.event_shape = self.conditional(0).event_shape
        pi = torch.tensor(priors, dtype=torch.float64)
        self.register_buffer("log_class_weights", (pi / pi.sum()).log().to(torch.float32))

    def conditional(self, y: int) -> ebmflow.GMMEnergy:
        """p(x | y) as a noise-conditional ``gmm`` (closed-form energy, score, samples)."""
        if not isinstance(y, int) or isinstance(y, bool) or not 0 <= y < self.n_classes:
            raise ebmflow.ComponentArgumentError(
                f"ClassConditionalGMM: a label must be an integer in 0 … {self.n_classes - 1}, "
                f"got {y!r}"
            )
        return cast(ebmflow.GMMEnergy, self.classes[y])

    def marginal(self) -> ebmflow.GMMEnergy:
        """p(x) = Σ_y π_y p(x | y) as a noise-conditional ``gmm`` with all K components."""
        parts = [self.conditional(c) for c in range(self.n_classes)]
        prior = self.log_class_weights.to(torch.float64).exp()
        return ebmflow.GMMEnergy(
            means=torch.cat([p.means for p in parts]).tolist(),
            covariances=torch.cat([p.covariances for p in parts]).tolist(),
            weights=torch.cat([prior[c] * p.weights for c, p in enumerate(parts)]).tolist(),
            noise_conditional=True,
        )

    def _labels(self, y: int | Tensor, x: Tensor) -> Tensor:
        """``y`` as a ``(B,)`` long tensor of valid labels on ``x``'s device."""
        labels = torch.as_tensor(y, device=x.device)
        if labels.ndim == 0:
            labels = labels.expand(x.shape[0])
        if labels.shape != (x.shape[0],) or labels.is_floating_point() or labels.is_complex():
            raise ebmflow.ComponentArgumentError(
                f"ClassConditionalGMM: y must be one integer label or one per sample, shape "
                f"({x.shape[0]},) for this batch; got {tuple(labels.shape)} of {labels.dtype}"
            )
        if bool(((labels < 0) | (labels >= self.n_classes)).any()):
            raise ebmflow.ComponentArgumentError(
                f"ClassConditionalGMM: labels must lie in 0 … {self.n_classes - 1}, got "
                f"{sorted(set(labels.tolist()))}"
            )
        return labels.long()

    def _per_class(self, x: Tensor, sigma: Sigma, create_graph: bool) -> tuple[Tensor, Tensor]:
        """Energies (B, C) and scores (B, C, *event) of every class."""
        pairs = [
            self.conditional(c).energy_and_score(x, sigma, create_graph=create_graph)
            for c in range(self.n_classes)
        ]
        energies = torch.stack([cast(Tensor, e) for e, _ in pairs], dim=1)
        return energies, torch.stack([s for _, s in pairs], dim=1)

    def energy_and_score(
        self,
        x: Tensor,
        sigma: Sigma = None,
        *,
        create_graph: bool = False,
        y: int | Tensor | None = None,
    ) -> tuple[Tensor | None, Tensor]:
        """Closed-form E and s of p_σ(x | y), or of p_σ(x) for ``y=None`` (no autograd);
        E is ``None`` for a score-only model."""
        energy, score = self._energy_and_score(x, sigma, create_graph, y)
        return (energy if self.has_energy else None), score

    def _energy_and_score(
        self, x: Tensor, sigma: Sigma, create_graph: bool, y: int | Tensor | None
    ) -> tuple[Tensor, Tensor]:
        energies, scores = self._per_class(x, sigma, create_graph)
        if y is not None:
            rows = torch.arange(x.shape[0], device=x.device)
            labels = self._labels(y, x)
            return energies[rows, labels], scores[rows, labels]
        log_terms = self.log_class_weights.to(energies) - energies
        resp = torch.softmax(log_terms, dim=1).reshape(*energies.shape, *(1,) * (x.ndim - 1))
        return -torch.logsumexp(log_terms, dim=1), (resp * scores).sum(1)

    def forward(self, x: Tensor, sigma: Sigma = None, y: int | Tensor | None = None) -> Tensor:
        if not self.has_energy:
            return super().forward(x, sigma)  # the score-only error, naming the remedies
        return self._energy_and_score(x, sigma, torch.is_grad_enabled(), y)[0]

    def score(self, x: Tensor, sigma: Sigma = None, y: int | Tensor | None = None) -> Tensor:
        return self.energy_and_score(x, sigma, y=y)[1]
