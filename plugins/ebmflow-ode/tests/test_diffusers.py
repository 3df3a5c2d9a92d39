"""A converted diffusers checkpoint (a tiny random UNet, saved with save_pretrained and
converted by ``ebmflow convert``) is a score model in VE coordinates: the ODE samplers draw
from it and ``ebmflow evaluate --log-z ode`` gives it a bits/dim figure."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

import ebmflow
from ebmflow.cli import main as cli_main

pytest.importorskip("diffusers")
pytest.importorskip("ebmflow_diffusers")
pytest.importorskip("sklearn")  # the digits dataset
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    folder = tmp_path_factory.mktemp("diffusers")
    with torch.random.fork_rng():  # diffusers initialises weights from the global RNG
        torch.manual_seed(0)
        unet = UNet2DModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
        ).eval()
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(folder / "pipe")
    assert cli_main(["convert", str(folder / "pipe"), str(folder / "model")]) == 0
    return folder / "model"


def test_converted_model_gets_bits_per_dim_through_ebmflow_evaluate(converted, capsys):
    capsys.readouterr()
    argv = ["evaluate", str(converted), "--data", "digits", "--data-arg", "scale=symmetric"]
    argv += ["--sigma", "0.01", "--n", "8", "--log-z", "ode", "--json"]
    for option in ("sigma_max=80", "data_range=[-1, 1]", "n_bins=17", "solver=rk4", "n_steps=8"):
        argv += ["--log-z-arg", option]
    assert cli_main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "ode" and report["divergence"] == "hutchinson"
    assert report["log_z"] is None  # a score-only model has no energy to normalise
    nll, bpd = report["nll"], report["bits_per_dim"]
    assert math.isfinite(nll) and report["stderr"] > 0
    # bits/dim of 64 pixels, 17 levels, range [-1, 1] (width 2)
    assert bpd == pytest.approx((nll - 64 * math.log(2) + 64 * math.log(17)) / (64 * math.log(2)))
    assert report["dequantized"] is True
    text_argv = [a for a in argv if a != "--json"]
    assert cli_main(text_argv) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "(ode)" in line and "log Z" not in line and "bits/dim" in line


def test_ode_samplers_draw_from_a_converted_model(converted):
    model = ebmflow.load(converted)
    sampler = ebmflow.create(
        "sampler",
        "ode-heun",
        noise_schedule={"name": "karras", "sigma_min": 0.01, "sigma_max": 80.0},
        n_levels=6,
    )
    x0 = sampler.init_scale * torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    result = sampler.run(model, x0)
    assert result.samples.shape == (3, 1, 8, 8) and bool(torch.isfinite(result.samples).all())
    assert result.state.energy is None  # score-only
