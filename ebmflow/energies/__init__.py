"""The built-in energies, and the building blocks they share.

Energies (registered as ``mlp``, ``convnet``, ``gaussian``, ``gmm``; imported on first use):

- :class:`~ebmflow.energies.mlp.MLPEnergy`: E(x) or E(x, σ) for vectors.
- :class:`~ebmflow.energies.convnet.ConvNetEnergy`: E(x) or E(x, σ) for small images.
- :class:`~ebmflow.energies.gaussian.GaussianEnergy`: E = −log N(x; μ, Σ), normalised.
- :class:`~ebmflow.energies.gmm.GMMEnergy`: E = −log Σₖ wₖ N(x; μₖ, Σₖ), normalised.

How every built-in energy treats the noise level σ (VE coordinates, see ``ebmflow.Energy``):

- A *clean* energy (``noise_conditional=False``) raises ``ValueError`` when it is given a
  σ other than ``None``. Ignoring it would let a sampler or an objective that means to
  target the σ-smoothed density silently target the clean one.
- A *noise-conditional network* (MLP, convnet) raises ``ValueError`` for ``sigma=None``: it
  was trained on σ > 0 and has no clean member.
- A *noise-conditional analytic* density (gaussian, gmm) reads ``sigma=None`` as σ = 0, the
  clean density, which it knows exactly.

Building blocks shared by the built-in energies, public so that plugin energies behave the same:
:data:`ACTIVATIONS` / :func:`make_activation`, :class:`SigmaEmbedding` /
:func:`check_sigma_embedding`, :func:`check_widths` and :func:`resolve_sigma`.
"""

from __future__ import annotations

import importlib
import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn

from ebmflow.energy import Energy, Sigma, broadcast_sigma
from ebmflow.errors import ComponentArgumentError, ConfigError

__all__ = [
    "ACTIVATIONS",
    "SIGMA_EMBEDDINGS",
    "ConvNetEnergy",
    "GMMEnergy",
    "GaussianEnergy",
    "MLPEnergy",
    "SigmaEmbedding",
    "check_sigma_embedding",
    "check_widths",
    "make_activation",
    "resolve_sigma",
]

#: Activation functions by name. Smooth ones (silu, softplus, elu, gelu, tanh) give
#: smooth scores, which Langevin dynamics and score matching need; relu and leaky_relu
#: give piecewise-constant scores (zero Hessian) and are offered for comparison only.
ACTIVATIONS: dict[str, type[nn.Module] | Any] = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "celu": nn.CELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
}


def make_activation(owner: str, name: str) -> nn.Module:
    """A new activation module from :data:`ACTIVATIONS`; an error lists the accepted names."""
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ConfigError(
            f"{owner}: unknown activation {name!r}; accepted: {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[name.lower()]()


def check_widths(owner: str, widths: Any, *, allow_empty: bool = False) -> list[int]:
    """Validate a list of layer widths (positive integers)."""
    ok = (
        isinstance(widths, (list, tuple))
        and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)
        and (allow_empty or len(widths) > 0)
    )
    if not ok:
        empty = "" if allow_empty else "non-empty "
        raise ConfigError(
            f"{owner}: widths must be a {empty}list of positive integers (one per layer), "
            f"got {widths!r}"
        )
    return list(widths)


#: Noise-level embeddings of :class:`SigmaEmbedding`.
SIGMA_EMBEDDINGS = ("log", "fourier", "none")


class SigmaEmbedding(nn.Module):
    """Features of the noise level, computed from log σ.

    - ``"log"``: the single feature log σ.
    - ``"fourier"``: log σ and sin(ωⱼ log σ), cos(ωⱼ log σ) for the 8 fixed frequencies
      ωⱼ = 2^(j·5/7 − 1), j = 0…7 (0.5 … 16 radians per unit of log σ), the Fourier
      features of Tancik et al. 2020 ("Fourier Features Let Networks Learn High Frequency
      Functions") on a deterministic geometric grid, so no random state is involved.
    - ``"none"``: no features (the network ignores σ; see ``scale_by_sigma``).

    ``forward(log_sigma)`` maps ``(B,)`` to ``(B, out_features)``.
    """

    freqs: Tensor

    def __init__(self, kind: str = "log") -> None:
        super().__init__()
        self.kind = kind
        if kind == "fourier":
            freqs = 2.0 ** torch.linspace(-1.0, 4.0, 8, dtype=torch.float64)
            self.register_buffer("freqs", freqs.to(torch.get_default_dtype()), persistent=False)
        self.out_features = {"log": 1, "fourier": 17, "none": 0}[kind]

    def forward(self, log_sigma: Tensor) -> Tensor:
        column = log_sigma.unsqueeze(-1)
        if self.kind == "fourier":
            angles = column * self.freqs
            return torch.cat([column, angles.sin(), angles.cos()], dim=-1)
        return column

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, out_features={self.out_features}"


def check_sigma_embedding(
    owner: str, kind: Any, noise_conditional: bool, scale_by_sigma: bool
) -> str:
    """Validate the ``sigma_embedding`` / ``scale_by_sigma`` pair of a network energy."""
    if kind not in SIGMA_EMBEDDINGS:
        raise ConfigError(
            f"{owner}: unknown sigma_embedding {kind!r}; accepted: "
            f"{', '.join(repr(k) for k in SIGMA_EMBEDDINGS)}"
        )
    if not isinstance(scale_by_sigma, bool):
        raise ConfigError(f"{owner}: scale_by_sigma must be True or False, got {scale_by_sigma!r}")
    if scale_by_sigma and not noise_conditional:
        raise ConfigError(
            f"{owner}: scale_by_sigma=True makes the energy depend on σ, so it needs "
            "noise_conditional=True"
        )
    if noise_conditional and kind == "none" and not scale_by_sigma:
        raise ConfigError(
            f"{owner}: sigma_embedding='none' without scale_by_sigma=True would make a "
            "noise-conditional energy that ignores σ; use 'log' or 'fourier', or set "
            "scale_by_sigma=True"
        )
    return kind


def resolve_sigma(
    energy: Energy, sigma: Sigma, x: Tensor, *, none_is_clean: bool = False
) -> Tensor | None:
    """The noise level for ``energy.forward``: a ``(B,)`` tensor, or ``None`` for clean.

    - Clean energy (``energy.noise_conditional`` false): ``sigma`` must be ``None``.
    - Noise-conditional: ``sigma=None`` is an error unless ``none_is_clean`` (analytic
      densities, for which σ = 0 is the clean density).
    - A Python number must be finite and > 0 (≥ 0 when ``none_is_clean``).
    - A tensor must be 0-d or ``(B,)`` (:func:`ebmflow.broadcast_sigma`). Its *values* are not
      checked here, because that would cost a device synchronisation on every call; a
      σ ≤ 0 gives a non-finite log σ, hence a non-finite energy, which samplers report as
      ``SamplerDivergedError``.
    """
    name = type(energy).__name__
    if not energy.noise_conditional:
        if sigma is not None:
            raise ConfigError(
                f"{name} is a clean energy (noise_conditional=False) and got sigma={sigma!r}; "
                "pass sigma=None, or build it with noise_conditional=True to condition on σ"
            )
        return None
    if sigma is None:
        if none_is_clean:
            return None
        raise ConfigError(
            f"{name} is noise-conditional (noise_conditional=True) and needs sigma: a number "
            "> 0 or a (B,) tensor of noise levels in VE coordinates; got None"
        )
    if isinstance(sigma, numbers.Real):
        bad = (
            isinstance(sigma, bool)
            or not math.isfinite(sigma)
            or sigma < 0
            or (sigma == 0 and not none_is_clean)
        )
        if bad:
            accepted = "≥ 0" if none_is_clean else "> 0"
            raise ConfigError(f"{name}: sigma must be a finite number {accepted}, got {sigma!r}")
    elif not isinstance(sigma, Tensor):
        raise ComponentArgumentError(
            f"{name}: sigma must be a number or a tensor, got {type(sigma).__name__}"
        )
    try:
        return broadcast_sigma(sigma, x)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


_LAZY = {
    "MLPEnergy": "ebmflow.energies.mlp",
    "ConvNetEnergy": "ebmflow.energies.convnet",
    "GaussianEnergy": "ebmflow.energies.gaussian",
    "GMMEnergy": "ebmflow.energies.gmm",
}


_SUBMODULES = ("mlp", "convnet", "gaussian", "gmm")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ebmflow.energies' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
