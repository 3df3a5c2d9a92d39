"""Converting a diffusion checkpoint to an energy and sampling it with MCMC correction.

    python examples/convert_diffusers.py [--quick] [--out DIR] [--seed S]

1. **Build a diffusers pipeline folder**: a tiny DDPM pipeline (a ``UNet2DModel`` with random
   weights on 1×8×8 images + ``DDPMScheduler``), written with ``save_pretrained`` exactly as
   a downloaded checkpoint is laid out (model_index.json, unet/, scheduler/).
2. **Convert it** with the ``diffusers`` converter (``ebmflow.create("converter",
   "diffusers", source=...)``) and with the CLI, ``ebmflow convert SRC OUT``, which writes
   an ebmflow checkpoint (config.json + model.safetensors); ``ebmflow.load`` reads it back
   and its scores equal the converted model's, bit for bit.
3. **Sample with MCMC correction**: ``EBMPipeline`` with a MALA corrector. The converted
   model is score-only, so MALA's Metropolis test gets its energy differences by integrating
   the score along each proposal (3-point Simpson): the acceptance rates are printed.
4. **Drop the scheduler into the stock pipeline**: ``DDPMPipeline(unet, EBMScheduler(...))``
   with a Langevin corrector, which fits the stock loop (one model call per step); with no
   corrector it gives DDPMScheduler's samples.

``--quick`` takes a few seconds (few sampling steps). Nothing is downloaded. Needs the
ebmflow-diffusers plugin (``bash scripts/install.sh``).
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


def tiny_pipeline_folder(folder: Path, seed: int) -> Path:
    from diffusers import DDPMPipeline, DDPMScheduler
    from ebmflow_diffusers import tiny

    unet = tiny.unet(seed)  # 1×8×8 images, about 42k weights
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (a few seconds)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the pipeline and checkpoint (default: a temporary one)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument(
        "--threads",
        default=None,
        help="torch CPU threads, a number or 'auto' (default: OMP_NUM_THREADS when set, else 1)",
    )
    args = parser.parse_args(argv)
    ebmflow.set_threads(args.threads)  # one thread unless asked: see docs/guide/cli.md
    from diffusers import DDPMPipeline, DDPMScheduler
    from diffusers.utils import logging
    from ebmflow_diffusers import EBMPipeline, EBMScheduler

    from ebmflow.cli import main as ebmflow_cli

    logging.set_verbosity_error()
    steps, batch = (4, 4) if args.quick else (50, 16)
    out = args.out or Path(tempfile.mkdtemp(prefix="ebmflow-diffusers-"))
    summary: dict = {}

    print("1. a diffusers pipeline folder")
    folder = tiny_pipeline_folder(out / "ddpm-tiny", args.seed)
    print(f"   {folder}: {sorted(p.name for p in folder.iterdir())}")

    print("2. converting it")
    model = ebmflow.create("converter", "diffusers", source=str(folder))
    checkpoint = out / "ddpm-tiny-ebmflow"
    if ebmflow_cli(["convert", str(folder), str(checkpoint)]) != 0:  # = `ebmflow convert`
        return 1
    loaded = ebmflow.load(checkpoint)
    x = torch.randn(2, *model.event_shape, generator=torch.Generator().manual_seed(args.seed))
    same = all(
        torch.equal(loaded.score(x, s).detach(), model.score(x, s).detach())
        for s in (0.05, 1.0, 50.0)
    )
    print(
        f"   {type(model).__name__}, event shape {model.event_shape}; checkpoint files "
        f"{sorted(p.name for p in checkpoint.iterdir())}; loaded scores identical: {same}"
    )
    summary["round_trip_identical"] = same

    print("3. EBMPipeline with a MALA corrector (segment-integral energies)")
    scheduler = EBMScheduler.from_config(
        DDPMScheduler().config,
        corrector="mala",
        corrector_steps=2,
        snr=0.3,
        energy_rule="simpson",
        energy_points=3,
    )
    pipe = EBMPipeline(unet=loaded.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=args.quick)
    result = pipe(
        batch_size=batch,
        generator=torch.Generator().manual_seed(args.seed),
        num_inference_steps=steps,
        output_type="pt",
    )
    rates = result.acceptance_rates
    print(
        f"   samples {tuple(result.images.shape)}; MALA acceptance per level "
        f"{[round(r, 3) for r in rates]}"
    )
    summary["mala_acceptance"] = sum(rates) / len(rates)

    print("4. EBMScheduler in the stock DDPMPipeline")
    stock = DDPMPipeline(unet=loaded.unet, scheduler=DDPMScheduler())
    ours = DDPMPipeline(
        unet=loaded.unet, scheduler=EBMScheduler.from_config(DDPMScheduler().config)
    )
    corrected = DDPMPipeline(
        unet=loaded.unet,
        scheduler=EBMScheduler.from_config(
            DDPMScheduler().config, corrector="langevin", corrector_steps=1
        ),
    )
    images = {}
    for name, p in (("ddpm", stock), ("ebm", ours), ("ebm+langevin", corrected)):
        p.set_progress_bar_config(disable=True)
        images[name] = p(
            batch_size=batch,
            generator=torch.Generator().manual_seed(args.seed),
            num_inference_steps=steps,
            output_type="pt",
        ).images
    diff = float((images["ddpm"] - images["ebm"]).abs().max())
    print(
        f"   EBMScheduler without corrector vs DDPMScheduler: max |Δ| = {diff:.1e}; with a "
        f"Langevin corrector the stock loop makes {corrected.scheduler.order} calls per level"
    )
    summary["stock_pipeline_max_diff"] = diff
    print(json.dumps(summary))
    return 0 if same and diff < 1e-5 and 0 < summary["mala_acceptance"] <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
