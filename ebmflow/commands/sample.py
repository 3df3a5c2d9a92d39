"""``ebmflow sample CHECKPOINT --sampler NAME --out FILE``: draw samples from an energy."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ebmflow.commands.arguments import (
    MAX_SAMPLER_STEPS,
    MAX_SAMPLES,
    add_component_options,
    check_int_option,
    checkpoint_argument,
    load_energy,
    resolve_sigma,
)
from ebmflow.commands.options import add_device_option, add_progress_options, device_of, progress_of
from ebmflow.commands.posterior_options import add_posterior_options, posterior_from_args
from ebmflow.errors import ConfigError
from ebmflow.validation import MAX_SEED

OUTPUT_SUFFIXES = (".safetensors", ".png")


def add_sample(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="draw samples from an energy checkpoint with any sampler",
        description="Run a registered sampler on the energy saved in CHECKPOINT and write "
        "the final positions of all chains to --out: a .safetensors file (tensor "
        "'samples', with the run's settings as metadata) or a .png figure (2-D scatter "
        "or image grid; needs matplotlib).",
    )
    parser.add_argument(
        "checkpoint", help="an energy checkpoint folder (ebmflow.save), or a run folder"
    )
    add_component_options(parser, "sampler", "langevin")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampler steps (default: the sampler's own run length, else 1000)",
    )
    parser.add_argument("--n", type=int, default=1000, help="number of chains (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level for a noise-conditional energy (default: the smallest "
        "noise level of the run that trained it, when the checkpoint records one)",
    )
    parser.add_argument(
        "--init",
        choices=("gaussian", "uniform"),
        default="gaussian",
        help="starting distribution: N(0, s²) or U(−s, s) (default: gaussian)",
    )
    parser.add_argument(
        "--init-scale",
        type=float,
        default=None,
        help="s of the starting distribution (default: 1.0, or the largest noise level "
        "of a sampler that sets its own, such as the ODE samplers)",
    )
    add_progress_options(parser)
    add_device_option(parser)
    add_posterior_options(parser)
    parser.add_argument(
        "--out", required=True, help=f"output file, one of {', '.join(OUTPUT_SUFFIXES)}"
    )
    parser.set_defaults(func=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(
            f"--out {out}: unsupported suffix {out.suffix or '(none)'!r}; use "
            f"{' or '.join(OUTPUT_SUFFIXES)}"
        )
    check_int_option("--n", args.n, 1, MAX_SAMPLES)
    if args.steps is not None:
        check_int_option("--steps", args.steps, 0, MAX_SAMPLER_STEPS)
    check_int_option("--seed", args.seed, 0, MAX_SEED)
    if args.init_scale is not None and not args.init_scale > 0:
        raise ConfigError(f"--init-scale must be > 0, got {args.init_scale}")
    import torch

    device = device_of(args)
    args.checkpoint = checkpoint_argument(args.checkpoint, "sample")
    energy = posterior_from_args(load_energy(args.checkpoint, "sample"), args).to(device)
    sampler = args.host.create("sampler", args.sampler, **dict(args.sampler_args))
    if energy.event_shape is None:
        raise ConfigError(
            f"{type(energy).__name__} declares no event_shape, so the sample shape is unknown"
        )
    if not hasattr(sampler, "sigmas") and not getattr(sampler, "sets_noise_level", False):
        # samplers with a schedule (annealed, ODE) set σ themselves
        args.sigma = resolve_sigma(energy, args.sigma, args.checkpoint, "sample")
    gen = torch.Generator(device=device).manual_seed(args.seed)
    shape = (args.n, *energy.event_shape)
    # starting points in the energy's own dtype (a float64 checkpoint samples in float64)
    dtype = next(
        (t.dtype for t in (*energy.parameters(), *energy.buffers()) if t.is_floating_point()),
        torch.get_default_dtype(),
    )
    x0 = (
        torch.randn(shape, generator=gen, dtype=dtype, device=device)
        if args.init == "gaussian"
        else (2 * torch.rand(shape, generator=gen, dtype=dtype, device=device) - 1)
    )
    x0 = (args.init_scale or getattr(sampler, "init_scale", 1.0)) * x0
    run_kwargs: dict[str, Any] = {"generator": gen, "progress": progress_of(args)}
    if args.sigma is not None:
        run_kwargs["sigma"] = args.sigma
    steps = (
        args.steps
        if args.steps is not None
        else (None if hasattr(sampler, "total_steps") else 1000)
    )
    start = time.perf_counter()
    result = sampler.run(energy, x0, steps, **run_kwargs)
    seconds = time.perf_counter() - start
    summary = {
        "checkpoint": str(args.checkpoint),
        "sampler": args.sampler,
        "sampler_args": dict(args.sampler_args),
        "steps": result.state.step,
        "n": args.n,
        "seed": args.seed,
        "sigma": args.sigma,
        "device": str(device),
        "seconds": round(seconds, 3),
    }
    if "acceptance_rate" in result.diagnostics:
        summary["acceptance_rate"] = round(result.diagnostics["acceptance_rate"], 4)
    out.parent.mkdir(parents=True, exist_ok=True)
    samples = result.samples.detach().cpu().contiguous()
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(
            {"samples": samples}, str(out), metadata={k: json.dumps(v) for k, v in summary.items()}
        )
    else:
        from ebmflow.plotting import plot_samples

        plot_samples(samples, out, title=f"{args.sampler}, {result.state.step} steps")
    print(json.dumps({**summary, "out": str(out)}))
    return 0
