"""Score matching with the exact Jacobian trace (Hyvärinen 2005, "Estimation of
Non-Normalized Statistical Models by Score Matching")."""

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


class ScoreMatching(ScoreObjective):
    """Hyvärinen's score matching, ``sm``:

        J(θ) = E_x[ ½‖s_θ(x)‖² + tr ∇ₓ s_θ(x) ],    s_θ = −∇ₓE_θ,

    which equals ½ E‖s_θ(x) − ∇ₓ log p_data(x)‖² up to a constant that does not depend on θ
    (integration by parts), so no partition function and no data score are needed.

    The trace tr ∇ₓ s = Σᵢ ∂sᵢ/∂xᵢ is computed exactly, by one backward pass per
    dimension i = 1 … d (each with ``create_graph``, so J stays differentiable in θ); its
    cost grows as d, and dimensions above ``max_dim`` are refused — use ``ssm`` (sliced score
    matching, one backward per projection) or ``dsm`` there.

    Normalisation: per example ½‖s‖² + tr ∇ₓ s, summed over the d dimensions (as written),
    averaged over the batch.

    ``sigma`` (optional): match the score of the σ-smoothed data instead, x̃ = x + σz with
    z ~ N(0, I) drawn from the generator; a noise-conditional energy is evaluated at σ and a
    clean energy at ``sigma=None``. With ``sigma=None`` (default) the data are used as
    they are, and the energy must be clean.

    Metrics: ``loss`` (J on the batch), ``score_sq`` (E ½‖s‖²), ``trace`` (E tr ∇ₓ s).

    Args:
        max_dim: the largest event dimension d accepted (≥ 1), default 16.
        sigma: optional noise level σ > 0 of the data perturbation, default ``None``.
    """

    def __init__(self, max_dim: int = 16, sigma: float | None = None) -> None:
        super().__init__()
        self.max_dim = ebmflow.check_positive_int("sm", "max_dim", max_dim)
        self.sigma = check_sigma("sm", sigma, allow_none=True)

    def forward(
        self, energy: ebmflow.Energy, batch: Tensor, *, generator: torch.Generator | None = None
    ) -> ebmflow.ObjectiveOutput:
        d = event_dim("sm", batch)
        if d > self.max_dim:
            raise ebmflow.ConfigError(
                f"sm: the data have dimension d = {d} (event shape {tuple(batch.shape[1:])}), "
                f"above max_dim={self.max_dim}; the exact Jacobian trace costs one backward "
                f"pass per dimension. Use ssm (sliced score matching: one backward per "
                f"projection) or dsm, or raise max_dim if {d} backward passes per step are "
                "affordable"
            )
        sigma = energy_sigma("sm", energy, self.sigma)
        x = noisy(batch, self.sigma, generator).detach().requires_grad_(True)
        score = model_score("sm", energy, x, sigma)
        flat = score.flatten(1)
        trace = torch.zeros_like(flat[:, 0])
        for i in range(d):
            trace = trace + input_gradient(flat[:, i].sum(), x).flatten(1)[:, i]
        score_sq = 0.5 * ebmflow.sum_squares(score)
        loss = (score_sq + trace).mean()
        return finish("sm", loss, {"score_sq": score_sq.mean(), "trace": trace.mean()})
