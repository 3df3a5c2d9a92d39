"""A diffusers pipeline with a 2-step MALA corrector at every level, on a tiny
``UNet2DModel``: ``EBMPipeline`` with ``EBMScheduler(corrector="mala", corrector_steps=2)``
against the same predictor–corrector loop written by hand.

The UNet is an ε-network (score-only), so MALA's Metropolis test uses the two-point
trapezoid estimate of the energy difference along the proposal segment,
E(x′) − E(x) ≈ −½ ⟨s(x) + s(x′), x′ − x⟩, which needs no extra network call. Per level the
hand loop calls the network four times: the score at the level's start (for the snr step
size and MALA's cached score), once per MALA step, and once for the predictor.

Needs diffusers and the ebmflow-diffusers plugin (the caller skips it otherwise).
"""

from __future__ import annotations

import math
import os

import torch

from benchmarks.harness import Case, pick

SNR = 0.16  # the corrector's default


def tiny_unet(channels: int = 3, size: int = 16):
    from diffusers import UNet2DModel

    with torch.random.fork_rng():  # diffusers initialises weights from the global RNG
        torch.manual_seed(0)
        return UNet2DModel(
            sample_size=size,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
        ).eval()


def _row(values, like):
    return values.view(-1, *(1,) * (like.ndim - 1))


def hand_mala_corrector(unet, x, t, a, sigma, n_steps, gen):
    """``n_steps`` MALA steps in VE coordinates on s(x_ve) = −ε̂(a x_ve, t) / σ."""

    def score(x_ve):
        return -unet(x_ve * a, t).sample / sigma

    x_ve = x / a
    s = score(x_ve)
    norm = float(s.flatten(1).norm(dim=1).mean())
    eta = 2.0 * (SNR * math.sqrt(s[0].numel()) / norm) ** 2
    c = math.sqrt(eta / 2.0)
    for _ in range(n_steps):
        xi = torch.randn(x_ve.shape, generator=gen)
        x_prop = x_ve + eta * s + math.sqrt(2.0 * eta) * xi
        s_prop = score(x_prop)
        u = s + s_prop
        delta_e = -0.5 * (u * (x_prop - x_ve)).flatten(1).sum(1)  # trapezoid
        log_ratio = -c * (u * (xi + 0.5 * c * u)).flatten(1).sum(1)
        log_alpha = -delta_e + log_ratio
        accept = torch.rand(log_alpha.shape, generator=gen) < log_alpha.clamp(max=0).exp()
        x_ve = torch.where(_row(accept, x_ve), x_prop, x_ve)
        s = torch.where(_row(accept, s), s_prop, s)
    return x_ve * a


def mala_corrector_case(size: str) -> Case:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import DDPMScheduler
    from diffusers.utils import logging
    from ebmflow_diffusers import EBMPipeline, EBMScheduler

    logging.set_verbosity_error()
    steps, batch = pick(size, 10, 5, 2), pick(size, 16, 16, 2)
    unet = tiny_unet()
    pipe = EBMPipeline(unet, EBMScheduler(corrector="mala", corrector_steps=2, snr=SNR))
    pipe.set_progress_bar_config(disable=True)

    def ours():
        gen = torch.Generator().manual_seed(0)
        return pipe(batch, generator=gen, num_inference_steps=steps, output_type="latent")

    def by_hand():
        scheduler = DDPMScheduler()
        gen = torch.Generator().manual_seed(0)
        scheduler.set_timesteps(steps)
        x = torch.randn(batch, 3, 16, 16, generator=gen)
        with torch.no_grad():
            for t in scheduler.timesteps:
                ab = float(scheduler.alphas_cumprod[t])
                a, sigma = math.sqrt(ab), math.sqrt((1.0 - ab) / ab)
                x = hand_mala_corrector(unet, x, t, a, sigma, 2, gen)
                eps = unet(x, t).sample
                x = scheduler.step(eps, t, x, generator=gen).prev_sample
        return x

    return Case(
        f"EBMPipeline with a 2-step MALA corrector per level, tiny UNet 3×16×16, batch {batch}",
        "workloads",
        ours,
        by_hand,
        steps,
        unit="level",
        target=1.05,
        note=f"vs a hand-written DDPM + MALA corrector loop, {steps} levels, 4 network calls each",
        repeats=pick(size, 7, 3, 1),
    )
