"""MLP energy for vectors: E(x) = f(x), or E(x, σ) = f([x, φ(log σ)]) (÷ σ).

The clean energy is exactly ``net(x).squeeze(-1)`` for the ``nn.Sequential``
``net = [Linear, act] * len(widths) + [Linear(widths[-1], 1)]``, so sampling it costs what
a hand-written loop over the same ``nn.Sequential`` costs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmflow.energies import (
    SigmaEmbedding,
    check_sigma_embedding,
    check_widths,
    make_activation,
    resolve_sigma,
)
from ebmflow.energy import Energy, Sigma
from ebmflow.errors import ConfigError
from ebmflow.validation import check_positive_int


class MLPEnergy(Energy):
    """Fully connected energy on vectors of shape ``(dim,)``.

    Clean (``noise_conditional=False``): E(x) = f(x), where f is the MLP
    ``dim → widths[0] → … → widths[-1] → 1`` with ``activation`` between layers.

    Noise-conditional (``noise_conditional=True``), following NCSN (Song & Ermon 2019,
    "Generative Modeling by Estimating Gradients of the Data Distribution"):

        E(x, σ) = f([x, φ(log σ)])          (scale_by_sigma=False)
        E(x, σ) = f([x, φ(log σ)]) / σ      (scale_by_sigma=True)

    where φ is the :class:`~ebmflow.energies.SigmaEmbedding` named by ``sigma_embedding``
    (``"log"``: log σ; ``"fourier"``: log σ and 8 sin/cos features; ``"none"``: nothing),
    concatenated to the input of the first layer. With ``scale_by_sigma`` the score
    −∇ₓE = −∇ₓf / σ scales as 1/σ, the parameterisation of NCSNv2 (Song & Ermon 2020,
    "Improved Techniques for Training Score-Based Generative Models"); with
    ``sigma_embedding="none"`` it is exactly NCSNv2's s(x, σ) = s(x) / σ.

    σ is a number or a ``(B,)`` tensor in VE coordinates (see
    :func:`ebmflow.energies.resolve_sigma`: a clean MLP rejects σ, a noise-conditional one
    requires it).

    Args:
        dim: input dimension.
        widths: hidden layer widths; an empty list gives a linear energy.
        activation: a name from :data:`ebmflow.energies.ACTIVATIONS`.
        noise_conditional: whether the energy takes σ.
        sigma_embedding: ``"log"``, ``"fourier"`` or ``"none"`` (noise-conditional only).
        scale_by_sigma: divide the output by σ (noise-conditional only).
    """

    def __init__(
        self,
        dim: int = 2,
        widths: Sequence[int] = (128, 128),
        activation: str = "silu",
        noise_conditional: bool = False,
        sigma_embedding: str = "log",
        scale_by_sigma: bool = False,
    ) -> None:
        super().__init__()
        owner = "MLPEnergy"
        dim = check_positive_int(owner, "dim", dim)
        widths = check_widths(owner, widths, allow_empty=True)
        if not isinstance(noise_conditional, bool):
            raise ConfigError(
                f"{owner}: noise_conditional must be True or False, got {noise_conditional!r}"
            )
        check_sigma_embedding(owner, sigma_embedding, noise_conditional, scale_by_sigma)
        make_activation(owner, activation)  # validate before building anything

        self.event_shape = (dim,)
        self.noise_conditional = noise_conditional
        self.scale_by_sigma = scale_by_sigma
        self.embed = SigmaEmbedding(sigma_embedding) if noise_conditional else None
        layers: list[nn.Module] = []
        width_in = dim + (self.embed.out_features if self.embed is not None else 0)
        for width in widths:
            layers += [nn.Linear(width_in, width), make_activation(owner, activation)]
            width_in = width
        layers.append(nn.Linear(width_in, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        if not self.noise_conditional:
            if sigma is not None:
                resolve_sigma(self, sigma, x)  # raises: a clean energy takes no σ
            return self.net(x).squeeze(-1)
        sigma_t = resolve_sigma(self, sigma, x)
        # noise-conditional: __init__ built the embedding and resolve_sigma refuses None
        assert self.embed is not None and sigma_t is not None
        inp = (
            x if self.embed.out_features == 0 else torch.cat([x, self.embed(sigma_t.log())], dim=-1)
        )
        energy = self.net(inp).squeeze(-1)
        return energy / sigma_t if self.scale_by_sigma else energy
