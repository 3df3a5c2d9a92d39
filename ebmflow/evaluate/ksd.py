"""Kernel Stein discrepancy with the inverse multiquadric kernel, and its bootstrap test
(Liu, Lee & Jordan 2016, "A Kernelized Stein Discrepancy for Goodness-of-fit Tests";
Chwialkowski, Strathmann & Gretton 2016, "A Kernel Test of Goodness of Fit"; Gorham & Mackey
2017, "Measuring Sample Quality with Kernels").

Do samples x_1 … x_n come from p ∝ exp(−E)? With the score s = ∇ log p = −∇E and a kernel k,
the Stein kernel

    u(x, y) = s(x)ᵀs(y) k(x, y) + s(x)ᵀ∇_y k + s(y)ᵀ∇_x k + tr ∇_x∇_y k

has E_{x,y∼q}[u(x, y)] = KSD²(q, p) ≥ 0, zero exactly when q = p (for the kernels below and
p with a smooth, non-vanishing density). Only the score enters, never log Z or the energy
itself, so score-only models are tested the same way. With the IMQ kernel

    k(x, y) = (c² + ‖x − y‖²)^β,   β ∈ (−1, 0)   (default c = 1, β = −½),

which Gorham & Mackey show detects non-convergence (the Gaussian kernel does not), and
r = x − y, q = c² + ‖r‖², d the dimension:

    u = q^β s(x)ᵀs(y) + 2β q^(β−1) (s(y) − s(x))ᵀ r − 2βd q^(β−1) − 4β(β−1) q^(β−2) ‖r‖².

The estimate is the U-statistic KSD²_u = 1/(n(n−1)) Σ_{i≠j} u(x_i, x_j), unbiased and
slightly negative at times when q = p. The test (Chwialkowski et al.'s wild bootstrap with
independent Rademacher weights W_i, for independent samples) compares it with the
bootstrap draws 1/(n(n−1)) Σ_{i≠j} W_i W_j u(x_i, x_j), whose law approximates the
statistic's under the null hypothesis q = p; the p-value is (1 + #{draws ≥ KSD²_u}) /
(1 + n_bootstrap). MCMC output is correlated: thin it (or use independent chains' last
states) before testing, or the test rejects too often.

The n × n matrix of u is formed in float64, so n is limited by memory (n = 10 000 takes
0.8 GB).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ebmflow.energy import Energy
from ebmflow.errors import ConfigError
from ebmflow.validation import check_positive, check_positive_int

#: fewer samples than this give a bootstrap p-value with too few distinct weightings to be
#: meaningful (and U-statistics of almost no pairs).
MIN_SAMPLES = 10


@dataclass(frozen=True)
class KSDResult:
    """What :func:`ksd` returns.

    Attributes:
        ksd2: the U-statistic estimate of KSD² (may be slightly negative when q = p).
        p_value: the bootstrap test's p-value for "the samples come from p" (``None`` with
            ``n_bootstrap=0``).
        reject: ``p_value < alpha`` (``None`` with ``n_bootstrap=0``).
        alpha: the test's level.
        n: the number of samples.
        n_bootstrap: the number of bootstrap draws.
        c, beta: the IMQ kernel's parameters.
    """

    ksd2: float
    p_value: float | None
    reject: bool | None
    alpha: float
    n: int
    n_bootstrap: int
    c: float
    beta: float


def stein_matrix(x: Tensor, score: Tensor, c: float = 1.0, beta: float = -0.5) -> Tensor:
    """The n × n matrix u(x_i, x_j) of the IMQ Stein kernel (module docstring), for
    ``x`` and ``score`` of shape ``(n, d)``, in their dtype."""
    d = x.shape[1]
    sq = x.square().sum(1)
    r2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min_(0.0)
    q = r2 + c * c
    k = q.pow(beta)
    k1 = q.pow(beta - 1.0)
    # (s(y) − s(x))ᵀ(x − y) for rows i (x) and columns j (y), expanded into inner products
    # cross[i, j] = (s_j − s_i)ᵀ(x_i − x_j) = s_jᵀx_i − s_jᵀx_j − s_iᵀx_i + s_iᵀx_j
    sx = (score * x).sum(1)
    s_dot_x = score @ x.T  # [i, j] = s_iᵀx_j
    cross = s_dot_x.T + s_dot_x
    cross -= sx[None, :]
    cross -= sx[:, None]
    u = k * (score @ score.T)
    u += 2.0 * beta * k1 * cross
    u -= 2.0 * beta * d * k1
    u -= 4.0 * beta * (beta - 1.0) * q.pow(beta - 2.0) * r2
    return u


def ksd(
    samples: Any,
    energy_or_score: Energy | Callable[[Tensor], Tensor] | Tensor,
    *,
    sigma: float | Tensor | None = None,
    c: float = 1.0,
    beta: float = -0.5,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    generator: torch.Generator | None = None,
) -> KSDResult:
    """The kernel Stein discrepancy of ``samples`` from p ∝ exp(−E), with a bootstrap test.

    Args:
        samples: ``(n, *event_shape)``, n ≥ ``MIN_SAMPLES``, independent draws to test.
        energy_or_score: an :class:`~ebmflow.Energy` (its ``score``; score-only models work),
            a function ``x -> score`` returning ``(n, *event_shape)``, or the scores
            themselves as a tensor shaped like ``samples``.
        sigma: noise level for a noise-conditional energy.
        c: the IMQ kernel's scale, > 0.
        beta: the IMQ kernel's exponent, in (−1, 0).
        n_bootstrap: wild-bootstrap draws for the p-value (0: the statistic only).
        alpha: the test's level, in (0, 1).
        generator: the only source of randomness (the Rademacher weights).
    """
    owner = "ksd"
    x = _check_samples(owner, samples)
    c = check_positive(owner, "c", c)
    if not (isinstance(beta, (int, float)) and -1.0 < beta < 0.0):
        raise ConfigError(f"{owner}: beta must be a number in (−1, 0), got {beta!r}")
    n_bootstrap = check_positive_int(owner, "n_bootstrap", n_bootstrap, minimum=0)
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ConfigError(f"{owner}: alpha must be a number in (0, 1), got {alpha!r}")
    score = _scores(owner, x, energy_or_score, sigma)
    n = x.shape[0]
    flat_x = x.detach().reshape(n, -1).to(torch.float64)
    flat_s = score.detach().reshape(n, -1).to(torch.float64)
    u = stein_matrix(flat_x, flat_s, c, float(beta))
    u.fill_diagonal_(0.0)
    pairs = n * (n - 1)
    stat = float(u.sum()) / pairs
    if n_bootstrap == 0:
        return KSDResult(stat, None, None, float(alpha), n, 0, c, float(beta))
    device = generator.device if generator is not None else torch.device("cpu")
    signs = torch.randint(0, 2, (n_bootstrap, n), generator=generator, device=device)
    w = signs.to(device=u.device, dtype=u.dtype).mul_(2.0).sub_(1.0)
    draws = ((w @ u) * w).sum(1) / pairs
    p_value = (1.0 + float((draws >= stat).sum())) / (1.0 + n_bootstrap)
    return KSDResult(stat, p_value, p_value < alpha, float(alpha), n, n_bootstrap, c, float(beta))


def _check_samples(owner: str, samples: Any) -> Tensor:
    if not isinstance(samples, Tensor):
        try:
            samples = torch.as_tensor(samples)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"{owner}: samples must be a tensor (n, *event_shape), got {type(samples).__name__}"
            ) from exc
    if samples.ndim < 2 or not samples.is_floating_point():
        raise ConfigError(
            f"{owner}: samples must be a floating-point tensor (n, *event_shape) with at "
            f"least 2 dimensions, got shape {tuple(samples.shape)} dtype {samples.dtype}"
        )
    if samples.shape[0] < MIN_SAMPLES:
        raise ConfigError(
            f"{owner}: got {samples.shape[0]} samples; the test needs at least {MIN_SAMPLES} "
            "independent samples (a few hundred for useful power)"
        )
    if not bool(torch.isfinite(samples).all()):
        raise ConfigError(f"{owner}: samples hold NaN or ±∞ values")
    return samples


def _scores(owner: str, x: Tensor, source: Any, sigma: Any) -> Tensor:
    if isinstance(source, Energy):
        if source.event_shape is not None and tuple(source.event_shape) != tuple(x.shape[1:]):
            raise ConfigError(
                f"{owner}: samples have event shape {tuple(x.shape[1:])}, but "
                f"{type(source).__name__} has event_shape {tuple(source.event_shape)}"
            )
        score = source.score(x, sigma)
        what = f"{type(source).__name__}.score"
    elif isinstance(source, Tensor):
        score, what = source, "the scores given"
    elif callable(source):
        score, what = source(x), "the score function"
    else:
        raise ConfigError(
            f"{owner}: energy_or_score must be an ebmflow.Energy, a function x -> score, or "
            f"a tensor of scores shaped like the samples; got {type(source).__name__}"
        )
    if not isinstance(score, Tensor) or score.shape != x.shape:
        shape = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
        raise ConfigError(
            f"{owner}: {what} has shape {shape}; expected the samples' shape "
            f"{tuple(x.shape)} (one score per sample, like x)"
        )
    if not bool(torch.isfinite(score).all()):
        raise ConfigError(f"{owner}: {what} holds NaN or ±∞ values at the samples")
    return score
