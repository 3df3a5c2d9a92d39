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

Checkpoints. The constructor takes only JSON (the network's diffusers config and the
scheduler config), and the network's weights are this module's state dict, so
``ebmflow.save`` writes config.json + model.safetensors and ``ebmflow.load`` rebuilds the
network with ``UNet2DModel.from_config`` and loads the weights: no pickle, no diffusers
folder needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

import ebmflow
from ebmflow_diffusers.schedule import NoiseTable, score_from_output, sigma_to_timestep

#: network classes the score model can rebuild from a config, and the module holding each.
SUPPORTED_NETWORKS = {"UNet2DModel": "diffusers", "GaussianDenoiser": "ebmflow_diffusers"}


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
    if network_class not in SUPPORTED_NETWORKS:
        raise ebmflow.ConfigError(
            f"diffusers-unet: network class {network_class!r} is not supported; supported: "
            f"{', '.join(SUPPORTED_NETWORKS)} (unconditional image models)"
        )
    import importlib

    cls = getattr(importlib.import_module(SUPPORTED_NETWORKS[network_class]), network_class)
    try:
        return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    except Exception as exc:  # the constructor's own checks, or a crash on an ill-typed value
        raise ebmflow.ConfigError(
            f"diffusers-unet: the config does not build a {network_class} "
            f"({type(exc).__name__}: {exc})"
        ) from None


class DiffusersScoreModel(ebmflow.ScoreModel):
    """A diffusers UNet + its noise schedule as a score model s(x, σ) in VE coordinates.

    Build it with :func:`ebmflow_diffusers.convert` (from a pipeline folder or objects), or
    :meth:`from_unet`; ``ebmflow.load`` rebuilds a saved one.

    Args:
        unet_config: the network's diffusers config (``unet.config``).
        scheduler_config: the scheduler's config (``scheduler.config``): the training noise
            table (VP betas, or VE σ range) and the prediction type.
        network_class: the diffusers class of the network (``"UNet2DModel"``).
        prediction_type: override the scheduler config's prediction type.
    """

    noise_conditional = True

    def __init__(
        self,
        unet_config: dict,
        scheduler_config: dict,
        network_class: str = "UNet2DModel",
        prediction_type: str | None = None,
    ) -> None:
        super().__init__()
        config = dict(scheduler_config)
        if prediction_type is not None:
            config["prediction_type"] = prediction_type
        self.table = NoiseTable(config)
        self.prediction_type = self.table.prediction_type
        self.unet = build_network(network_class, unet_config)
        # a diffusers model's config (a FrozenDict from ConfigMixin) is untyped here
        unet: Any = self.unet.config
        size = unet.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        self.event_shape = (unet.in_channels, *size)
        expected = unet.in_channels * (2 if self.table.learned_variance else 1)
        out_channels = unet.get("out_channels", unet.in_channels)
        if out_channels != expected:
            raise ebmflow.ConfigError(
                f"diffusers-unet: the network has {out_channels} output channels but a "
                f"{'learned-variance ' if self.table.learned_variance else ''}model of "
                f"{unet.in_channels}-channel samples needs {expected}"
            )
        self._integer_time = unet.get("time_embedding_type") == "learned"
        # a plain tensor, not a buffer: it must stay float64 whatever dtype the network has
        self.log_sigmas = self.table.log_sigmas if self.table.kind == "vp" else None

    @classmethod
    def from_unet(
        cls,
        unet: nn.Module,
        scheduler: Any,
        prediction_type: str | None = None,
    ) -> DiffusersScoreModel:
        """Wrap an existing network (its weights are used as they are, not copied)."""
        unet_config: Any = unet.config  # ConfigMixin's FrozenDict, untyped here
        model = cls(
            plain_config(unet_config),
            plain_config(scheduler.config),
            network_class=type(unet).__name__,
            prediction_type=prediction_type,
        )
        model.unet = unet
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

    def model_output(self, sample: Tensor, timestep: Tensor) -> Tensor:
        """The network's raw output at (x_t, t), all channels."""
        return self.unet(sample, timestep).sample

    def network_output(self, x: Tensor, sigma) -> Tensor:
        """f(x_ve, σ): the raw output (its first C channels) at the VE point x, differentiable
        (what the energy parameterisations square)."""
        _, _, _, x_t, timestep = self._inputs(x, sigma)
        return self.model_output(x_t, timestep)[:, : x.shape[1]]

    def energy_and_score(self, x, sigma=None, *, create_graph=False):
        if create_graph:  # training (e.g. multiscale-dsm): keep the graph
            return None, self.score(x, sigma)
        with torch.no_grad():  # sampling: no graph through the network
            return None, self.score(x, sigma)

    def score(self, x: Tensor, sigma=None) -> Tensor:
        """s(x, σ) (differentiable in the weights when called with autograd on; samplers
        call :meth:`energy_and_score`, which records no graph)."""
        _, a, v, x_t, timestep = self._inputs(x, sigma)
        output = self.model_output(x_t, timestep)[:, : x.shape[1]]
        return score_from_output(output, x_t, a, v, self.prediction_type)
