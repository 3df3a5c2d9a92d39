"""What the score-matching objectives share: the model's score, the noise level an energy
is given, loss weightings, and turning a loss into an ``ObjectiveOutput`` (non-finite losses
raise).

Conventions of every objective in this plugin:

- s_θ(x, σ) = −∇ₓE_θ(x, σ) for an energy, or the network's output for a score-only model
  (``ebmflow.ScoreModel``, ``has_energy = False``). For an energy the score comes from
  ``energy.energy_and_score(x, σ, create_graph=True)``, so the loss differentiates through
  an input gradient and stays differentiable in θ.
- Losses sum over the event dimensions and average over the batch.
- All randomness (noise z, noise levels σ, projections v) comes from the ``generator``
  passed to ``forward``; the global RNG is never used. z and v are drawn on the batch's
  device (so the generator lives there too, as for ``ebmflow.gaussian_like``); σ follows
  the noise schedules' convention (drawn on the generator's device, then moved).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, overload

import torch
from torch import Tensor

import ebmflow
from ebmflow_score.errors import NonFiniteLossError

#: accepted spellings of a loss weighting λ(σ) = σ^p, name -> p.
WEIGHTINGS = {"sigma2": 2.0, "none": 0.0}


class ScoreObjective(ebmflow.Objective):
    """Base of this plugin's objectives: ``repr`` shows the constructor arguments."""

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())


def model_score(owner: str, energy: Any, x: Tensor, sigma: Any) -> Tensor:
    """s_θ(x, σ) like ``x``, differentiable in θ (and in ``x`` when ``x`` requires grad)."""
    if not isinstance(energy, ebmflow.Energy):
        raise ebmflow.ComponentArgumentError(
            f"{owner}: expected an ebmflow.Energy (or ScoreModel) to train, got "
            f"{type(energy).__name__}"
        )
    _, score = energy.energy_and_score(x, sigma, create_graph=True)
    if score.shape != x.shape:
        raise ebmflow.ConfigError(
            f"{owner}: {type(energy).__name__} returned a score of shape {tuple(score.shape)} "
            f"for inputs of shape {tuple(x.shape)}; a score has the shape of its input"
        )
    return score


def energy_sigma(owner: str, energy: Any, sigma: float | None) -> float | None:
    """The noise level a single-level objective hands the energy: σ for a noise-conditional
    energy, ``None`` for a clean one (which then models the σ-smoothed density itself)."""
    if not getattr(energy, "noise_conditional", False):
        return None
    if sigma is None:
        raise ebmflow.ConfigError(
            f"{owner}: {type(energy).__name__} is noise-conditional (noise_conditional=True) "
            f"and needs a noise level, but {owner} was built with sigma=None (clean data). "
            f"Give {owner} a sigma (it then matches the score of the σ-smoothed data at that "
            "σ), use dsm (one σ) or multiscale-dsm (a noise schedule), or train a clean energy"
        )
    return sigma


@overload
def check_sigma(owner: str, sigma: Any, *, allow_none: Literal[False]) -> float: ...


@overload
def check_sigma(owner: str, sigma: Any, *, allow_none: bool) -> float | None: ...


def check_sigma(owner: str, sigma: Any, *, allow_none: bool) -> float | None:
    """Validate a noise level argument: a finite number > 0 (or ``None`` if allowed)."""
    if sigma is None and allow_none:
        return None
    return ebmflow.check_positive(owner, "sigma", sigma)


def weighting_power(owner: str, weighting: Any) -> float:
    """The power p of the weighting λ(σ) = σ^p: ``"sigma2"`` (p = 2), ``"none"`` (p = 0) or a
    finite number p."""
    if isinstance(weighting, str) and weighting in WEIGHTINGS:
        return WEIGHTINGS[weighting]
    if (
        isinstance(weighting, (int, float))
        and not isinstance(weighting, bool)
        and (math.isfinite(weighting))
    ):
        return float(weighting)
    raise ebmflow.ConfigError(
        f"{owner}: unknown weighting {weighting!r}; accepted: 'sigma2' (λ(σ) = σ², the "
        "default), 'none' (λ(σ) = 1), or a number p (λ(σ) = σ^p)"
    )


def noisy(x: Tensor, sigma: float | None, generator: torch.Generator | None) -> Tensor:
    """x̃ = x + σz with z ~ N(0, I) from ``generator`` (``x`` itself when σ is ``None``)."""
    if sigma is None:
        return x
    return torch.add(x, ebmflow.gaussian_like(x, generator), alpha=sigma)


def event_dim(owner: str, x: Tensor) -> int:
    """d = the number of entries of one sample of the batch ``x`` of shape ``(B, *event)``."""
    if x.ndim < 2 or x.shape[0] == 0:
        raise ebmflow.ConfigError(
            f"{owner}: expected a batch of shape (B, *event_shape) with B ≥ 1, got {tuple(x.shape)}"
        )
    return math.prod(x.shape[1:])


def input_gradient(output: Tensor, x: Tensor) -> Tensor:
    """∇ₓ Σ output, kept differentiable (create_graph); zeros where ``output`` ignores ``x``."""
    (grad,) = torch.autograd.grad(output, x, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def finish(
    owner: str,
    loss: Tensor,
    parts: Mapping[str, Tensor],
    constants: Mapping[str, float] | None = None,
) -> ebmflow.ObjectiveOutput:
    """``ObjectiveOutput(loss, metrics)`` with ``metrics = {"loss": ..., **parts,
    **constants}`` as floats (one device synchronisation for all of them).

    Raises :class:`NonFiniteLossError` when the loss is NaN or infinite.
    """
    if parts:
        values = torch.stack([loss.detach(), *(p.detach().to(loss.dtype) for p in parts.values())])
        metrics = dict(zip(["loss", *parts], values.tolist()))
    else:
        metrics = {"loss": loss.item()}
    if not math.isfinite(metrics["loss"]):
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        raise NonFiniteLossError(
            f"{owner}: the loss is not finite ({shown}): the energy or its score overflowed. "
            "Lower the learning rate, clip gradients, check the data for NaN/inf, and check "
            "that the noise levels are not too small for the network"
        )
    metrics.update(constants or {})
    return ebmflow.ObjectiveOutput(loss, metrics)
