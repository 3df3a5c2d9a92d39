"""ebmflow-diffusers benchmarks and measured figures.

Benchmarks (``cases(size)``, size ``"full"``, ``"quick"`` or ``"tiny"``, returns
``benchmarks.harness.Case`` records in the form the repository's ``python -m benchmarks``
groups use; ``benchmarks/diffusers.py`` can re-export it, or run this file directly):

- ``EBMScheduler in DDPMPipeline``: the stock ``DDPMPipeline`` on the same tiny UNet (1×8×8,
  (8, 16) channels) and batch, with ``EBMScheduler`` (no corrector) against
  ``DDPMScheduler``: the ratio of time per sampling step, UNet included.
- ``EBMScheduler.step``: the scheduler step alone (the model output precomputed), the same
  50-step loop for both: the ratio of the scheduler's own overhead.

Figures (``--figures``): the equivalence errors with DDPMScheduler / DDIMScheduler and the
segment-integral energy errors, as the README reports them.

    cd <repo> && OMP_NUM_THREADS=1 python plugins/ebmflow-diffusers/benchmarks_diffusers.py \
        [--size full|quick|tiny] [--repeats N] [--clock wall|cpu] [--figures]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

BATCH, STEPS = 16, 50


def tiny_unet(seed: int = 0):
    from diffusers import UNet2DModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return UNet2DModel(sample_size=8, in_channels=1, out_channels=1,
                           block_out_channels=(8, 16), layers_per_block=1,
                           down_block_types=("DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval()


def cases(size: str = "full", **_options) -> list:
    from diffusers import DDPMPipeline, DDPMScheduler
    from diffusers.utils import logging
    from ebmflow_diffusers import EBMScheduler

    from benchmarks.harness import Case

    logging.set_verbosity_error()
    steps = {"full": STEPS, "quick": 10, "tiny": 2}[size]
    unet = tiny_unet()
    ref_pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler())
    our_pipe = DDPMPipeline(unet=unet, scheduler=EBMScheduler.from_config(DDPMScheduler().config))
    for pipe in (ref_pipe, our_pipe):
        pipe.set_progress_bar_config(disable=True)

    def pipeline(pipe):
        def run():
            pipe(batch_size=BATCH, generator=torch.Generator().manual_seed(0),
                 num_inference_steps=steps, output_type="pt")
        return run

    sample = torch.randn(BATCH, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = unet(sample, torch.tensor(500)).sample

    def stepping(scheduler):
        scheduler.set_timesteps(steps)

        def run():
            gen = torch.Generator().manual_seed(0)
            x = sample
            for t in scheduler.timesteps:
                x = scheduler.step(output, t, x, generator=gen).prev_sample
        return run

    return [
        Case(f"EBMScheduler in DDPMPipeline, tiny UNet, batch {BATCH}", "diffusers",
             pipeline(our_pipe), pipeline(ref_pipe), steps,
             note="vs DDPMScheduler in DDPMPipeline"),
        Case(f"EBMScheduler.step alone, batch {BATCH}", "diffusers",
             stepping(EBMScheduler()), stepping(DDPMScheduler()), steps,
             note="vs DDPMScheduler.step"),
    ]


def figures() -> None:
    """Print the equivalence and segment-integral errors the README reports."""
    from diffusers import DDIMScheduler, DDPMScheduler
    from diffusers.utils import logging
    from ebmflow_diffusers import EBMScheduler, GaussianDenoiser, segment_difference

    import ebmflow

    logging.set_verbosity_error()
    unet = tiny_unet()

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
        ("DDIM η=0", lambda: DDIMScheduler(),
         lambda c: EBMScheduler.from_config(c, predictor="ddim", eta=0.0), {"eta": 0.0}),
        ("DDIM η=1", lambda: DDIMScheduler(),
         lambda c: EBMScheduler.from_config(c, predictor="ddim", eta=1.0), {"eta": 1.0}),
    ):
        r = ref()
        _, forced = loop(r, model(unet, torch.float32), torch.float32, kw,
                         teacher=ours(r.config))
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
        print(f"  {label:9s} float32 per step (UNet, teacher-forced) {forced:.1e}; "
              f"float32 free-running (exact Gaussian denoiser) {float((a - b).abs().max()):.1e}; "
              f"float64 free-running (UNet) {float((c - d).abs().max()):.1e}; "
              f"float32 free-running (random UNet) {float((e - f).abs().max()):.1e}")
        unet.to(torch.float32)

    print("segment-integral ΔE error, 8-mode ring (σ_k = 0.5), 4000 segments x₀ ~ target,"
          " x₁ = x₀ + 0.3 z (RMS / max)")
    means = [[2 * math.cos(k * math.pi / 4), 2 * math.sin(k * math.pi / 4)] for k in range(8)]
    gmm = ebmflow.create("energy", "gmm", means=means, stds=0.5).to(torch.float64)
    gauss = ebmflow.create("energy", "gaussian", mean=[0.3] * 10,
                           std=[0.5 + 0.1 * i for i in range(10)]).to(torch.float64)
    for name, target, step in (("gaussian 10-D", gauss, 1.0), ("gmm ring", gmm, 0.3)):
        gen = torch.Generator().manual_seed(0)
        x0 = target.sample(4000, generator=gen)
        x1 = x0 + step * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        exact = target(x1) - target(x0)

        class ScoreOnly(ebmflow.ScoreModel):
            def score(self, x, sigma=None, _t=target):
                return _t.score(x, sigma)

        row = []
        for rule, n in (("trapezoid", 2), ("trapezoid", 3), ("trapezoid", 9),
                        ("simpson", 3), ("simpson", 5), ("simpson", 9)):
            delta, _ = segment_difference(ScoreOnly(), x0, x1, n_points=n, rule=rule)
            err = delta - exact
            row.append(f"{rule[:4]}-{n}: {float(err.pow(2).mean().sqrt()):.1e} / "
                       f"{float(err.abs().max()):.1e}")
        print(f"  {name}: " + "; ".join(row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("full", "quick", "tiny"), default="full")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="cpu")
    parser.add_argument("--figures", action="store_true",
                        help="print the equivalence and segment-integral figures instead")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root))  # the repository's benchmarks package
    torch.set_num_threads(1)
    if args.figures:
        figures()
        return 0
    from benchmarks.harness import measure

    repeats = args.repeats or {"full": 15, "quick": 3, "tiny": 1}[args.size]
    for case in cases(args.size):
        r = measure(case, repeats, clock=args.clock)
        print(f"{r.name:50s} ratio {r.ratio:6.3f}  [{r.ratio_q1:.3f}, {r.ratio_q3:.3f}]  "
              f"{r.ours_us:8.0f} µs vs {r.reference_us:8.0f} µs per {r.unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
