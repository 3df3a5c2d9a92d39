"""Tiny, seeded diffusers networks: the models of the tests, examples and benchmarks.

Nothing can be downloaded where ebmflow is tested, so every diffusers model they use is
built here, with fixed weights for a seed, small enough for a CPU (a call takes about a
millisecond). Each is in eval mode. diffusers initialises weights from torch's global RNG;
the builders draw them inside :func:`torch.random.fork_rng`, so the caller's global RNG
state is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

Model = TypeVar("Model", bound=torch.nn.Module)

#: the UNets' two resolution levels and their widths
_BLOCKS: dict[str, Any] = dict(
    sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4
)


def seeded(build: Callable[[], Model], seed: int = 0) -> Model:
    """``build()`` with torch's global RNG seeded by ``seed`` inside ``fork_rng``, in eval
    mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build().eval()


def unet(seed: int = 0, channels: int = 1, **overrides: Any) -> torch.nn.Module:
    """An unconditional ``UNet2DModel`` on ``channels``×8×8 images (about 42k weights for
    one channel); ``overrides`` replace config entries (``out_channels=2`` for a
    learned-variance output, ``num_class_embeds`` ...)."""
    from diffusers import UNet2DModel

    config = dict(
        _BLOCKS,
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    config.update(overrides)
    return seeded(lambda: UNet2DModel(**config), seed)


def label_unet(seed: int = 0, channels: int = 4, classes: int | None = 3) -> torch.nn.Module:
    """A ``UNet2DConditionModel`` on ``channels``×8×8 inputs with ``classes`` class
    embeddings and no cross-attention (``classes=None``: an unconditional one)."""
    from diffusers import UNet2DConditionModel

    return seeded(
        lambda: UNet2DConditionModel(
            **_BLOCKS,
            in_channels=channels,
            out_channels=channels,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            mid_block_type=None,
            num_class_embeds=classes,
        ),
        seed,
    )


def text_unet(seed: int = 0, channels: int = 4, embedding_dim: int = 12) -> torch.nn.Module:
    """A ``UNet2DConditionModel`` on ``channels``×8×8 inputs with cross-attention on
    ``embedding_dim``-dimensional ``encoder_hidden_states``."""
    from diffusers import UNet2DConditionModel

    return seeded(
        lambda: UNet2DConditionModel(
            **_BLOCKS,
            in_channels=channels,
            out_channels=channels,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            mid_block_type="UNetMidBlock2DCrossAttn",
            cross_attention_dim=embedding_dim,
            attention_head_dim=4,
        ),
        seed,
    )


def dit(seed: int = 0, transformer_class: Any = None) -> torch.nn.Module:
    """A class-conditional DiT on 4×8×8 latents: 5 classes (label 5 is the null label),
    learned variance (8 output channels). ``transformer_class``: ``DiTTransformer2DModel``
    (the default) or ``Transformer2DModel`` (built with ``norm_type="ada_norm_zero"``)."""
    from diffusers import DiTTransformer2DModel, Transformer2DModel

    cls = transformer_class or DiTTransformer2DModel
    extra = {"norm_type": "ada_norm_zero"} if cls is Transformer2DModel else {}
    return seeded(
        lambda: cls(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=8,
            num_layers=1,
            sample_size=8,
            patch_size=2,
            num_embeds_ada_norm=5,
            norm_num_groups=4,
            **extra,
        ),
        seed,
    )


def vae(seed: int = 0) -> torch.nn.Module:
    """An ``AutoencoderKL`` between 3×16×16 images and 4×8×8 latents."""
    from diffusers import AutoencoderKL

    return seeded(
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(8, 16),
            latent_channels=4,
            norm_num_groups=4,
            sample_size=16,
        ),
        seed,
    )
