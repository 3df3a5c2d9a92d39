"""Sliced score matching (Song, Garg, Shi & Ermon 2019, "Sliced Score Matching: A Scalable
Approach to Density and Score Estimation")."""

from __future__ import annotations

import torch
from torch import Tensor

import ebmflow
from ebmflow_score._common import (
    ScoreObjective,
    check_sigma,
    energy_sigma,
    event_dim,
    finish,
    input_gradient,
    model_score,
    noisy,
)

#: projection distributions: name -> description. Both have E[v vᵀ] = I.
PROJECTIONS = {
    "rademacher": "entries ±1 with probability ½ each",
    "gaussian": "entries N(0, 1)",
}


def draw_projections(
    kind: str, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Random projections v of ``shape`` on ``like``'s device and dtype, from ``generator``."""
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    v = torch.empty(shape, device=like.device, dtype=like.dtype)
    return v.bernoulli_(0.5, generator=generator).mul_(2.0).sub_(1.0)


class SlicedScoreMatching(ScoreObjective):
    """Sliced score matching, ``ssm``: Hyvärinen's objective with the Jacobian trace
    replaced by random projections v with E[v vᵀ] = I, so that E_v[vᵀ ∇ₓs v] = tr ∇ₓs.

    With M = ``n_projections`` projections v₁ … v_M per example, drawn from the generator:

        variance_reduction=True  (SSM-VR, default):
            J = E_x[ ½‖s_θ(x)‖² + (1/M) Σₘ vₘᵀ ∇ₓ(vₘᵀ s_θ(x)) ]
        variance_reduction=False (plain SSM):
            J = E_x[ (1/M) Σₘ ( ½ (vₘᵀ s_θ(x))² + vₘᵀ ∇ₓ(vₘᵀ s_θ(x)) ) ]

    Both have the expectation (over v) of ``sm``'s J. SSM-VR uses the exact ½‖s‖², which
    has the same expectation as ½ (vᵀs)² and lower variance. Each projection costs one extra
    backward pass (the gradient ∇ₓ(vₘᵀ s), kept differentiable in θ), independent of the
    dimension d.

    Normalisation: per example, summed over the d dimensions as written, averaged over
    the batch.

    ``sigma`` (optional): match the score of the σ-smoothed data x̃ = x + σz instead (z from
    the generator, drawn before the projections); a noise-conditional energy is evaluated at
    σ, a clean energy at ``sigma=None``.

    Metrics: ``loss``, ``score_sq`` (the first term's mean), ``trace`` (the mean of the
    trace estimate (1/M) Σₘ vₘᵀ ∇ₓ(vₘᵀ s)).

    Args:
        n_projections: M ≥ 1, default 1.
        projection: ``"rademacher"`` (default) or ``"gaussian"``.
        variance_reduction: use SSM-VR (default ``True``).
        sigma: optional noise level σ > 0 of the data perturbation, default ``None``.
    """

    def __init__(
        self,
        n_projections: int = 1,
        projection: str = "rademacher",
        variance_reduction: bool = True,
        sigma: float | None = None,
    ) -> None:
        super().__init__()
        self.n_projections = ebmflow.check_positive_int("ssm", "n_projections", n_projections)
        if projection not in PROJECTIONS:
            accepted = ", ".join(f"{k!r} ({v})" for k, v in PROJECTIONS.items())
            raise ebmflow.ConfigError(
                f"ssm: unknown projection {projection!r}; accepted: {accepted}"
            )
        self.projection = projection
        if not isinstance(variance_reduction, bool):
            raise ebmflow.ConfigError(
                f"ssm: variance_reduction must be True or False, got {variance_reduction!r}"
            )
        self.variance_reduction = variance_reduction
        self.sigma = check_sigma("ssm", sigma, allow_none=True)

    def forward(
        self, energy: ebmflow.Energy, batch: Tensor, *, generator: torch.Generator | None = None
    ) -> ebmflow.ObjectiveOutput:
        event_dim("ssm", batch)
        sigma = energy_sigma("ssm", energy, self.sigma)
        x = noisy(batch, self.sigma, generator).detach().requires_grad_(True)
        v = draw_projections(self.projection, (self.n_projections, *x.shape), x, generator)
        score = model_score("ssm", energy, x, sigma)
        trace = score.new_zeros(x.shape[0])
        projected_sq = score.new_zeros(x.shape[0])
        for vm in v:
            projected = (vm * score).flatten(1).sum(1)  # vₘᵀ s, shape (B,)
            trace = trace + (vm * input_gradient(projected.sum(), x)).flatten(1).sum(1)
            if not self.variance_reduction:
                projected_sq = projected_sq + projected.square()
        if self.variance_reduction:
            score_sq = 0.5 * ebmflow.sum_squares(score)
        else:
            score_sq = projected_sq * (0.5 / self.n_projections)
        trace = trace / self.n_projections
        loss = (score_sq + trace).mean()
        return finish("ssm", loss, {"score_sq": score_sq.mean(), "trace": trace.mean()})
