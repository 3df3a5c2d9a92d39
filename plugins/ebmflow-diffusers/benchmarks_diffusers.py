"""The figures ebmflow-diffusers' README reports: the equivalence errors with DDPMScheduler /
DDIMScheduler and the segment-integral energy errors.

    cd <repo> && OMP_NUM_THREADS=1 python plugins/ebmflow-diffusers/benchmarks_diffusers.py

The timings (EBMScheduler in DDPMPipeline, ``scheduler.step`` alone) are a group of the
repository's harness: ``python -m benchmarks --only diffusers``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

BATCH, STEPS = 16, 50


def figures() -> None:
    """Print the equivalence and segment-integral errors the README reports."""
    from diffusers import DDIMScheduler, DDPMScheduler
    from diffusers.utils import logging
    from ebmflow_diffusers import EBMScheduler, GaussianDenoiser, segment_difference, tiny

    import ebmflow

    logging.set_verbosity_error()
    unet = tiny.unet()

    def model(net, dtype):
        net = net.to(dtype)

        def call(x, t):
            with torch.no_grad():
                return net(x, t).sample

        return call

    def loop(scheduler, call, dtype, kwargs=None, teacher=None):
        gen = torch.Generator().manual_seed(1)
        g2 = torch.Generator().manual_seed(1)
        x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=dtype)
        scheduler.set_timesteps(STEPS)
        worst = 0.0
        if teacher is not None:
            teacher.set_timesteps(STEPS)
        for t in scheduler.timesteps:
            out = call(x, t)
            new = scheduler.step(out, t, x, generator=gen, **(kwargs or {})).prev_sample
            if teacher is not None:
                other = teacher.step(out, t, x, generator=g2).prev_sample
                worst = max(worst, float((new - other).abs().max()))
            x = new
        return x, worst

    def upcast(ref):
        ref.alphas_cumprod = ref.alphas_cumprod.double()
        for name in ("one", "final_alpha_cumprod"):
            if hasattr(ref, name):
                setattr(ref, name, getattr(ref, name).double())
        return ref

    print("equivalence, 50 steps, batch 4 (max |Δ|)")
    for label, ref, ours, kw in (
        ("DDPM", lambda: DDPMScheduler(), lambda c: EBMScheduler.from_config(c), None),
        (
            "DDIM η=0",
            lambda: DDIMScheduler(),
            lambda c: EBMScheduler.from_config(c, predictor="ddim", eta=0.0),
            {"eta": 0.0},
        ),
        (
            "DDIM η=1",
            lambda: DDIMScheduler(),
            lambda c: EBMScheduler.from_config(c, predictor="ddim", eta=1.0),
            {"eta": 1.0},
        ),
    ):
        r = ref()
        _, forced = loop(r, model(unet, torch.float32), torch.float32, kw, teacher=ours(r.config))
        r = ref()
        gauss = model(GaussianDenoiser(sample_size=8, mean=0.3, std=0.5), torch.float32)
        a, _ = loop(r, gauss, torch.float32, kw)
        b, _ = loop(ours(r.config), gauss, torch.float32)
        r64 = upcast(ref())
        c, _ = loop(r64, model(unet, torch.float64), torch.float64, kw)
        d, _ = loop(ours(r64.config), model(unet, torch.float64), torch.float64)
        r32 = ref()
        e, _ = loop(r32, model(unet, torch.float32), torch.float32, kw)
        f, _ = loop(ours(r32.config), model(unet, torch.float32), torch.float32)
        print(
            f"  {label:9s} float32 per step (UNet, teacher-forced) {forced:.1e}; "
            f"float32 free-running (exact Gaussian denoiser) {float((a - b).abs().max()):.1e}; "
            f"float64 free-running (UNet) {float((c - d).abs().max()):.1e}; "
            f"float32 free-running (random UNet) {float((e - f).abs().max()):.1e}"
        )
        unet.to(torch.float32)

    print(
        "segment-integral ΔE error, 8-mode ring (σ_k = 0.5), 4000 segments x₀ ~ target,"
        " x₁ = x₀ + 0.3 z (RMS / max)"
    )
    means = [[2 * math.cos(k * math.pi / 4), 2 * math.sin(k * math.pi / 4)] for k in range(8)]
    gmm = ebmflow.create("energy", "gmm", means=means, stds=0.5).to(torch.float64)
    gauss = ebmflow.create(
        "energy", "gaussian", mean=[0.3] * 10, std=[0.5 + 0.1 * i for i in range(10)]
    ).to(torch.float64)
    for name, target, step in (("gaussian 10-D", gauss, 1.0), ("gmm ring", gmm, 0.3)):
        gen = torch.Generator().manual_seed(0)
        x0 = target.sample(4000, generator=gen)
        x1 = x0 + step * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        exact = target(x1) - target(x0)

        class ScoreOnly(ebmflow.ScoreModel):
            def score(self, x, sigma=None, _t=target):
                return _t.score(x, sigma)

        row = []
        for rule, n in (
            ("trapezoid", 2),
            ("trapezoid", 3),
            ("trapezoid", 9),
            ("simpson", 3),
            ("simpson", 5),
            ("simpson", 9),
        ):
            delta, _ = segment_difference(ScoreOnly(), x0, x1, n_points=n, rule=rule)
            err = delta - exact
            row.append(
                f"{rule[:4]}-{n}: {float(err.pow(2).mean().sqrt()):.1e} / "
                f"{float(err.abs().max()):.1e}"
            )
        print(f"  {name}: " + "; ".join(row))


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    torch.set_num_threads(1)
    figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
