"""A diffusers denoising network as an ebmflow score model in VE coordinates.

For a noise level σ (VE) and a point x_ve, with (a, v) the model's scales at σ
(:meth:`~ebmflow_diffusers.schedule.NoiseTable.scales`: VP a = 1/√(1 + σ²), v = σ a):

    x_t = a · x_ve,     t = t(σ) (log-σ interpolation in the training table; VE: t = σ),
    f   = network(x_t, t),
    s(x_ve, σ) = −ε̂ / σ      with ε̂ from f by the prediction type:

    epsilon: s = −f / σ;   v_prediction: s = −(a f + v x_t) / σ;
    sample (x₀): s = (f − x_ve) / σ²;   score (VE): s = f.

This is the k-diffusion mapping (x_ve = x_vp / √ᾱ, σ = √((1 − ᾱ)/ᾱ)). The model is
score-only (``has_energy = False``): for MALA and HMC use the segment-integral energies of
:mod:`ebmflow_diffusers.segment`, or an energy parameterisation
(:mod:`ebmflow_diffusers.energies`).

Conditional networks (:mod:`ebmflow_diffusers.networks`: class labels of a conditional UNet
or a DiT, ``encoder_hidden_states`` of a cross-attention UNet) take the condition as
``score(x, σ, y=…)``; ``ebmflow.condition(model, y)`` fixes it, and :meth:`guided` is
classifier-free guidance with the null label. A latent model holds its autoencoder: the
energy lives in the scaled latent space, and :meth:`decode` maps samples to images.

Checkpoints. The constructor takes only JSON (the network's and the autoencoder's diffusers
configs, and the scheduler config), and the weights are this module's state dict, so
``ebmflow.save`` writes config.json + model.safetensors and ``ebmflow.load`` rebuilds the
networks with ``from_config`` and loads the weights: no pickle, no diffusers folder needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

import ebmflow
from ebmflow_diffusers.networks import (
    SUPPORTED_AUTOENCODERS,
    SUPPORTED_NETWORKS,
    TRANSFORMERS,
    build,
    call_network,
    conditioning,
    event_shape,
    output_channels,
    skeleton_networks,
)
from ebmflow_diffusers.schedule import NoiseTable, score_from_output, sigma_to_timestep

__all__ = ["SUPPORTED_NETWORKS", "DiffusersScoreModel", "build_network", "plain_config"]


def plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A diffusers config as plain JSON-able values (lists for tuples and arrays), without
    diffusers' bookkeeping keys (those starting with ``_``) except ``_class_name``."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if hasattr(value, "tolist"):
            return value.tolist()
        return value

    return {k: plain(v) for k, v in config.items() if not k.startswith("_") or k == "_class_name"}


def build_network(network_class: str, config: Mapping[str, Any]) -> nn.Module:
    """A diffusers network of class ``network_class`` from its config (random weights)."""
    return build(SUPPORTED_NETWORKS, network_class, config, "network")


class DiffusersScoreModel(ebmflow.ScoreModel):
    """A diffusers denoiser + its noise schedule as a score model s(x, σ[, y]) in VE
    coordinates, optionally with the autoencoder of a latent pipeline.

    Build it with :func:`ebmflow_diffusers.convert` (from a pipeline folder or objects), or
    :meth:`from_unet`; ``ebmflow.load`` rebuilds a saved one.

    Args:
        unet_config: the denoiser's diffusers config (``unet.config`` or
            ``transformer.config``).
        scheduler_config: the scheduler's config (``scheduler.config``): the training noise
            table (VP betas, or VE σ range) and the prediction type.
        network_class: the diffusers class of the denoiser (``"UNet2DModel"``,
            ``"UNet2DConditionModel"``, ``"DiTTransformer2DModel"``, ``"Transformer2DModel"``).
        prediction_type: override the scheduler config's prediction type.
        vae_config: the ``AutoencoderKL`` config of a latent pipeline: the energy lives in its
            (scaled) latent space, and :meth:`decode` maps samples to images.

    Attributes:
        conditioning: what the denoiser is conditioned on
            (:class:`~ebmflow_diffusers.networks.Conditioning`): ``score(x, σ, y=…)`` takes
            labels or embeddings, and ``ebmflow.condition(model, y)`` fixes them.
        condition_ndim: dimensions of one sample's condition (0: a label, 2: an embedding),
            so that ``ebmflow.condition`` broadcasts one condition over a batch.
    """

    noise_conditional = True

    def __init__(
        self,
        unet_config: dict,
        scheduler_config: dict,
        network_class: str = "UNet2DModel",
        prediction_type: str | None = None,
        vae_config: dict | None = None,
    ) -> None:
        super().__init__()
        config = dict(scheduler_config)
        if prediction_type is not None:
            config["prediction_type"] = prediction_type
        self.table = NoiseTable(config)
        self.prediction_type = self.table.prediction_type
        self.network_class = network_class
        # read before building, so that a network needing inputs ebmflow cannot supply is
        # refused by what it needs rather than by a crash of its constructor; read again
        # from the built network's config, which has the defaults of keys a file omits
        conditioning(network_class, unet_config)
        self.unet = build_network(network_class, unet_config)
        # a diffusers model's config (a FrozenDict from ConfigMixin) is untyped here
        unet: Any = self.unet.config
        self.conditioning = conditioning(network_class, unet)
        self.condition_ndim = self.conditioning.ndim
        self.event_shape = event_shape(unet)
        channels = self.event_shape[0]
        out_channels = output_channels(network_class, unet)
        learned = self.table.learned_variance or (
            network_class in TRANSFORMERS and out_channels == 2 * channels
        )
        expected = channels * (2 if learned else 1)
        if out_channels != expected:
            raise ebmflow.ConfigError(
                f"diffusers-unet: the network has {out_channels} output channels but a "
                f"{'learned-variance ' if learned else ''}model of "
                f"{channels}-channel samples needs {expected}"
            )
        self._integer_time = unet.get("time_embedding_type") == "learned"
        # a plain tensor, not a buffer: it must stay float64 whatever dtype the network has
        self.log_sigmas = self.table.log_sigmas if self.table.kind == "vp" else None
        self.vae = None
        if vae_config is not None:
            vae_class = vae_config.get("_class_name", "AutoencoderKL")
            self.vae = build(SUPPORTED_AUTOENCODERS, vae_class, vae_config, "autoencoder")
            latent = self.vae.config.latent_channels
            if latent != channels:
                raise ebmflow.ConfigError(
                    f"diffusers-unet: the autoencoder has {latent} latent channels but the "
                    f"denoiser takes {channels}-channel samples"
                )

    @classmethod
    def from_unet(
        cls,
        unet: nn.Module,
        scheduler: Any,
        prediction_type: str | None = None,
        vae: nn.Module | None = None,
    ) -> DiffusersScoreModel:
        """Wrap an existing denoiser (and autoencoder): their weights are used as they are,
        not copied, and no second network is allocated (the constructor's networks are
        skeletons, replaced at once)."""
        unet_config: Any = unet.config  # ConfigMixin's FrozenDict, untyped here
        vae_config: Any = None if vae is None else vae.config
        with skeleton_networks():
            model = cls(
                plain_config(unet_config),
                plain_config(scheduler.config),
                network_class=type(unet).__name__,
                prediction_type=prediction_type,
                vae_config=None
                if vae is None
                else {**plain_config(vae_config), "_class_name": type(vae).__name__},
            )
        model.unet = unet
        if vae is not None:
            model.vae = vae
        return model

    # -- evaluation --------------------------------------------------------------------

    def _inputs(self, x: Tensor, sigma) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        if sigma is None:
            raise ebmflow.ConfigError(
                "diffusers-unet is noise-conditional: pass sigma (VE noise level), e.g. "
                "model.score(x, sigma=0.5)"
            )
        sigma_t = ebmflow.broadcast_sigma(sigma, x)
        a, v = self.table.scales(sigma_t)
        view = (-1,) + (1,) * (x.ndim - 1)
        if self.table.kind == "ve":
            timestep = sigma_t
        else:
            assert self.log_sigmas is not None  # __init__ keeps the table of every VP model
            timestep = sigma_to_timestep(sigma_t, self.log_sigmas, integer=self._integer_time)
            timestep = timestep.long() if self._integer_time else timestep.to(x.dtype)
        return sigma_t, a.view(view), v.view(view), a.view(view) * x, timestep

    def model_output(self, sample: Tensor, timestep: Tensor, y: Any = None) -> Tensor:
        """The network's raw output at (x_t, t), all channels, given the condition ``y``."""
        condition = self.conditioning.check(y, sample.shape[0], "diffusers-unet")
        if condition is not None:
            condition = condition.to(sample.device)
        if timestep.ndim == 0 and self.network_class in TRANSFORMERS:
            timestep = timestep.expand(sample.shape[0])  # DiT embeds a timestep per sample
        return call_network(self.unet, self.network_class, sample, timestep, condition)

    def network_output(self, x: Tensor, sigma, y: Any = None) -> Tensor:
        """f(x_ve, σ): the raw output (its first C channels) at the VE point x, differentiable
        (what the energy parameterisations square)."""
        _, _, _, x_t, timestep = self._inputs(x, sigma)
        return self.model_output(x_t, timestep, y)[:, : x.shape[1]]

    def energy_and_score(self, x, sigma=None, *, create_graph=False):
        if create_graph:  # training (e.g. multiscale-dsm): keep the graph
            return None, self.score(x, sigma)
        with torch.no_grad():  # sampling: no graph through the network
            return None, self.score(x, sigma)

    def score(self, x: Tensor, sigma=None, *, y: Any = None) -> Tensor:
        """s(x, σ) (differentiable in the weights when called with autograd on; samplers
        call :meth:`energy_and_score`, which records no graph). A conditional network takes
        ``y`` (see :attr:`conditioning`); ``ebmflow.condition(model, y)`` fixes it."""
        _, a, v, x_t, timestep = self._inputs(x, sigma)
        output = self.model_output(x_t, timestep, y)[:, : x.shape[1]]
        return score_from_output(output, x_t, a, v, self.prediction_type)

    def check_scheduler(self, scheduler: Any) -> None:
        """Refuse a sampling scheduler (object or config) whose prediction type is not this
        model's: the scheduler would read the network's output as something it is not and
        produce wrong samples without any error."""
        config = getattr(scheduler, "config", scheduler)
        theirs = config.get("prediction_type") if isinstance(config, Mapping) else None
        if theirs is not None and theirs != self.prediction_type:
            raise ebmflow.ConfigError(
                f"diffusers-unet: the model predicts {self.prediction_type!r} but the "
                f"scheduler {type(scheduler).__name__} expects {theirs!r}; build it with "
                f"from_config(config, prediction_type={self.prediction_type!r})"
            )

    # -- conditioning and latent space -------------------------------------------------

    def null_condition(self) -> int:
        """The null label of the unconditional branch (a DiT's extra label row)."""
        if self.conditioning.null_label is None:
            raise ebmflow.ConfigError(
                f"diffusers-unet: this {self.network_class} has no null label; pass the "
                f"unconditional condition yourself (for embeddings: the encoding of the empty "
                f"prompt); it takes {self.conditioning.describe()}"
            )
        return self.conditioning.null_label

    def guided(self, y: Any, scale: float, null: Any = None) -> ebmflow.Energy:
        """Classifier-free guidance as an energy: ``ebmflow.guidance`` of the model
        conditioned on ``y`` and on ``null`` (default: :meth:`null_condition`)."""
        null = self.null_condition() if null is None else null
        return ebmflow.guidance(ebmflow.condition(self, y), ebmflow.condition(self, null), scale)

    def _autoencoder(self) -> Any:
        if self.vae is None:
            raise ebmflow.ConfigError(
                "diffusers-unet: this model has no autoencoder (a pixel-space model); "
                "decode/encode need a latent pipeline converted with its vae"
            )
        return self.vae

    def decode(self, z: Tensor) -> Tensor:
        """Images (in the autoencoder's range, [−1, 1] for Stable Diffusion's) of latent
        samples ``z``, undoing the VAE's scaling (``z / scaling_factor + shift_factor``) as
        diffusers' latent pipelines do before decoding."""
        vae = self._autoencoder()
        config = vae.config
        shift = config.get("shift_factor") or 0.0
        latents = z / config.scaling_factor + shift
        return vae.decode(latents.to(next(vae.parameters()).dtype)).sample

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Scaled latents of ``images`` (the space the energy lives in): a draw from the
        autoencoder's posterior with ``generator``, or its mean when no generator is given."""
        vae = self._autoencoder()
        config = vae.config
        dist = vae.encode(images).latent_dist
        latents = dist.mean if generator is None else dist.sample(generator)
        shift = config.get("shift_factor") or 0.0
        return (latents - shift) * config.scaling_factor
