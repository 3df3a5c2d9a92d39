"""Likelihood energies: the measurement model of an inverse problem as an energy of x given y.

Linear Gaussian measurement y = A x + n, n ~ N(0, s² I):

    E(x | y, σ) = ‖y − A x‖² / (2 v(σ)) + (m/2) log(2π v(σ)),   s(x) = Aᵀ(y − A x) / v(σ)

with m the number of measured values. At σ = 0 (``sigma=None``) v = s², the exact
negative log-likelihood −log N(y; A x, s² I), so exp(−E_prior − E) is the exact posterior.

Annealing across noise levels. A noise-conditional prior at level σ describes
x_σ = x + σ z, and y = A x_σ + (n − σ A z): the measurement of the *noisy* point carries the
extra noise −σ A z, of covariance σ² A Aᵀ ≼ σ² ‖A‖² I. ``annealing="operator-norm"`` (the
default) uses the isotropic bound v(σ) = s² + σ² ‖A‖², as annealed posterior Langevin
(Jalal et al. 2021) and SNIPS (Kawar et al. 2021) do, so the likelihood never dominates the
prior at high noise; ``annealing="none"`` keeps v = s² at every level. Both are exact at σ = 0.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import Tensor

from ebmflow.energies import resolve_sigma
from ebmflow.energy import Energy, Sigma
from ebmflow.errors import ComponentArgumentError, ConfigError
from ebmflow.inverse.operators import LinearOperator, build_operator
from ebmflow.validation import check_positive

#: ``annealing=`` values of :class:`GaussianMeasurement`.
ANNEALING = ("operator-norm", "none")


class GaussianMeasurement(Energy):
    """E(x | y, σ) = −log N(y; A x, v(σ) I), v(σ) = s² + σ²‖A‖² (module docstring).

    Args:
        observation: y, of the measurement shape (A applied to one event), or ``(N, *m)``
            for N observations: row i of a batch of k·N chains gets observation i mod N.
        noise_std: s > 0, the measurement noise standard deviation.
        operator: A: a name (``"identity"``, ``"mask"``, ``"blur"``, ``"downsample"``,
            ``"matrix"``), a dict ``{"name": ..., **arguments}`` (``{"name": "mask",
            "mask": m}``), a :class:`~ebmflow.inverse.operators.LinearOperator` or a linear
            callable (checked on random probes).
        event_shape: the shape of one x; defaults to the observation's shape for the
            operators that keep shapes (identity, mask).
        annealing: ``"operator-norm"`` or ``"none"`` (module docstring).
    """

    noise_conditional = True
    observation: Tensor

    def __init__(
        self,
        observation: Any,
        noise_std: float,
        operator: Any = "identity",
        event_shape: list[int] | tuple[int, ...] | None = None,
        annealing: str = "operator-norm",
    ) -> None:
        super().__init__()
        owner = "gaussian-measurement"
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)):
            raise ConfigError(f"{owner}: noise_std must be a number > 0, got {noise_std!r}")
        self.noise_std = check_positive(owner, "noise_std", noise_std)
        if annealing not in ANNEALING:
            raise ConfigError(
                f"{owner}: annealing must be one of {', '.join(map(repr, ANNEALING))}, "
                f"got {annealing!r}"
            )
        self.annealing = annealing
        try:
            y = torch.as_tensor(observation, dtype=torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError):
            raise ComponentArgumentError(
                f"{owner}: observation must be a tensor or nested lists of numbers, got "
                f"{type(observation).__name__}"
            ) from None
        if isinstance(observation, Tensor) and observation.is_floating_point():
            y = observation.detach().clone()
        if not bool(torch.isfinite(y).all()):
            raise ConfigError(f"{owner}: the observation holds NaN or ±∞ values")
        if event_shape is None:
            if not _keeps_shape(operator):
                raise ConfigError(
                    f"{owner}: give event_shape (the prior's sample shape) for operator "
                    f"{getattr(operator, 'name', operator)!r}, whose measurements have "
                    "another shape than x"
                )
            if isinstance(operator, dict) and "mask" in operator:
                event_shape = tuple(torch.as_tensor(operator["mask"]).shape)
            else:
                event_shape = tuple(getattr(operator, "event_shape", y.shape))
        self.event_shape = tuple(int(n) for n in event_shape)
        self.operator: LinearOperator = build_operator(operator, self.event_shape)
        self.measurement_shape = self.operator.measurement_shape()
        m = self.measurement_shape
        if tuple(y.shape) != m and not (y.ndim == len(m) + 1 and tuple(y.shape[1:]) == m):
            raise ConfigError(
                f"{owner}: the observation has shape {tuple(y.shape)}, but operator "
                f"{self.operator.name!r} maps the event shape {self.event_shape} to "
                f"measurements of shape {m} (give one of shape {m}, or (N, *{m}) for N)"
            )
        self.register_buffer("observation", y)
        self.n_measured = math.prod(m)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        # a callable operator has no spec: the config holds it as given (not saveable)
        with contextlib.suppress(ComponentArgumentError):
            config["operator"] = self.operator.spec()
        config["event_shape"] = list(self.event_shape or ())
        return config

    def variance(self, sigma: Tensor | None) -> Tensor | float:
        """v(σ): s², plus σ²‖A‖² with operator-norm annealing; ``(B,)`` or a number."""
        s2 = self.noise_std**2
        if sigma is None or self.annealing == "none":
            return s2
        return s2 + sigma.square() * self.operator.norm() ** 2

    def _observations(self, x: Tensor) -> Tensor:
        y = self.observation.to(x)
        if y.ndim == len(self.measurement_shape):
            return y.unsqueeze(0)
        if x.shape[0] % y.shape[0]:
            raise ConfigError(
                f"gaussian-measurement: {y.shape[0]} observations for a batch of {x.shape[0]} "
                "chains; give one observation, one per chain, or one per chain of k·N chains"
            )
        return y.repeat(x.shape[0] // y.shape[0], *(1,) * (y.ndim - 1))

    def _residual(self, x: Tensor, sigma: Sigma) -> tuple[Tensor, Tensor]:
        """(y − A x, v(σ) per sample (B,) or one 0-d value)."""
        sigma_t = resolve_sigma(self, sigma, x, none_is_clean=True)
        residual = self._observations(x) - self.operator(x)
        return residual, torch.as_tensor(self.variance(sigma_t), dtype=x.dtype, device=x.device)

    def _energy(self, residual: Tensor, v: Tensor) -> Tensor:
        squares = residual.square().flatten(1).sum(1)
        return 0.5 * squares / v + 0.5 * self.n_measured * torch.log(2 * math.pi * v)

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return self._energy(*self._residual(x, sigma))

    def residual_norm(self, x: Tensor) -> Tensor:
        """‖y − A x‖ per sample, ``(B,)`` (differentiable; DPS's normalised step uses it)."""
        return (self._observations(x) - self.operator(x)).flatten(1).norm(dim=1)

    def energy_and_score(
        self, x: Tensor, sigma: Sigma = None, *, create_graph: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Closed form: E and s = Aᵀ(y − A x)/v, no autograd pass over a network."""
        if create_graph:
            return super().energy_and_score(x, sigma, create_graph=True)  # type: ignore[return-value]
        with torch.no_grad():
            residual, v = self._residual(x, sigma)
            energy = self._energy(residual, v)
            v_rows = v.reshape(-1, *(1,) * (residual.ndim - 1)) if v.ndim else v
            score = self.operator.adjoint(residual / v_rows)
        return energy, score

    def extra_repr(self) -> str:
        return (
            f"operator={self.operator.name!r}, noise_std={self.noise_std}, "
            f"event_shape={self.event_shape}, annealing={self.annealing!r}"
        )


def _keeps_shape(operator: Any) -> bool:
    if isinstance(operator, LinearOperator):
        return True
    name = operator.get("name") if isinstance(operator, dict) else operator
    return name in ("identity", "mask")
