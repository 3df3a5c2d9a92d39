"""The noise distribution of noise-contrastive estimation: a Gaussian, fitted to data.

NCE learns by telling data from noise, so the noise must be easy to sample, have a density
in closed form, and cover the data (where the noise has no mass the classifier learns
nothing about the energy). A Gaussian with the data's mean and covariance, optionally
widened by ``scale``, is the classic choice (Gutmann & Hyvärinen 2012, section 2.4).

The parameters are buffers (mean and the Cholesky factor of the covariance, over the
flattened event), so they are saved with the objective and a resumed run uses the same
noise. Their size is the event's, known from ``dim`` or from the first batch; the objective
records it in its config so that ``ebmflow.load`` rebuilds buffers of the right shape.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

import ebmflow

#: relative jitter added to the covariance's diagonal before the Cholesky factorisation, so
#: that a batch with (nearly) collinear coordinates still gives a proper density.
JITTER = 1e-6


class GaussianNoise(nn.Module):
    """N(μ, Σ) over the flattened event, with ``sample`` and ``log_prob``.

    Args:
        owner: the component to name in errors.
        scale: factor > 0 on the standard deviations of the fitted covariance (Σ → scale² Σ);
            fixed ``std`` are used as given.
        mean: a fixed mean (a number or one value per event coordinate) instead of the
            data's; ``None`` fits it.
        std: fixed standard deviations (a number or one per coordinate; Σ diagonal) instead
            of the data's covariance; ``None`` fits it.
        dim: the number of coordinates of one sample, when known before the first batch.
    """

    def __init__(
        self,
        owner: str,
        scale: float = 1.0,
        mean: Any = None,
        std: Any = None,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        self.owner = owner
        self.scale = ebmflow.check_positive(owner, "noise_scale", scale)
        self.fixed_mean = _check_values(owner, "noise_mean", mean, positive=False)
        self.fixed_std = _check_values(owner, "noise_std", std, positive=True)
        self.dim: int | None = None
        size = 0
        if dim is not None:
            self.dim = size = ebmflow.check_positive_int(owner, "dim", dim)
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("scale_tril", torch.eye(size))
        self.register_buffer("ready", torch.tensor(False))

    @property
    def fitted(self) -> bool:
        return bool(self.ready)

    def fit(self, data: Tensor) -> None:
        """Set μ and Σ from a batch ``(B, *event_shape)`` (fixed values where given)."""
        flat = data.detach().flatten(1).to(torch.float64)
        n, d = flat.shape
        if self.dim is not None and d != self.dim:
            raise ebmflow.ConfigError(
                f"{self.owner}: the data has {d} coordinates per sample, but dim={self.dim}"
            )
        if n < 2 and (self.fixed_mean is None or self.fixed_std is None):
            raise ebmflow.ConfigError(
                f"{self.owner}: fitting the Gaussian noise needs a batch of at least 2 "
                f"samples, got {n}; use a larger batch_size or give noise_mean and noise_std"
            )
        mean = flat.mean(0) if self.fixed_mean is None else self._expand("noise_mean", d)
        if self.fixed_std is None:
            centred = flat - flat.mean(0)
            cov = centred.T @ centred / (n - 1)
            cov = cov + JITTER * (cov.diagonal().mean() + 1e-12) * torch.eye(d, dtype=cov.dtype)
            tril = self.scale * torch.linalg.cholesky(cov)
        else:
            tril = torch.diag(self._expand("noise_std", d))
        self.mean = mean.to(data.dtype).to(data.device)
        self.scale_tril = tril.to(data.dtype).to(data.device)
        self.ready = torch.tensor(True, device=data.device)
        self.dim = d

    def _expand(self, name: str, d: int) -> Tensor:
        values = torch.as_tensor(
            self.fixed_mean if name == "noise_mean" else self.fixed_std, dtype=torch.float64
        )
        if values.ndim == 0:
            return values.expand(d).clone()
        if values.shape != (d,):
            raise ebmflow.ConfigError(
                f"{self.owner}: {name} has {values.numel()} values; the data has {d} "
                "coordinates per sample (give one number, or one per coordinate)"
            )
        return values

    def sample(self, n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
        """``n`` draws, shaped ``(n, *event_shape)``, on ``like``'s device and dtype."""
        z = ebmflow.gaussian_like(like.new_empty(n, self.mean.shape[0]), generator)
        flat = torch.addmm(self.mean, z, self.scale_tril.T)
        return flat.reshape(n, *like.shape[1:])

    def log_prob(self, x: Tensor) -> Tensor:
        """log N(x; μ, Σ) per sample, ``(B,)``."""
        diff = (x.flatten(1) - self.mean).T
        solved = torch.linalg.solve_triangular(self.scale_tril, diff, upper=False)
        d = self.mean.shape[0]
        log_det = self.scale_tril.diagonal().log().sum()
        return -0.5 * solved.square().sum(0) - log_det - 0.5 * d * math.log(2 * math.pi)

    def _load_from_state_dict(self, state_dict, prefix, *args: Any, **kwargs: Any) -> None:
        # a resumed run's objective may be built without dim: take the stored shapes
        for name in ("mean", "scale_tril"):
            stored = state_dict.get(prefix + name)
            if stored is not None:
                setattr(self, name, torch.empty_like(stored, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _check_values(owner: str, name: str, value: Any, *, positive: bool) -> Any:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    ok = len(items) > 0 and all(
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and (v > 0 or not positive)
        for v in items
    )
    if not ok:
        accepted = "numbers > 0" if positive else "finite numbers"
        raise ebmflow.ConfigError(
            f"{owner}: {name} must be a number or a list of {accepted}, got {value!r}"
        )
    return [float(v) for v in items] if isinstance(value, (list, tuple)) else float(value)
