"""Tiny, real diffusers objects for the tests: UNets with a few channels, pipelines saved with
``save_pretrained`` into ``tmp_path``. Nothing is downloaded (HF_HUB_OFFLINE=1).

Also makes ``ebmflow_diffusers`` importable from a source checkout when the distribution is
not installed (an installed copy takes precedence)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

if importlib.util.find_spec("ebmflow_diffusers") is None:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True, scope="session")
def _quiet_diffusers():
    from diffusers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _make_unet(seed: int = 0, out_channels: int = 1, **overrides):
    """A UNet2DModel on 1×8×8 images with (8, 16) channels: ~42k weights, ~1 ms a call."""
    import torch
    from diffusers import UNet2DModel

    config = dict(
        sample_size=8,
        in_channels=1,
        out_channels=out_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    config.update(overrides)
    with torch.random.fork_rng():  # diffusers initialises weights from the global RNG
        torch.manual_seed(seed)
        return UNet2DModel(**config).eval()


def _save_pipeline(folder: Path, unet, scheduler) -> Path:
    from diffusers import DDPMPipeline

    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return folder


@pytest.fixture
def make_unet():
    """``make_unet(seed=0, out_channels=1, **config)`` -> a tiny UNet2DModel."""
    return _make_unet


@pytest.fixture
def save_pipeline():
    """``save_pipeline(folder, unet, scheduler)`` -> the folder of a saved DDPMPipeline."""
    return _save_pipeline


@pytest.fixture(scope="session")
def unet():
    return _make_unet()
