"""Small convolutional energy for images: strided 3×3 convolutions, global average pooling
and a linear head to one scalar per image."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

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


class ConvNetEnergy(Energy):
    """Convolutional energy on images of shape ``(channels, image_size, image_size)``.

    With hₒ = x and one layer per entry of ``widths``:

        hₗ = act(convₗ(hₗ₋₁) + bₗ(σ))
        E(x, σ) = head(mean over pixels of h_L)            (÷ σ with scale_by_sigma)

    conv₁ is a 3×3 convolution with stride 1; every later convₗ has stride 2, so an
    8×8 input ends on a 4×4 map with the default ``widths=(32, 64)`` and 32×32 on 16×16.
    The clean energy has bₗ = 0. The noise-conditional energy adds a per-channel bias
    bₗ(σ) = Wₗ φ(log σ), φ the :class:`~ebmflow.energies.SigmaEmbedding`, in the manner of
    the noise-level embeddings of DDPM (Ho et al. 2020) and NCSN++; all bₗ come from one
    linear map of φ. ``scale_by_sigma`` divides the output by σ (NCSNv2, Song & Ermon
    2020), as in :class:`~ebmflow.energies.mlp.MLPEnergy`.

    ``spectral_norm=True`` wraps every convolution and the head in
    ``torch.nn.utils.parametrizations.spectral_norm`` (Miyato et al. 2018), which bounds
    the Lipschitz constant of each layer's reshaped weight matrix; in training mode every
    forward performs one power iteration (updating the module's buffers).

    Args:
        channels: image channels.
        image_size: height = width of the images (the network works for 8 … 32; the
            event shape used for checks is ``(channels, image_size, image_size)``).
        widths: output channels of each convolution.
        activation: a name from :data:`ebmflow.energies.ACTIVATIONS`.
        spectral_norm: apply spectral normalisation.
        noise_conditional: whether the energy takes σ.
        sigma_embedding: ``"log"``, ``"fourier"`` or ``"none"`` (noise-conditional only).
        scale_by_sigma: divide the output by σ (noise-conditional only).
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 8,
        widths: Sequence[int] = (32, 64),
        activation: str = "silu",
        spectral_norm: bool = False,
        noise_conditional: bool = False,
        sigma_embedding: str = "log",
        scale_by_sigma: bool = False,
    ) -> None:
        super().__init__()
        owner = "ConvNetEnergy"
        channels = check_positive_int(owner, "channels", channels)
        image_size = check_positive_int(owner, "image_size", image_size)
        widths = check_widths(owner, widths)
        for flag_name, flag in (
            ("spectral_norm", spectral_norm),
            ("noise_conditional", noise_conditional),
        ):
            if not isinstance(flag, bool):
                raise ConfigError(f"{owner}: {flag_name} must be True or False, got {flag!r}")
        check_sigma_embedding(owner, sigma_embedding, noise_conditional, scale_by_sigma)
        self.act = make_activation(owner, activation)

        def wrap(layer: nn.Module) -> nn.Module:
            return _spectral_norm(layer) if spectral_norm else layer

        self.event_shape = (channels, image_size, image_size)
        self.noise_conditional = noise_conditional
        self.scale_by_sigma = scale_by_sigma
        self.widths = widths
        self.convs = nn.ModuleList(
            wrap(nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1))
            for i, (c_in, c_out) in enumerate(zip([channels, *widths[:-1]], widths))
        )
        self.head = wrap(nn.Linear(widths[-1], 1))
        self.embed = None
        self.sigma_bias = None
        if noise_conditional:
            self.embed = SigmaEmbedding(sigma_embedding)
            if self.embed.out_features:
                self.sigma_bias = nn.Linear(self.embed.out_features, sum(widths))

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        sigma_t = (
            resolve_sigma(self, sigma, x) if (self.noise_conditional or sigma is not None) else None
        )
        h = x
        if self.sigma_bias is None:
            for conv in self.convs:
                h = self.act(conv(h))
        else:
            # a σ bias exists only on a noise-conditional net, whose σ is never None here
            assert self.embed is not None and sigma_t is not None
            biases = self.sigma_bias(self.embed(sigma_t.log())).split(self.widths, dim=-1)
            for conv, bias in zip(self.convs, biases):
                h = self.act(conv(h) + bias[:, :, None, None])
        energy = self.head(h.mean(dim=(-2, -1))).squeeze(-1)
        return energy / sigma_t if self.scale_by_sigma else energy
