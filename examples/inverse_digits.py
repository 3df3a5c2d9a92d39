"""Inpainting and denoising 8×8 digits by posterior sampling with a learned prior.

    python examples/inverse_digits.py [--quick] [--checkpoint DIR] [--train-steps N]
                                      [--out DIR] [--seed S]

1. **Prior**: the NCSN digits energy of ``examples/ncsn_digits.py`` (a noise-conditional
   convnet trained by multiscale DSM on digits in [0, 1]); ``--checkpoint`` loads one that
   script wrote (``runs/ncsn-digits/checkpoint``; then the whole run takes about a minute),
   otherwise the same recipe is trained here for ``--train-steps`` steps (4000 by default,
   a few minutes on one core: shorter runs give a prior whose chains run off the pixel
   range where nothing is observed).
2. **Observations** of 8 held-out test digits: *inpainting* (the right half of each image
   missing, the left half observed with noise 0.05) and *denoising* (every pixel observed
   with noise 0.2).
3. **Posterior samples**: ``ebmflow.posterior(prior, gaussian-measurement)`` sampled by
   ``annealed-posterior`` (annealed Langevin with the likelihood annealed as s² + σ²‖A‖²,
   then MALA at the lowest level), two samples per observation (one observation per chain:
   an observation tensor of shape (8, 1, 8, 8)).
4. **The same with a converted diffusers checkpoint**: a tiny DDPM ``UNet2DModel`` (random
   weights: nothing is downloaded, so this shows the plumbing, not good digits) converted
   by the ``diffusers`` converter to a score model in VE coordinates on [−1, 1]; it is
   score-only, so the annealed sampler runs without the MALA correction, beside ``dps``
   (with the paper's normalised step).

Writes ``DIR/inpainting.png`` and ``DIR/denoising.png`` (rows: observation, two posterior
samples, ground truth; needs matplotlib), ``DIR/diffusers.png`` and ``DIR/samples.safetensors``,
and prints the mean squared error of the posterior mean against the ground truth beside
that of the observation. ``--quick`` trains 20 steps and samples briefly: it checks that
every stage runs, not that the digits are good. Needs scikit-learn and the ebmflow-score
plugin (and ebmflow-diffusers for step 4, skipped without it).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import ebmflow

REQUIRES = ("ebmflow-score", "scikit-learn")
SCHEDULE = {"name": "geometric", "sigma_max": 5.0, "sigma_min": 0.02}


def train_prior(steps: int, seed: int, out: Path) -> ebmflow.Energy:
    """The recipe of examples/ncsn_digits.py (without EMA for very short runs)."""
    train = ebmflow.create("dataset", "digits", split="train", scale="unit")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # initial weights
        energy = ebmflow.create(
            "energy",
            "convnet",
            channels=1,
            image_size=8,
            widths=[32, 64, 128],
            noise_conditional=True,
        )
    objective = ebmflow.create(
        "objective", "multiscale-dsm", noise_schedule=SCHEDULE, weighting="sigma2"
    )
    trainer = ebmflow.Trainer(
        energy,
        objective,
        train,
        optimizer={"name": "adam", "lr": 1e-3},
        lr_schedule={"name": "cosine", "warmup": min(200, steps // 10)},
        batch_size=64,
        steps=steps,
        ema=None if steps < 500 else 0.999,
        seed=seed,
        checkpoint_dir=out / "checkpoint",
    )
    trainer.fit()
    energy.load_state_dict(trainer.ema_state_dict())
    return energy


def observe(truth: torch.Tensor, gen: torch.Generator) -> dict[str, dict]:
    """The two measurement problems: likelihood config and the noisy observation."""
    mask = torch.zeros(1, 8, 8)
    mask[..., :4] = 1.0  # left half observed
    problems = {}
    for task, operator, noise in (
        ("inpainting", {"name": "mask", "mask": mask}, 0.05),
        ("denoising", "identity", 0.2),
    ):
        clean = truth * mask if task == "inpainting" else truth
        y = clean + noise * torch.randn(truth.shape, generator=gen)
        if task == "inpainting":
            y = y * mask  # missing pixels carry no value
        problems[task] = {
            "name": "gaussian-measurement",
            "observation": y,
            "noise_std": noise,
            "operator": operator,
            "event_shape": [1, 8, 8],
        }
    return problems


def plot_rows(rows: dict[str, torch.Tensor], path: Path, title: str, value_range) -> Path | None:
    from ebmflow.plotting import matplotlib_available

    if not matplotlib_available():
        print(f"no {path.name}: matplotlib is not installed")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = next(iter(rows.values())).shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(n, len(rows) + 0.4), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(
                images[c, 0].clamp(*value_range),
                cmap="gray",
                vmin=value_range[0],
                vmax=value_range[1],
            )
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def sample_posterior(prior, likelihood, n_obs, per_obs, sampler, gen, scale):
    post = ebmflow.posterior(prior, likelihood)
    x0 = scale * torch.randn(n_obs * per_obs, 1, 8, 8, generator=gen)
    result = sampler.run(post, x0, generator=gen)
    # chain i has observation i mod n_obs: (per_obs, n_obs, 1, 8, 8)
    return result.samples.detach().reshape(per_obs, n_obs, 1, 8, 8), result.diagnostics


def diffusers_stage(truth, problems, args, gen, out) -> dict:
    """Step 4: the same problems with a converted tiny diffusers checkpoint, on [−1, 1]."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    from diffusers.utils import logging

    logging.set_verbosity_error()
    with torch.random.fork_rng(devices=[]):  # diffusers initialises weights from the global RNG
        torch.manual_seed(args.seed)
        unet = UNet2DModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
        )
    folder = Path(tempfile.mkdtemp(prefix="ebmflow-inverse-"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(folder)
    model = ebmflow.create("converter", "diffusers", source=str(folder)).eval()
    model.requires_grad_(False)
    levels, per_level = (3, 2) if args.quick else (20, 10)
    schedule = {"name": "geometric", "sigma_max": 10.0, "sigma_min": 0.02}
    samplers = {
        "annealed": ebmflow.create(
            "sampler",
            "annealed-posterior",
            noise_schedule=schedule,
            n_levels=levels,
            steps_per_level=per_level,
            epsilon=2e-5,
            corrector_steps=0,  # score-only: no energy for a Metropolis test
        ),
        "dps": ebmflow.create(
            "sampler", "dps", noise_schedule=schedule, n_levels=levels * 5, normalized=True
        ),
    }
    config = dict(problems["inpainting"])
    config["observation"] = 2 * config["observation"] - config["operator"]["mask"]  # to [−1, 1]
    config["noise_std"] = 2 * config["noise_std"]
    rows = {"observation": config["observation"]}
    for name, sampler in samplers.items():
        samples, _ = sample_posterior(model, config, truth.shape[0], 1, sampler, gen, 10.0)
        rows[name] = samples[0]
    rows["truth"] = 2 * truth - 1
    figure = plot_rows(
        rows, out / "diffusers.png", "converted diffusers prior (random weights)", (-1.0, 1.0)
    )
    finite = all(bool(torch.isfinite(v).all()) for v in rows.values())
    return {"figure": figure, "finite": finite}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 training steps, short sampling")
    parser.add_argument(
        "--checkpoint", default=None, help="an NCSN digits checkpoint (default: train one here)"
    )
    parser.add_argument(
        "--train-steps", type=int, default=None, help="training steps (default: 4000; 20 quick)"
    )
    parser.add_argument("--out", default="runs/inverse-digits", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    if args.checkpoint is not None:
        prior = ebmflow.load(args.checkpoint)
    else:
        steps = args.train_steps if args.train_steps is not None else (20 if args.quick else 4000)
        if steps < 1:
            parser.error(f"--train-steps must be ≥ 1, got {steps}")
        prior = train_prior(steps, args.seed, out)
        print(f"trained the prior for {steps} steps ({time.perf_counter() - start:.0f} s)")
    prior.eval().requires_grad_(False)

    gen = torch.Generator().manual_seed(args.seed + 1)
    test_images, _ = ebmflow.create("dataset", "digits", split="test", scale="unit").tensors()
    truth = test_images[:8].reshape(8, 1, 8, 8)
    problems = observe(truth, gen)
    levels, per_level, corrector = (4, 5, 5) if args.quick else (20, 50, 100)
    sampler = ebmflow.create(
        "sampler",
        "annealed-posterior",
        noise_schedule=SCHEDULE,
        n_levels=levels,
        steps_per_level=per_level,
        epsilon=4e-5,
        corrector_steps=corrector,
        corrector_step_size=2e-5,
    )
    saved = {}
    for task, config in problems.items():
        samples, diagnostics = sample_posterior(prior, config, 8, 2, sampler, gen, 5.0)
        if not bool(torch.isfinite(samples).all()):
            print(f"{task}: the samples hold NaN or ±∞", file=sys.stderr)
            return 1
        saved[task] = samples.reshape(16, 1, 8, 8).contiguous()
        mse = float((samples.mean(0) - truth).square().mean())
        mse_obs = float((config["observation"] - truth).square().mean())
        print(
            f"{task}: mean squared error of the posterior mean {mse:.4f}, of the observation "
            f"{mse_obs:.4f}; MALA acceptance {diagnostics.get('acceptance_rate', 0):.2f}"
        )
        plot_rows(
            {
                "observation": config["observation"],
                "sample 1": samples[0],
                "sample 2": samples[1],
                "truth": truth,
            },
            out / f"{task}.png",
            f"{task}: posterior samples with the NCSN digits prior",
            (0.0, 1.0),
        )
    from safetensors.torch import save_file

    save_file(saved, str(out / "samples.safetensors"))

    if importlib.util.find_spec("ebmflow_diffusers") is None:
        print("step 4 skipped: the ebmflow-diffusers plugin is not installed")
    else:
        summary = diffusers_stage(truth, problems, args, gen, out)
        if not summary["finite"]:
            print("diffusers: the samples hold NaN or ±∞", file=sys.stderr)
            return 1
        print("diffusers: annealed-posterior and dps on the converted checkpoint, finite")
    print(f"wrote {out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
