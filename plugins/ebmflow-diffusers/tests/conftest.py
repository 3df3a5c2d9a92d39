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
    from ebmflow_diffusers import tiny

    return tiny.unet(seed, out_channels=out_channels, **overrides)


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
