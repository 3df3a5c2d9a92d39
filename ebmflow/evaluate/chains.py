"""MCMC convergence diagnostics over chains: effective sample size and split-R̂.

Both take ``samples`` shaped ``(n_steps, n_chains, *event_shape)`` (``SampleResult.trajectory``
is laid out this way) and return one value per event element, shaped ``event_shape``, as
float64. Both follow the Stan Reference Manual ("Effective sample size", "Potential scale
reduction") and Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021, "Rank-normalization,
folding, and localization: an improved R̂ for assessing convergence of MCMC".

Notation: M chains of N draws θ_{n,m}; chain means θ̄_m; within-chain variances s_m²
(divisor N − 1); W = mean_m s_m²; B/N = variance of the chain means (divisor M − 1);
var⁺ = (N − 1)/N · W + B/N.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ebmflow.errors import ConfigError


def _as_chains(owner: str, samples: Any, min_steps: int) -> tuple[Tensor, tuple[int, ...]]:
    """``samples`` as float64 ``(N, M, D)`` and the event shape."""
    samples = torch.as_tensor(samples)
    if samples.ndim < 2:
        raise ConfigError(
            f"{owner}: samples must be shaped (n_steps, n_chains, *event_shape), got shape "
            f"{tuple(samples.shape)}"
        )
    if samples.shape[0] < min_steps or samples.shape[1] < 1:
        raise ConfigError(
            f"{owner}: needs at least {min_steps} steps and 1 chain, got samples of shape "
            f"{tuple(samples.shape)} (n_steps, n_chains, *event_shape)"
        )
    if not torch.is_floating_point(samples):
        samples = samples.to(torch.float64)
    if not bool(torch.isfinite(samples).all()):
        raise ConfigError(f"{owner}: samples hold NaN or ±∞ values")
    event_shape = tuple(samples.shape[2:])
    x = samples.detach().to(torch.float64).reshape(samples.shape[0], samples.shape[1], -1)
    return x, event_shape


def _split(x: Tensor) -> Tensor:
    """Split each chain in two halves (the middle draw of an odd-length chain is dropped):
    ``(N, M, D) -> (N // 2, 2M, D)``."""
    half = x.shape[0] // 2
    return torch.cat([x[:half], x[x.shape[0] - half :]], dim=1)


def _autocovariance(x: Tensor) -> Tensor:
    """Per-chain autocovariance γ_m(t) = (1/N) Σ_n (θ_n − θ̄)(θ_{n+t} − θ̄), t = 0 … N − 1,
    by FFT (zero-padded to avoid wrap-around); ``(N, M, D) -> (N, M, D)``."""
    n = x.shape[0]
    centred = x - x.mean(dim=0, keepdim=True)
    n_fft = 1 << (2 * n - 1).bit_length()
    f = torch.fft.rfft(centred, n=n_fft, dim=0)
    return torch.fft.irfft(f * f.conj(), n=n_fft, dim=0)[:n] / n


def _within_and_plus(x: Tensor) -> tuple[Tensor, Tensor]:
    """W and var⁺ per dimension for ``(N, M, D)`` chains."""
    n, m = x.shape[0], x.shape[1]
    within = x.var(dim=0, correction=1).mean(dim=0)
    between = x.mean(dim=0).var(dim=0, correction=1) if m > 1 else torch.zeros_like(within)
    return within, (n - 1) / n * within + between


def _ess(x: Tensor) -> Tensor:
    """ESS per dimension of ``(N, M, D)`` chains (see :func:`ess`)."""
    n, m = x.shape[0], x.shape[1]
    gamma = _autocovariance(x).mean(dim=1)  # (N, D): mean over chains of γ_m(t)
    within = gamma[0] * n / (n - 1)
    _, var_plus = _within_and_plus(x)
    rho = 1.0 - (within - gamma) / var_plus  # ρ̂_t, multi-chain autocorrelation; ρ̂_0 = 1
    # Geyer's initial positive sequence: P_t = ρ̂_{2t} + ρ̂_{2t+1}, kept while positive
    n_pairs = n // 2
    pairs = rho[: 2 * n_pairs].reshape(n_pairs, 2, -1).sum(dim=1)  # (n_pairs, D)
    keep = pairs > 0
    keep[0] = True  # P_0 = 1 + ρ̂_1 always counts
    positive = torch.cumprod(keep.to(torch.float64), dim=0)
    # ... made monotone: P_t ← min(P_t, P_{t−1})
    monotone = torch.cummin(pairs, dim=0).values
    tau = -1.0 + 2.0 * (monotone * positive).sum(dim=0)
    total = n * m
    tau = tau.clamp(min=1.0 / math.log10(total)) if total > 1 else tau.clamp(min=1.0)
    ess = total / tau
    return torch.where(var_plus > 0, ess, torch.full_like(ess, float(total)))


def ess(samples: Tensor, *, split: bool = True) -> Tensor:
    """Effective sample size per dimension of MCMC draws ``(n_steps, n_chains, *event)``.

    The multi-chain estimator of the Stan Reference Manual: with γ̂_m(t) the autocovariance
    of chain m at lag t (by FFT),

        ρ̂_t = 1 − (W − mean_m γ̂_m(t)) / var⁺

    pairs P̂_t = ρ̂_{2t} + ρ̂_{2t+1} are summed up to the first non-positive one (Geyer's
    initial positive sequence) after being made non-increasing (Geyer's initial monotone
    sequence; Geyer 1992, "Practical Markov chain Monte Carlo"), and

        τ̂ = −1 + 2 Σ_t P̂_t,    ESS = N M / τ̂.

    τ̂ is floored at 1/log₁₀(NM) (as Stan and ArviZ do), so antithetic chains report at most
    NM·log₁₀(NM). Constant draws report NM.

    Args:
        samples: ``(n_steps, n_chains, *event_shape)``, n_steps ≥ 4.
        split: split every chain in two halves first (as Stan and ArviZ do), so that a
            trend within a chain lowers the ESS; no rank normalisation is applied.

    Returns:
        float64 tensor shaped ``event_shape`` (0-d for scalar chains).
    """
    x, event_shape = _as_chains("ess", samples, min_steps=4)
    return _ess(_split(x) if split else x).reshape(event_shape)


def _rank_normalize(x: Tensor) -> Tensor:
    """z = Φ⁻¹((r − 3/8) / (S − 1/4)) with r the average rank of each draw among all S = NM
    draws of its dimension (Blom's offsets, as in Vehtari et al. 2021)."""
    n, m, d = x.shape
    flat = x.reshape(n * m, d)
    values, order = flat.sort(dim=0)
    # average ranks over ties: draws with equal values share the mean of their positions
    new_group = torch.ones_like(values, dtype=torch.bool)
    new_group[1:] = values[1:] != values[:-1]
    group = new_group.to(torch.int64).cumsum(dim=0) - 1  # (S, D), per column 0 … G − 1
    positions = torch.arange(1, n * m + 1, dtype=torch.float64).unsqueeze(1).expand_as(values)
    offset = torch.arange(d, dtype=torch.int64) * (n * m)
    ids = (group + offset).flatten()
    totals = torch.zeros(d * n * m, dtype=torch.float64).index_add_(0, ids, positions.flatten())
    counts = torch.zeros(d * n * m, dtype=torch.float64).index_add_(
        0, ids, torch.ones_like(ids, dtype=torch.float64)
    )
    sorted_ranks = (totals[ids] / counts[ids]).reshape(n * m, d)
    ranks = torch.empty_like(sorted_ranks).scatter_(0, order, sorted_ranks)
    z = torch.special.ndtri((ranks - 0.375) / (n * m + 0.25))
    return z.reshape(n, m, d)


def _rhat(x: Tensor) -> Tensor:
    within, var_plus = _within_and_plus(x)
    return (var_plus / within).sqrt()


def split_rhat(samples: Tensor, *, rank_normalize: bool = True) -> Tensor:
    """Split-R̂ per dimension of MCMC draws ``(n_steps, n_chains, *event)``.

    Every chain is split in two halves, then (Gelman et al. 2013, "Bayesian Data Analysis",
    3rd ed.) R̂ = √(var⁺ / W) over the 2M half-chains.

    With ``rank_normalize=True`` (default) this is the rank-normalised R̂ of Vehtari et al.
    2021: the maximum of the split-R̂ of the rank-normalised draws ("bulk") and of the
    rank-normalised folded draws |θ − median θ| ("tail"), robust to heavy tails and sensitive
    to differences in scale. With ``rank_normalize=False`` it is the classic split-R̂ of the
    raw draws.

    Well-mixed chains give R̂ ≈ 1 (Vehtari et al. recommend R̂ < 1.01); R̂ is NaN where every
    draw of a dimension is the same, +∞ where each chain is constant but they differ.

    Args:
        samples: ``(n_steps, n_chains, *event_shape)``, n_steps ≥ 4.

    Returns:
        float64 tensor shaped ``event_shape`` (0-d for scalar chains).
    """
    x, event_shape = _as_chains("split_rhat", samples, min_steps=4)
    x = _split(x)
    if not rank_normalize:
        return _rhat(x).reshape(event_shape)
    median = x.reshape(-1, x.shape[2]).median(dim=0).values
    bulk = _rhat(_rank_normalize(x))
    tail = _rhat(_rank_normalize((x - median).abs()))
    return torch.maximum(bulk, tail).reshape(event_shape)
