"""The denoising networks a converted model can hold, and what each one is conditioned on.

A diffusers denoiser is called differently by class (``unet(x, t, encoder_hidden_states,
class_labels=…)``, ``transformer(x, timestep=t, class_labels=…)``) and takes different
conditioning inputs. This module reads both from the network's config, so that the score
model (:mod:`ebmflow_diffusers.model`) sees one call, ``call_network(net, x_t, t, y)``, and
one rule for checking ``y``:

- ``"none"``: an unconditional network (``UNet2DModel``; a ``UNet2DConditionModel`` with
  neither cross-attention nor class embeddings);
- ``"label"``: integer class labels ``(B,)`` (``num_class_embeds`` of a UNet;
  ``num_embeds_ada_norm`` of a DiT, whose label table has one more row, the null label that
  classifier-free guidance uses as the unconditional branch);
- ``"embedding"``: ``encoder_hidden_states`` ``(B, L, D)`` from any text encoder, D the
  network's ``cross_attention_dim`` (or ``encoder_hid_dim`` where it projects them).

Networks that need inputs ebmflow cannot supply (SDXL's added time ids, image projections,
PixArt's resolution conditioning) are refused by name.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import ebmflow

#: network classes a score model can rebuild from a config, and the module holding each.
SUPPORTED_NETWORKS = {
    "UNet2DModel": "diffusers",
    "UNet2DConditionModel": "diffusers",
    "DiTTransformer2DModel": "diffusers",
    "Transformer2DModel": "diffusers",
    "GaussianDenoiser": "ebmflow_diffusers",
}
#: transformers: a model with 2C output channels predicts a variance in the second half
#: (DiTPipeline's rule), whatever the scheduler's variance_type says.
TRANSFORMERS = ("DiTTransformer2DModel", "Transformer2DModel")
#: autoencoders around a latent denoiser, and the module holding each.
SUPPORTED_AUTOENCODERS = {"AutoencoderKL": "diffusers"}
CONDITION_KINDS = ("none", "label", "embedding")


def _unsupported(network_class: str, what: str) -> ebmflow.ConfigError:
    return ebmflow.ConfigError(
        f"diffusers-unet: this {network_class} {what}, which ebmflow cannot supply; supported: "
        f"unconditional networks, class labels (num_class_embeds, or num_embeds_ada_norm of "
        f"a DiT) or encoder_hidden_states (cross-attention), one of them per network"
    )


@dataclass(frozen=True)
class Conditioning:
    """What a network is conditioned on.

    Attributes:
        kind: ``"none"``, ``"label"`` or ``"embedding"``.
        num_classes: labels 0 … num_classes − 1 (``"label"``).
        null_label: the label of the unconditional branch, when the network has one (a DiT's
            extra table row), else ``None``.
        embedding_dim: D of ``(B, L, D)`` embeddings (``"embedding"``).
    """

    kind: str = "none"
    num_classes: int | None = None
    null_label: int | None = None
    embedding_dim: int | None = None

    def describe(self) -> str:
        if self.kind == "label":
            top = self.num_classes if self.null_label is None else self.null_label + 1
            null = "" if self.null_label is None else f" ({self.null_label}: the null label)"
            return f"integer class labels y of shape (B,) or () with values in [0, {top}){null}"
        if self.kind == "embedding":
            return f"embeddings y (encoder_hidden_states) of shape (B, L, {self.embedding_dim})"
        return "no condition (an unconditional network)"

    @property
    def ndim(self) -> int:
        """Dimensions of one sample's condition: 0 for a label, 2 for an (L, D) embedding."""
        return 2 if self.kind == "embedding" else 0

    def check(self, y: Any, batch: int, where: str) -> Tensor | None:
        """``y`` as the network takes it, one per sample (one condition is broadcast); any
        other shape, dtype or range is refused naming the expected one."""
        if self.kind == "none":
            if y is not None:
                raise ebmflow.ConfigError(
                    f"{where}: the network is unconditional and takes no y; got {type(y).__name__}"
                )
            return None
        if y is None:
            raise ebmflow.ConfigError(
                f"{where}: the network is conditional: pass y=, {self.describe()}, or fix it "
                f"with ebmflow.condition(model, y)"
            )
        y = torch.as_tensor(y)
        shape = tuple(y.shape)
        if y.ndim == self.ndim or (y.ndim == self.ndim + 1 and y.shape[0] == 1):
            # one condition for every sample
            one = y.reshape(1, *y.shape[y.ndim - self.ndim :])
            y = one.expand(batch, *one.shape[1:])
        if self.kind == "label":
            bad_dtype = y.is_floating_point() or y.is_complex() or y.dtype == torch.bool
            top = self.num_classes if self.null_label is None else self.null_label + 1
            if bad_dtype or y.shape != (batch,):
                raise ebmflow.ConfigError(
                    f"{where}: y has shape {shape} and dtype {str(y.dtype).removeprefix('torch.')};"
                    f" expected {self.describe()}, B = {batch}"
                )
            if bool(((y < 0) | (y >= top)).any()):
                raise ebmflow.ConfigError(
                    f"{where}: labels {sorted(set(y.tolist()))} out of range; expected "
                    f"{self.describe()}"
                )
            return y.long()
        if (
            not y.is_floating_point()
            or y.ndim != 3
            or y.shape[0] != batch
            or (y.shape[2] != self.embedding_dim)
        ):
            raise ebmflow.ConfigError(
                f"{where}: y has shape {shape} and dtype {str(y.dtype).removeprefix('torch.')}; "
                f"expected floating-point {self.describe()}, B = {batch} (or one (L, "
                f"{self.embedding_dim}) embedding for every sample)"
            )
        return y


def _blocks(config: Mapping[str, Any]) -> list[str]:
    names = [*(config.get("down_block_types") or ()), *(config.get("up_block_types") or ())]
    return [str(n) for n in names] + [str(config.get("mid_block_type") or "")]


def conditioning(network_class: str, config: Mapping[str, Any]) -> Conditioning:
    """What a network of ``network_class`` with ``config`` is conditioned on."""
    if network_class in ("UNet2DModel", "UNet2DConditionModel"):
        class_embed = config.get("class_embed_type")
        if class_embed is not None:
            raise _unsupported(network_class, f"embeds class labels by {class_embed!r}")
        labels = config.get("num_class_embeds")
        if network_class == "UNet2DModel":
            return Conditioning("label", num_classes=int(labels)) if labels else Conditioning()
        for key in ("addition_embed_type", "encoder_hid_dim_type"):
            value = config.get(key)
            if value is not None and not (key == "encoder_hid_dim_type" and value == "text_proj"):
                raise _unsupported(network_class, f"needs {key}={value!r} inputs")
        cross = any("CrossAttn" in name for name in _blocks(config))
        if cross and labels:
            raise _unsupported(network_class, "takes both class labels and embeddings")
        if labels:
            return Conditioning("label", num_classes=int(labels))
        if not cross:
            return Conditioning()
        dim: Any = config.get("encoder_hid_dim") or config.get("cross_attention_dim")
        if isinstance(dim, (list, tuple)):
            if len(set(dim)) != 1:
                raise _unsupported(network_class, f"has cross_attention_dim {list(dim)} per block")
            dim = dim[0]
        return Conditioning("embedding", embedding_dim=int(dim))
    if network_class in TRANSFORMERS:
        classes = config.get("num_embeds_ada_norm")
        norm = config.get("norm_type", "ada_norm_zero")
        if network_class == "Transformer2DModel" and (
            config.get("patch_size") is None or norm != "ada_norm_zero"
        ):
            raise _unsupported(
                network_class,
                f"has norm_type={norm!r}, patch_size={config.get('patch_size')!r} (only the "
                "class-conditional DiT form, ada_norm_zero with patches, is supported)",
            )
        if not classes:
            raise _unsupported(network_class, "has no num_embeds_ada_norm (class count)")
        # the label table holds one more row than there are classes: the null label
        return Conditioning("label", num_classes=int(classes), null_label=int(classes))
    return Conditioning()


def event_shape(config: Mapping[str, Any]) -> tuple[int, ...]:
    size: Any = config.get("sample_size")
    size = (size, size) if isinstance(size, int) else tuple(size)
    return (int(config["in_channels"]), *size)


def output_channels(network_class: str, config: Mapping[str, Any]) -> int:
    out = config.get("out_channels")
    return int(config["in_channels"] if out is None else out)


def call_network(
    network: nn.Module, network_class: str, sample: Tensor, timestep: Tensor, y: Tensor | None
) -> Tensor:
    """The network's raw output at (x_t, t) given the checked condition ``y``."""
    if network_class in TRANSFORMERS:
        return network(sample, timestep=timestep, class_labels=y).sample
    if network_class == "UNet2DConditionModel":
        if y is None or not y.is_floating_point():
            return network(sample, timestep, None, class_labels=y).sample
        return network(sample, timestep, y.to(sample.dtype)).sample
    if y is not None:
        return network(sample, timestep, class_labels=y).sample
    return network(sample, timestep).sample


_SKELETON: ContextVar[bool] = ContextVar("ebmflow_diffusers_skeleton", default=False)


@contextlib.contextmanager
def skeleton_networks() -> Iterator[None]:
    """Inside, :func:`build` makes modules whose parameters and buffers live on the meta
    device: their structure and config without their memory or random initialisation. For
    a model whose networks are replaced at once by existing ones, or built only to check
    its configs; a skeleton cannot be run. A network whose constructor computes with its
    tensors' values (which meta tensors lack) is built for real."""
    token = _SKELETON.set(True)
    try:
        yield
    finally:
        _SKELETON.reset(token)


def build(modules: Mapping[str, str], cls_name: str, config: Mapping[str, Any], what: str):
    """A diffusers module of class ``cls_name`` from its config (random weights; on the meta
    device inside :func:`skeleton_networks`, where a constructor allows it)."""
    if cls_name not in modules:
        raise ebmflow.ConfigError(
            f"diffusers-unet: {what} class {cls_name!r} is not supported; supported: "
            f"{', '.join(modules)}"
        )
    cls = getattr(importlib.import_module(modules[cls_name]), cls_name)
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    if _SKELETON.get():
        try:
            with torch.device("meta"):
                return cls.from_config(kwargs)
        except Exception:  # the real build below reports a bad config
            pass  # a constructor that computes with its tensors' values: built for real
    try:
        return cls.from_config(kwargs)
    except Exception as exc:  # the constructor's own checks, or a crash on an ill-typed value
        raise ebmflow.ConfigError(
            f"diffusers-unet: the config does not build a {cls_name} ({type(exc).__name__}: {exc})"
        ) from None
