"""Converting a conditional latent diffusion checkpoint and composing its conditionals.

    python examples/convert_conditional.py [--quick] [--out DIR] [--seed S]

1. **A latent, class-conditional pipeline folder**: a tiny DiT (``DiTTransformer2DModel``,
   5 classes plus the null label) and an ``AutoencoderKL`` with random weights, saved by
   ``DiTPipeline.save_pretrained`` as a downloaded checkpoint is laid out.
2. **Convert it** with ``ebmflow convert SRC OUT``: one ebmflow checkpoint holds the DiT
   and the autoencoder; ``ebmflow.load`` gives identical scores and decodings. The energy
   lives in the scaled latent space.
3. **Compose**: ``ebmflow.condition`` fixes a label; ``a + b`` is the product of two
   class-conditionals (Composable Diffusion), ``a - 0.5 * b`` a negation, and
   ``model.guided(y, w)`` classifier-free guidance with the DiT's null label.
4. **Sample with MCMC correction**: ``EBMPipeline`` with a MALA corrector draws latents from
   the product (energy differences by integrating the score along each proposal), and
   ``model.decode`` maps them to images.

``--quick`` takes a few seconds. Nothing is downloaded. Needs the ebmflow-diffusers plugin
(``bash scripts/install.sh``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import ebmflow

REQUIRES = ("ebmflow-diffusers",)


def tiny_latent_dit_folder(folder: Path, seed: int) -> Path:
    from diffusers import DDIMScheduler, DiTPipeline
    from ebmflow_diffusers import tiny

    # a class-conditional DiT with learned variance on 4×8×8 latents, and a VAE around it
    dit, vae = tiny.dit(seed), tiny.vae(seed + 1)
    DiTPipeline(transformer=dit, vae=vae, scheduler=DDIMScheduler()).save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (a few seconds)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default: temporary)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument(
        "--threads",
        default=None,
        help="torch CPU threads, a number or 'auto' (default: OMP_NUM_THREADS when set, else 1)",
    )
    args = parser.parse_args(argv)
    ebmflow.set_threads(args.threads)  # one thread unless asked: see docs/guide/cli.md
    from diffusers import DDIMScheduler
    from diffusers.utils import logging
    from ebmflow_diffusers import EBMPipeline, EBMScheduler

    from ebmflow.cli import main as ebmflow_cli

    logging.set_verbosity_error()
    steps, batch = (3, 4) if args.quick else (25, 16)
    out = args.out or Path(tempfile.mkdtemp(prefix="ebmflow-conditional-"))
    summary: dict = {}

    print("1. a latent class-conditional pipeline folder")
    folder = tiny_latent_dit_folder(out / "dit-tiny", args.seed)
    print(f"   {folder}: {sorted(p.name for p in folder.iterdir())}")

    print("2. converting it")
    checkpoint = out / "dit-tiny-ebmflow"
    if ebmflow_cli(["convert", str(folder), str(checkpoint)]) != 0:  # = `ebmflow convert`
        return 1
    model = ebmflow.load(checkpoint).eval()
    reference = ebmflow.create("converter", "diffusers", source=str(folder))
    gen = torch.Generator().manual_seed(args.seed)
    z = torch.randn(2, *model.event_shape, generator=gen)
    with torch.no_grad():
        same = torch.equal(model.score(z, 1.0, y=3), reference.score(z, 1.0, y=3))
        same = same and torch.equal(model.decode(z), reference.decode(z))
    print(
        f"   event shape {model.event_shape} (latents), condition: "
        f"{model.conditioning.describe()}; loaded scores and decodings identical: {same}"
    )
    summary["round_trip_identical"] = same

    print("3. composing conditionals")
    a, b = ebmflow.condition(model, 1), ebmflow.condition(model, 2)
    product, negation, guided = a + b, a - 0.5 * b, model.guided(1, 4.0)
    with torch.no_grad():
        s_a, s_b = a.score(z, 1.0), b.score(z, 1.0)
        gap = float((product.score(z, 1.0) - (s_a + s_b)).abs().max())
        gap = max(gap, float((negation.score(z, 1.0) - (s_a - 0.5 * s_b)).abs().max()))
        s_null = model.score(z, 1.0, y=model.null_condition())
        gap = max(gap, float((guided.score(z, 1.0) - (s_null + 4 * (s_a - s_null))).abs().max()))
    print(f"   product, negation and guidance scores equal their formulas to {gap:.1e}")
    summary["composition_max_gap"] = gap

    print("4. EBMPipeline with a MALA corrector on the product, decoded")
    scheduler = EBMScheduler.from_config(
        DDIMScheduler().config,
        corrector="mala",
        corrector_steps=2,
        snr=0.2,
        energy_rule="simpson",
        energy_points=3,
    )
    pipe = EBMPipeline(None, scheduler)
    pipe.set_progress_bar_config(disable=args.quick)
    result = pipe(
        energy=product,
        batch_size=batch,
        generator=torch.Generator().manual_seed(args.seed),
        num_inference_steps=steps,
        output_type="latent",
    )
    with torch.no_grad():
        images = model.decode(result.images)
    rates = result.acceptance_rates
    print(
        f"   latents {tuple(result.images.shape)} -> images {tuple(images.shape)}; MALA "
        f"acceptance per level {[round(r, 3) for r in rates]}"
    )
    summary["mala_acceptance"] = sum(rates) / len(rates)
    print(json.dumps(summary))
    ok = same and gap < 1e-5 and 0 < summary["mala_acceptance"] <= 1
    return 0 if ok and bool(torch.isfinite(images).all()) else 1


if __name__ == "__main__":
    sys.exit(main())
