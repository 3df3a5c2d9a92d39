"""NCSN on 8×8 digits: an energy-parameterised noise-conditional network trained by multiscale
denoising score matching and sampled by annealed Langevin dynamics (Song & Ermon 2019).

    python examples/ncsn_digits.py [--quick] [--steps N] [--out DIR] [--seed S]

The recipe of ``examples/configs/multiscale_dsm_digits.toml``, written out in Python: a
convolutional energy E_θ(x, σ) (score −∇ₓE_θ) on scikit-learn's digits scaled to [0, 1],
σ drawn from the geometric levels 5 → 0.02, weighting λ(σ) = σ²; then annealed Langevin
from N(0, 5²I) down 20 levels with the final denoising step x + σ_L² s(x, σ_L).

Writes ``DIR/samples.safetensors`` (tensor ``samples``, (64, 1, 8, 8)), ``DIR/grid.png``
(an 8×8 grid on the pixel range [0, 1]; needs matplotlib) and ``DIR/checkpoint`` (the
energy; ``ebmflow sample DIR/checkpoint --sampler annealed-langevin ...`` reads it), and
prints how far the samples are from the training images: the median distance from a sample
to its nearest training image, beside the same for held-out test images (samples much
closer than test images would be copies; much farther, not digits yet).

The default 4000 steps take a few minutes on one CPU core and give digit-like strokes;
the full 15 000-step run file gives clearer digits (``ebmflow train`` on it, about 9
minutes). ``--quick`` trains 20 steps and samples briefly: it checks that every stage runs,
not that the digits look like digits. Needs scikit-learn (``pip install 'ebmflow[digits]'``)
and the ebmflow-score plugin.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import ebmflow

REQUIRES = ("ebmflow-score", "scikit-learn")


def nearest_distance(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Euclidean distance from each row of x to its nearest row of reference (flattened)."""
    return torch.cdist(x.flatten(1).double(), reference.flatten(1).double()).min(dim=1).values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20 training steps and a short sampler run (default: off)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps (default: 4000, or 20 with --quick)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: runs/ncsn-digits, or runs/ncsn-digits-quick with --quick)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument(
        "--threads",
        default=None,
        help="torch CPU threads, a number or 'auto' (default: OMP_NUM_THREADS when set, else 1)",
    )
    args = parser.parse_args(argv)
    ebmflow.set_threads(args.threads)  # one thread unless asked: see docs/guide/cli.md
    steps = args.steps if args.steps is not None else (20 if args.quick else 4000)
    if steps < 1:
        parser.error(f"--steps must be ≥ 1, got {steps}")
    out = Path(args.out or ("runs/ncsn-digits-quick" if args.quick else "runs/ncsn-digits"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    train = ebmflow.create("dataset", "digits", split="train", scale="unit")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)  # initial weights
        energy = ebmflow.create(
            "energy",
            "convnet",
            channels=1,
            image_size=8,
            widths=[32, 64, 128],
            noise_conditional=True,
        )
    objective = ebmflow.create(
        "objective",
        "multiscale-dsm",
        noise_schedule={"name": "geometric", "sigma_max": 5.0, "sigma_min": 0.02},
        weighting="sigma2",
    )
    trainer = ebmflow.Trainer(
        energy,
        objective,
        train,
        optimizer={"name": "adam", "lr": 1e-3},
        lr_schedule={"name": "cosine", "warmup": min(200, steps // 10)},
        batch_size=64,
        steps=steps,
        ema=None if args.quick else 0.999,
        seed=args.seed,
        checkpoint_dir=out / "checkpoint",
    )
    history = trainer.fit()
    energy.load_state_dict(trainer.ema_state_dict())  # sample the EMA weights
    energy.eval().requires_grad_(False)
    print(
        f"trained {steps} steps, loss {history[-1]['loss']:.4f} "
        f"({time.perf_counter() - start:.0f} s)"
    )

    n, levels, per_level = (16, 4, 5) if args.quick else (64, 20, 100)
    sampler = ebmflow.create(
        "sampler",
        "annealed-langevin",
        noise_schedule={"name": "geometric", "sigma_max": 5.0, "sigma_min": 0.02},
        n_levels=levels,
        steps_per_level=per_level,
        epsilon=4e-5,
    )
    gen = torch.Generator().manual_seed(args.seed + 1)
    x0 = 5.0 * torch.randn(n, 1, 8, 8, generator=gen)
    samples = sampler.run(energy, x0, generator=gen, progress=True).samples.detach()
    if not bool(torch.isfinite(samples).all()):
        print("the samples hold NaN or ±∞", file=sys.stderr)
        return 1

    from safetensors.torch import save_file

    save_file({"samples": samples.contiguous()}, str(out / "samples.safetensors"))
    written = [out / "samples.safetensors"]
    from ebmflow.plotting import INSTALL_HINT, matplotlib_available, plot_samples

    if matplotlib_available():
        written.append(
            plot_samples(
                samples,
                out / "grid.png",
                value_range=(0.0, 1.0),
                title=f"NCSN samples after {steps} training steps",
            )
        )
    else:
        print(f"no grid.png: matplotlib is not installed; {INSTALL_HINT}")

    train_images, _ = train.tensors()
    test_images, _ = ebmflow.create("dataset", "digits", split="test", scale="unit").tensors()
    d_samples = nearest_distance(samples, train_images).median()
    d_test = nearest_distance(test_images, train_images).median()
    print(
        f"median distance to the nearest training image: samples {d_samples:.2f}, held-out "
        f"test images {d_test:.2f}; pixel range of the samples [{samples.min():.2f}, "
        f"{samples.max():.2f}]"
    )
    print(f"wrote {', '.join(str(p) for p in written)} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
