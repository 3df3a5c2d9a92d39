"""``ebmflow jem-sample CHECKPOINT --out grid.png``: a grid of class-conditional samples.

Importing this module imports no torch (the CLI builds its parser from every plugin).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

OUTPUT_SUFFIXES = (".png", ".safetensors")


def add_jem_sample(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "jem-sample",
        help="class-conditional samples of a JEM classifier energy (a grid, one row a class)",
        description="Draw --per-class samples of every class y from p(x|y) ∝ exp(f(x)[y]) of "
        "the classifier energy in CHECKPOINT (ebmflow-jem), by SGLD from uniform noise "
        "on [--init-low, --init-high], and write them to --out: a .png grid (one row per "
        "class; needs matplotlib) or a .safetensors file (tensors 'samples' (K, m, ...) "
        "and 'labels'). Prints a JSON summary with the fraction of samples the classifier "
        "assigns to their own class.",
    )
    parser.add_argument("checkpoint", help="a classifier-energy checkpoint folder")
    parser.add_argument(
        "--out", required=True, help=f"output file, one of {', '.join(OUTPUT_SUFFIXES)}"
    )
    parser.add_argument("--per-class", type=int, default=10, help="samples per class (default: 10)")
    parser.add_argument("--steps", type=int, default=100, help="SGLD steps (default: 100)")
    parser.add_argument(
        "--step-size", type=float, default=1.0, help="SGLD step η (default: 1.0, JEM's)"
    )
    parser.add_argument(
        "--noise-scale",
        type=float,
        default=0.01,
        help="SGLD noise standard deviation (default: 0.01, JEM's)",
    )
    parser.add_argument(
        "--init-low",
        type=float,
        default=-1.0,
        help="low end of the uniform starting box (default: -1)",
    )
    parser.add_argument(
        "--init-high",
        type=float,
        default=1.0,
        help="high end of the uniform starting box (default: 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.set_defaults(func=run_jem_sample)


def run_jem_sample(args: argparse.Namespace) -> int:
    from ebmflow import ConfigError

    out = Path(args.out)
    if out.suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out {out}: unsupported suffix; use one of {OUTPUT_SUFFIXES}")
    for option in ("per_class", "steps"):
        if getattr(args, option) < (1 if option == "per_class" else 0):
            raise ConfigError(
                f"--{option.replace('_', '-')} must be ≥ "
                f"{1 if option == 'per_class' else 0}, got {getattr(args, option)}"
            )
    import torch

    import ebmflow
    from ebmflow_jem.sampling import class_grid, plot_class_grid

    energy = ebmflow.load(args.checkpoint, host=args.host)
    if not callable(getattr(energy, "predict", None)) or getattr(energy, "n_classes", None) is None:
        raise ConfigError(
            f"{args.checkpoint} holds a {type(energy).__name__}, not a classifier energy "
            "with n_classes (ebmflow-jem's classifier-convnet, classifier-mlp)"
        )
    energy.eval()
    sampler = args.host.create(
        "sampler",
        {"name": "langevin", "step_size": args.step_size, "noise_scale": args.noise_scale},
    )
    gen = torch.Generator().manual_seed(args.seed)
    grid = class_grid(
        energy,
        args.per_class,
        sampler=sampler,
        n_steps=args.steps,
        init_low=args.init_low,
        init_high=args.init_high,
        generator=gen,
    )
    labels = torch.arange(grid.shape[0]).repeat_interleave(grid.shape[1])
    predicted = energy.predict(grid.flatten(0, 1))
    summary = {
        "checkpoint": str(args.checkpoint),
        "per_class": args.per_class,
        "steps": args.steps,
        "step_size": args.step_size,
        "noise_scale": args.noise_scale,
        "seed": args.seed,
        "classified_as_own_class": float((predicted == labels).double().mean()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(
            {"samples": grid.contiguous(), "labels": labels},
            str(out),
            metadata={k: json.dumps(v) for k, v in summary.items()},
        )
    else:
        plot_class_grid(
            grid,
            out,
            value_range=(args.init_low, args.init_high),
            title=f"p(x | y), SGLD {args.steps} steps",
        )
    print(json.dumps({**summary, "out": str(out)}))
    return 0
