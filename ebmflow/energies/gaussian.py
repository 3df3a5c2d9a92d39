"""Analytic Gaussian energy E(x) = −log N(x; μ, Σ), and the closed-form machinery that the
Gaussian mixture shares.

Normalisation convention (both ``gaussian`` and ``gmm``): ``forward`` is the *normalised*
negative log-density, E(x) = ½ (x−μ)ᵀ Σ⁻¹ (x−μ) + ½ log det(2πΣ), so exp(−E) integrates to
one and ``log_z()`` is 0. This is what makes ``ebmflow.mixture([g₁, g₂], w)`` — which
weighs the *unnormalised* densities exp(−Eᵢ) — the mixture Σ wᵢ N(μᵢ, Σᵢ) with exactly
the weights w; with unnormalised quadratics the effective weights would be
wᵢ·√det(2πΣᵢ).

Each covariance is stored by its eigendecomposition Σₖ = Uₖ diag(λₖ) Uₖᵀ (computed once,
in float64). In the rotated coordinates zₖ = Uₖᵀ(x − μₖ),

    log N(x; μₖ, Σₖ + σ²I) = −½ Σⱼ zₖⱼ² / (λₖⱼ + σ²) − ½ Σⱼ log(2π (λₖⱼ + σ²))
    −∇ₓ log N = −Uₖ (zₖ / (λₖ + σ²))

so the σ-smoothed density N(μ, Σ + σ²I) (the law of x + σ·z, VE coordinates) costs the
same as the clean one, for a different σ per sample.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ebmflow.energies import resolve_sigma
from ebmflow.energy import Energy, Sigma
from ebmflow.errors import ComponentArgumentError, ConfigError
from ebmflow.validation import check_positive_int

_LOG_2PI = math.log(2.0 * math.pi)


def as_float64(owner: str, name: str, value: Any, ndim: int, accepted: str) -> Tensor:
    """``value`` (a number or nested lists of numbers) as a float64 tensor with ``ndim``
    dimensions; tensors and arrays are refused so that the config stays JSON-friendly."""
    if hasattr(value, "tolist") and not isinstance(value, (int, float)):
        raise ComponentArgumentError(
            f"{owner}: {name} must be {accepted} (JSON-friendly, so the energy can be saved "
            f"and rebuilt from its config); got a {type(value).__name__}, pass "
            f"{name}.tolist() instead"
        )
    try:
        tensor = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{owner}: {name} must be {accepted}, got {value!r}") from None
    if tensor.ndim != ndim or tensor.numel() == 0 or isinstance(value, bool):
        raise ConfigError(f"{owner}: {name} must be {accepted}, got {value!r}")
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigError(f"{owner}: {name} must be finite, got {value!r}")
    return tensor


def eigen_covariance(owner: str, name: str, cov: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues ``(…, d)`` and eigenvectors ``(…, d, d)`` of symmetric positive-definite
    covariance matrices ``cov`` (float64); raise naming the offending matrix otherwise."""
    flat = cov.reshape(-1, *cov.shape[-2:])
    for k, matrix in enumerate(flat):
        where = f"{name}[{k}]" if cov.ndim == 3 else name
        scale = float(matrix.abs().max())
        if float((matrix - matrix.T).abs().max()) > 1e-10 * max(scale, 1e-300):
            raise ConfigError(f"{owner}: {where} must be a symmetric matrix, got {matrix.tolist()}")
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    eigvals, eigvecs = torch.linalg.eigh(cov)
    for k, vals in enumerate(eigvals.reshape(-1, cov.shape[-1])):
        if not bool((vals > 1e-12 * vals.abs().max()).all()):
            where = f"{name}[{k}]" if cov.ndim == 3 else name
            raise ConfigError(
                f"{owner}: {where} must be positive definite (all eigenvalues > 0); its "
                f"eigenvalues are {vals.tolist()}"
            )
    return eigvals, eigvecs


class GaussianFamily(Energy):
    """Closed-form energy of a K-component Gaussian mixture (K = 1: a Gaussian).

    E(x, σ) = −log Σₖ wₖ N(x; μₖ, Σₖ + σ²I); s(x, σ) = −Σₖ rₖ Uₖ (zₖ / (λₖ + σ²)) with the
    responsibilities rₖ = softmax(log wₖ + log N(x; μₖ, Σₖ + σ²I)).

    Subclasses call :meth:`_set_components` with float64 tensors. Buffers: ``loc`` (K, d),
    ``eigvals`` (K, d), ``eigvecs`` (K, d, d), ``log_weights`` (K,), in the default dtype.
    """

    loc: Tensor
    eigvals: Tensor
    eigvecs: Tensor
    log_weights: Tensor

    def _set_components(
        self,
        loc: Tensor,
        eigvals: Tensor,
        eigvecs: Tensor,
        weights: Tensor,
        noise_conditional: bool,
    ) -> None:
        dtype = torch.get_default_dtype()
        self.event_shape = (loc.shape[-1],)
        self.noise_conditional = noise_conditional
        eye = torch.eye(loc.shape[-1], dtype=torch.float64)
        #: every Uₖ is the identity (diagonal covariances): skip the rotations.
        self.diagonal = bool((eigvecs == eye).all())
        self.register_buffer("loc", loc.to(dtype))
        self.register_buffer("eigvals", eigvals.to(dtype))
        self.register_buffer("eigvecs", eigvecs.to(dtype))
        self.register_buffer("log_weights", (weights / weights.sum()).log().to(dtype))

    # -- closed forms ------------------------------------------------------------------

    def _log_terms(self, x: Tensor, sigma: Tensor | None) -> tuple[Tensor, Tensor]:
        """log wₖ + log N(x; μₖ, Σₖ + σ²I), shape (B, K), and zₖ / (λₖ + σ²), (B, K, d)."""
        diff = x.unsqueeze(1) - self.loc
        z = diff if self.diagonal else torch.einsum("bki,kij->bkj", diff, self.eigvecs)
        var = self.eigvals if sigma is None else self.eigvals + sigma.square()[:, None, None]
        scaled = z / var
        log_n = -0.5 * ((z * scaled).sum(-1) + var.log().sum(-1) + x.shape[-1] * _LOG_2PI)
        return self.log_weights + log_n, scaled

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        log_terms, _ = self._log_terms(x, resolve_sigma(self, sigma, x, none_is_clean=True))
        if log_terms.shape[-1] == 1:
            return -log_terms[:, 0]
        return -torch.logsumexp(log_terms, dim=-1)

    def energy_and_score(
        self, x: Tensor, sigma: Sigma = None, *, create_graph: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Closed-form energy and score, no autograd pass. With ``create_graph=False`` both
        are computed under ``torch.no_grad()`` (detached); with ``create_graph=True`` they
        are differentiable functions of ``x`` (when ``x`` requires grad)."""
        if create_graph:
            with torch.enable_grad():
                return self._energy_and_score(x, sigma)
        with torch.no_grad():
            return self._energy_and_score(x, sigma)

    def _energy_and_score(self, x: Tensor, sigma: Sigma) -> tuple[Tensor, Tensor]:
        log_terms, scaled = self._log_terms(x, resolve_sigma(self, sigma, x, none_is_clean=True))
        if log_terms.shape[-1] == 1:
            energy = -log_terms[:, 0]
            scaled = scaled[:, 0]
            if self.diagonal:
                return energy, -scaled
            return energy, -scaled @ self.eigvecs[0].T
        energy = -torch.logsumexp(log_terms, dim=-1)
        resp = torch.softmax(log_terms, dim=-1)
        if self.diagonal:
            return energy, -(resp.unsqueeze(-1) * scaled).sum(1)
        return energy, -torch.einsum("bk,bkj,kij->bi", resp, scaled, self.eigvecs)

    # -- densities and samples ---------------------------------------------------------

    def log_prob(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        """log p(x) = −E(x, σ), exactly (the energy is normalised); shape (B,)."""
        return -self(x, sigma)

    def log_z(self, sigma: Sigma = None) -> float:
        """log ∫ exp(−E(x, σ)) dx = 0 for every σ: the energy is normalised."""
        return 0.0

    def sample(
        self, n: int, generator: torch.Generator | None = None, *, sigma: float | None = None
    ) -> Tensor:
        """``n`` exact samples ``(n, d)``: k ~ Categorical(w), x = μₖ + Uₖ (√(λₖ + σ²) ⊙ ε),
        ε ~ N(0, I), on the energy's device and dtype, drawn only from ``generator``.

        Uₖ diag(√λₖ) is a square root of Σₖ like the Cholesky factor (any A with AAᵀ = Σₖ
        gives the same law). ``sigma`` (noise-conditional energies) samples the σ-smoothed
        density N(μₖ, Σₖ + σ²I).
        """
        name = type(self).__name__
        n = check_positive_int(name, "n", n)
        if isinstance(sigma, Tensor):
            raise ComponentArgumentError(
                f"{name}.sample: sigma must be a number or None, got a tensor"
            )
        resolve_sigma(self, sigma, self.loc, none_is_clean=True)  # the rules of forward
        loc = self.loc
        n_components = loc.shape[0]
        if n_components == 1:
            k = torch.zeros(n, dtype=torch.long, device=loc.device)
        else:
            k = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        eps = torch.randn(n, loc.shape[-1], generator=generator, device=loc.device, dtype=loc.dtype)
        var = self.eigvals[k] if sigma is None else self.eigvals[k] + float(sigma) ** 2
        z = eps * var.sqrt()
        offset = z if self.diagonal else torch.einsum("nj,nij->ni", z, self.eigvecs[k])
        return loc[k] + offset

    def _covariances(self) -> Tensor:
        """Σₖ = Uₖ diag(λₖ) Uₖᵀ, shape (K, d, d)."""
        return (self.eigvecs * self.eigvals.unsqueeze(-2)) @ self.eigvecs.transpose(-1, -2)


class GaussianEnergy(GaussianFamily):
    """Analytic Gaussian: E(x) = −log N(x; μ, Σ) = ½ (x−μ)ᵀ Σ⁻¹ (x−μ) + ½ log det(2πΣ).

    Normalised (``log_z() == 0``), so mixtures of Gaussian energies get the right weights
    (see the module docstring). Closed-form ``energy_and_score`` (no autograd), exact
    ``sample``, ``log_prob``.

    With ``noise_conditional=True``, E(x, σ) = −log N(x; μ, Σ + σ²I): the density of
    x + σ·z, the exact σ-smoothed target of annealed Langevin and denoising score
    matching; ``sigma=None`` (or 0) is the clean Gaussian.

    Args:
        mean: μ, a list of d numbers.
        covariance: Σ, a d×d nested list, symmetric positive definite.
        std: instead of ``covariance``: a number s (Σ = s²I) or a list of d numbers
            (Σ = diag(s²)). With neither, Σ = I.
        noise_conditional: take σ and use Σ + σ²I.
    """

    def __init__(
        self,
        mean: list[float],
        covariance: list[list[float]] | None = None,
        std: float | list[float] | None = None,
        noise_conditional: bool = False,
    ) -> None:
        super().__init__()
        owner = "GaussianEnergy"
        loc = as_float64(owner, "mean", mean, 1, "a non-empty list of numbers")
        d = loc.shape[0]
        if covariance is not None and std is not None:
            raise ConfigError(f"{owner}: give covariance or std, not both (got both)")
        if covariance is not None:
            cov = as_float64(owner, "covariance", covariance, 2, f"a {d}×{d} nested list")
            if cov.shape != (d, d):
                raise ConfigError(
                    f"{owner}: covariance must be {d}×{d} to match the mean of length {d}, "
                    f"got shape {tuple(cov.shape)}"
                )
            eigvals, eigvecs = eigen_covariance(owner, "covariance", cov)
        else:
            eigvals = diagonal_variances(owner, "std", 1.0 if std is None else std, d)
            eigvecs = torch.eye(d, dtype=torch.float64)
        if not isinstance(noise_conditional, bool):
            raise ConfigError(
                f"{owner}: noise_conditional must be True or False, got {noise_conditional!r}"
            )
        self._set_components(
            loc[None],
            eigvals[None],
            eigvecs[None],
            torch.ones(1, dtype=torch.float64),
            noise_conditional,
        )

    @property
    def mean(self) -> Tensor:
        """μ, shape (d,)."""
        return self.loc[0]

    @property
    def covariance(self) -> Tensor:
        """Σ, shape (d, d)."""
        return self._covariances()[0]


def diagonal_variances(owner: str, name: str, std: Any, d: int) -> Tensor:
    """Variances ``(d,)`` from a std given as a number (isotropic) or a list of d numbers."""
    accepted = f"a number > 0 or a list of {d} numbers > 0"
    if isinstance(std, (int, float)) and not isinstance(std, bool):
        stds = as_float64(owner, name, std, 0, accepted).expand(d)
    else:
        stds = as_float64(owner, name, std, 1, accepted)
        if stds.shape != (d,):
            raise ConfigError(f"{owner}: {name} must be {accepted}, got {std!r}")
    if not bool((stds > 0).all()):
        raise ConfigError(f"{owner}: {name} must be {accepted}, got {std!r}")
    return stds.square()
